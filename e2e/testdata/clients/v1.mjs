// Session-era scenarios with the TS SDK v1 client (@modelcontextprotocol/sdk),
// through the gateway's prefixed names. See lib.mjs for the contract.
import { attempt, call, connectV1, notifications, run, waitUntil } from './lib.mjs';

// toggle calls a server-everything on/off tool until it reports want
// ("Started" or "Stopped"): the child keeps the state across sessions.
async function toggle(conn, tool, want) {
  const calls = [];
  for (let i = 0; i < 2; i++) {
    const c = await call(conn, tool);
    calls.push(c);
    if (c.result?.content?.[0]?.text?.startsWith(want)) break;
  }
  return calls;
}

const sampler = (received, answer) => async (req) => {
  received.push(req.params);
  return { model: 'e2e-model', role: 'assistant', content: { type: 'text', text: answer(req.params) } };
};

await run({
  async text() {
    return call(await connectV1(), 'everything__echo', { message: 'héllo through switchboard' });
  },
  async image() {
    return call(await connectV1(), 'everything__get-tiny-image');
  },
  async audio() {
    return call(await connectV1(), 'asker__audio');
  },
  async embedded() {
    return call(await connectV1(), 'everything__get-resource-reference', { resourceType: 'Text', resourceId: 3 });
  },
  async mixed() {
    return call(await connectV1(), 'everything__get-annotated-message', { messageType: 'error', includeImage: true });
  },
  async toolError() {
    return call(await connectV1(), 'everything__get-resource-reference', { resourceType: 'Text', resourceId: -1 });
  },

  // Logging: at level debug, server-everything's simulated logging sends its
  // first message while the toggle call is in flight; at level error,
  // asker__log's info message must be dropped and its error message kept.
  // A child's log may reach the client on the call's stream or the
  // session's GET stream, so each wait is for arrival since the call began,
  // and before marks what came ahead of the call's response.
  async logging() {
    const conn = await connectV1();
    const logsSince = (i, keep) =>
      conn.wire.slice(i).flatMap((w, j) => (w.dir === 'in' && w.msg.method === 'notifications/message' && keep(w.msg.params) ? [{ ...w.msg.params, index: i + j }] : []));
    const fromEverything = (p) => typeof p.data === 'string' && /level.message/i.test(p.data);
    const fromAsker = (p) => p.data === 'info during call' || p.data === 'error during call';

    const setDebug = await attempt(() => conn.client.setLoggingLevel('debug'));
    if (setDebug.error) return { setDebug };
    let mark = conn.wire.length;
    const started = (await toggle(conn, 'everything__toggle-simulated-logging', 'Started')).at(-1);
    await waitUntil(15000, () => logsSince(mark, fromEverything).length > 0);
    const everything = logsSince(mark, fromEverything).slice(0, 1);
    await toggle(conn, 'everything__toggle-simulated-logging', 'Stopped');

    const setError = await attempt(() => conn.client.setLoggingLevel('error'));
    mark = conn.wire.length;
    const asker = await call(conn, 'asker__log');
    await waitUntil(10000, () => logsSince(mark, fromAsker).some((p) => p.data === 'error during call'));
    const askerLogs = logsSince(mark, fromAsker);
    const response = conn.wire.findIndex((w, i) => i >= mark && w.dir === 'in' && w.msg.id === asker.id && w.msg.method === undefined);
    return {
      setDebug,
      setError,
      everything: { result: started.result, error: started.error, logs: everything },
      asker: { result: asker.result, error: asker.error, logs: askerLogs.map((p) => ({ ...p, beforeResponse: p.index < response })) },
    };
  },

  async progress() {
    const conn = await connectV1();
    const seen = [];
    const c = await call(conn, 'everything__trigger-long-running-operation', { duration: 0.3, steps: 3 }, { onprogress: (p) => seen.push(p) });
    return { ...c, onprogress: seen, progress: c.during.filter((m) => m.method === 'notifications/progress').map((m) => m.params) };
  },

  async sampling() {
    const received = [];
    const conn = await connectV1({ capabilities: { sampling: {} }, handlers: { 'sampling/createMessage': sampler(received, () => 'e2e-sampled-answer') } });
    const tools = (await conn.client.listTools()).tools.map((t) => t.name);
    const c = await call(conn, 'everything__trigger-sampling-request', { prompt: 'e2e-sampling-prompt', maxTokens: 7 });
    return { listed: tools.includes('everything__trigger-sampling-request'), received, result: c.result, error: c.error };
  },

  async elicitation() {
    const received = [];
    const conn = await connectV1({
      capabilities: { elicitation: { form: {} } },
      handlers: {
        'elicitation/create': async (req) => {
          received.push(req.params);
          const props = req.params.requestedSchema.properties;
          return {
            action: 'accept',
            content: {
              name: 'E2E Tester',
              check: true,
              firstLine: props.firstLine.default,
              integer: props.integer.default,
              number: 3.14,
              untitledSingleSelectEnum: 'Joey',
              untitledMultipleSelectEnum: ['Piano', 'Drums'],
              titledSingleSelectEnum: 'hero-2',
              titledMultipleSelectEnum: ['fish-3'],
              legacyTitledEnum: 'pet-2',
            },
          };
        },
      },
    });
    const tools = (await conn.client.listTools()).tools.map((t) => t.name);
    const c = await call(conn, 'everything__trigger-elicitation-request');
    return { listed: tools.includes('everything__trigger-elicitation-request'), received, result: c.result, error: c.error };
  },

  // A client without the sampling capability calls tools that sample: it
  // must get an error, and soon.
  async noSampling() {
    const conn = await connectV1();
    const out = {};
    for (const [name, args] of [
      ['everything__trigger-sampling-request', { prompt: 'nobody will answer' }],
      ['asker__sample', { tag: 'no-sampling' }],
    ]) {
      const t0 = Date.now();
      const c = await call(conn, name, args, { timeout: 60000 });
      out[name] = { result: c.result, error: c.error, ms: Date.now() - t0 };
    }
    return out;
  },

  // Two sessions subscribe to different URIs; updates must reach only the
  // session subscribed to each.
  async subscribe() {
    const a = await connectV1({ name: 'subscriber-a' });
    const b = await connectV1({ name: 'subscriber-b' });
    const x = 'demo://resource/static/document/architecture.md';
    const y = 'demo://resource/static/document/features.md';
    const subA = await attempt(() => a.client.subscribeResource({ uri: x }));
    const subB = await attempt(() => b.client.subscribeResource({ uri: y }));
    const updated = (c) => notifications(c.wire, 'notifications/resources/updated').map((p) => p.uri);
    let arrived = false;
    if (!subA.error && !subB.error) {
      await toggle(a, 'everything__toggle-subscriber-updates', 'Started');
      // Two rounds (5s apart): anything misrouted in round one is in by then.
      arrived = await waitUntil(20000, () => updated(a).filter((u) => u === x).length >= 2 && updated(b).filter((u) => u === y).length >= 2);
      await toggle(a, 'everything__toggle-subscriber-updates', 'Stopped');
    }
    return { subA, subB, arrived, x, y, updatesA: updated(a), updatesB: updated(b) };
  },

  async completion() {
    const { client } = await connectV1();
    const templates = await attempt(() => client.listResourceTemplates());
    const template = templates.value?.resourceTemplates.map((t) => t.uriTemplate).find((u) => u.endsWith('/text/{resourceId}'));
    return {
      template,
      department: await attempt(() => client.complete({ ref: { type: 'ref/prompt', name: 'everything__completable-prompt' }, argument: { name: 'department', value: 'Eng' } })),
      member: await attempt(() =>
        client.complete({ ref: { type: 'ref/prompt', name: 'everything__completable-prompt' }, argument: { name: 'name', value: '' }, context: { arguments: { department: 'Sales' } } }),
      ),
      resourceId: await attempt(() => client.complete({ ref: { type: 'ref/resource', uri: template ?? 'demo://resource/dynamic/text/{resourceId}' }, argument: { name: 'resourceId', value: '7' } })),
    };
  },

  async prompts() {
    const { client } = await connectV1();
    return {
      args: await attempt(() => client.getPrompt({ name: 'everything__args-prompt', arguments: { city: 'Lisbon', state: 'PT' } })),
      completable: await attempt(() => client.getPrompt({ name: 'everything__completable-prompt', arguments: { department: 'Sales', name: 'Eve' } })),
    };
  },

  async resources() {
    const { client } = await connectV1();
    return {
      dynamic: await attempt(() => client.readResource({ uri: 'demo://resource/dynamic/text/5' })),
      static: await attempt(() => client.readResource({ uri: 'demo://resource/static/document/architecture.md' })),
    };
  },

  // sample: the user in SB_USER calls asker__sample in group SB_GROUP of
  // SB_WAIT_FOR calls; its sampling handler answers "<user> answered <text>".
  async sample() {
    const user = process.env.SB_USER;
    const received = [];
    const conn = await connectV1({
      user,
      name: `e2e-${user}`,
      capabilities: { sampling: {} },
      handlers: { 'sampling/createMessage': sampler(received, (p) => `${user} answered ${p.messages[0].content.text}`) },
    });
    const c = await call(conn, 'asker__sample', { tag: user, group: process.env.SB_GROUP, wait_for: Number(process.env.SB_WAIT_FOR) });
    return { received: received.map((p) => p.messages[0].content.text), result: c.result, error: c.error };
  },
});
