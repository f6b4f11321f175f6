// 2026-07-28 scenarios with the TS SDK v2 client (@modelcontextprotocol/client)
// pinned to the modern era unless a scenario says otherwise. See lib.mjs for
// the contract; SB_USER names the user when it matters.
import { createInterface } from 'node:readline';
import { attempt, call, connectV2, run } from './lib.mjs';

const user = process.env.SB_USER ?? '';

// rawResult returns the raw result of the last response to method in wire.
function rawResult(wire, method) {
  const ids = new Set(wire.filter((w) => w.dir === 'out' && w.msg.method === method).map((w) => w.msg.id));
  return wire.filter((w) => w.dir === 'in' && ids.has(w.msg.id) && w.msg.method === undefined).at(-1)?.msg;
}

// rounds summarizes the tools/call exchanges on the wire: what each retry
// carried and what each answer was, and any request the server sent.
function rounds(wire) {
  return {
    calls: wire.filter((w) => w.dir === 'out' && w.msg.method === 'tools/call').map((w) => ({ id: w.msg.id, inputResponses: Object.keys(w.msg.params.inputResponses ?? {}), requestState: w.msg.params.requestState !== undefined })),
    answers: wire.filter((w) => w.dir === 'in' && w.msg.id !== undefined && w.msg.method === undefined).map((w) => ({ id: w.msg.id, resultType: w.msg.result?.resultType, error: w.msg.error })),
    serverRequests: wire.filter((w) => w.dir === 'in' && w.msg.id !== undefined && w.msg.method !== undefined).map((w) => w.msg.method),
  };
}

// accepting is an elicitation handler that records what it got and accepts.
const accepting = (received) => async (req) => {
  received.push(req.params);
  return { action: 'accept', content: { name: 'Modern Tester', check: true, integer: 7 } };
};

await run({
  async discover() {
    const conn = await connectV2({ user });
    const discover = await attempt(() => conn.client.discover());
    return { era: conn.client.getProtocolEra(), version: conn.client.getNegotiatedProtocolVersion(), discover, raw: rawResult(conn.wire, 'server/discover') };
  },

  async lists() {
    const { client, wire } = await connectV2({ user });
    return {
      tools: (await client.listTools()).tools.map((t) => t.name),
      prompts: (await client.listPrompts()).prompts.map((p) => p.name),
      resources: (await client.listResources()).resources.map((r) => r.uri),
      raw: rawResult(wire, 'tools/list'),
    };
  },

  async call() {
    return call(await connectV2({ user }), 'everything__echo', { message: 'modern hello' });
  },

  async prompt() {
    const { client } = await connectV2({ user });
    return attempt(() => client.getPrompt({ name: 'everything__args-prompt', arguments: { city: 'Porto' } }));
  },

  async resource() {
    const conn = await connectV2({ user });
    const read = await attempt(() => conn.client.readResource({ uri: 'demo://resource/dynamic/text/5' }));
    return { ...read, raw: rawResult(conn.wire, 'resources/read') };
  },

  // The child's elicitation/create becomes an input_required result; the
  // client fulfils it and retries; the call completes.
  async elicitation() {
    const received = [];
    const conn = await connectV2({ user, capabilities: { elicitation: { form: {} } }, handlers: { 'elicitation/create': accepting(received) } });
    const c = await call(conn, 'everything__trigger-elicitation-request');
    return { received, result: c.result, error: c.error, ...rounds(conn.wire) };
  },

  async auto() {
    const conn = await connectV2({ user, mode: 'auto' });
    const c = await call(conn, 'everything__echo', { message: 'auto hello' });
    return { era: conn.client.getProtocolEra(), version: conn.client.getNegotiatedProtocolVersion(), sent: conn.wire.filter((w) => w.dir === 'out').map((w) => w.msg.method), result: c.result, error: c.error };
  },

  // The same client in legacy mode: the session era on the same URL.
  async legacyCall() {
    const conn = await connectV2({ user, mode: 'legacy' });
    const c = await call(conn, 'everything__echo', { message: 'legacy hello' });
    return { era: conn.client.getProtocolEra(), version: conn.client.getNegotiatedProtocolVersion(), result: c.result, error: c.error };
  },

  // A continuation handed to SB_USER is replayed tampered, and by the user in
  // SB_OTHER; both must be refused. The genuine retry then completes.
  async continuation() {
    const caps = { elicitation: { form: {} } };
    const owner = await connectV2({ user, capabilities: caps, inputRequired: { autoFulfill: false } });
    const other = await connectV2({ user: process.env.SB_OTHER, capabilities: caps, inputRequired: { autoFulfill: false } });
    const name = 'everything__trigger-elicitation-request';
    const first = await attempt(() => owner.client.request({ method: 'tools/call', params: { name, arguments: {} } }, { allowInputRequired: true, timeout: 60000 }));
    const keys = Object.keys(first.value?.inputRequests ?? {});
    const state = first.value?.requestState;
    const inputResponses = Object.fromEntries(keys.map((k) => [k, { action: 'accept', content: { name: 'Replayed' } }]));
    const retry = (conn, requestState) => attempt(() => conn.client.request({ method: 'tools/call', params: { name, arguments: {}, inputResponses, requestState } }, { allowInputRequired: true, timeout: 60000 }));
    const tampered = state === undefined ? { skipped: 'no requestState' } : await retry(owner, state.slice(0, -2) + (state.endsWith('A') ? 'BB' : 'AA'));
    const otherUser = state === undefined ? { skipped: 'no requestState' } : await retry(other, state);
    const genuine = await retry(owner, state);
    return { first, keys, hasState: state !== undefined, tampered, otherUser, genuine };
  },

  // listen opens subscriptions/listen for tool list changes and reports each
  // notification at once as {"event": ...}. The Go test drives it on stdin:
  // "mark NAME" records a mark (echoed as {"marked": NAME}); "end" prints the
  // final observation.
  async listen() {
    const events = [];
    const print = (e) => console.log(JSON.stringify(e));
    const conn = await connectV2({ user });
    const start = conn.wire.length;
    const sub = await attempt(() => conn.client.listen({ toolsListChanged: true }));
    const seen = new Set();
    const poll = setInterval(() => {
      conn.wire.forEach((w, i) => {
        if (i < start || seen.has(i) || w.dir !== 'in' || !w.msg.method?.startsWith('notifications/')) return;
        seen.add(i);
        const e = { method: w.msg.method, subscriptionId: w.msg.params?._meta?.['io.modelcontextprotocol/subscriptionId'] };
        events.push({ notification: e });
        print({ event: e });
      });
    }, 20);
    print({ listening: sub.error ? { error: sub.error } : { honored: sub.value.honoredFilter } });
    for await (const line of createInterface({ input: process.stdin })) {
      const [cmd, arg] = line.split(' ');
      if (cmd === 'mark') {
        events.push({ mark: arg });
        print({ marked: arg });
      } else if (cmd === 'end') {
        break;
      }
    }
    clearInterval(poll);
    const tools = await attempt(async () => (await conn.client.listTools(undefined, { cacheMode: 'bypass' })).tools.map((t) => t.name));
    return { sub: sub.error ? { error: sub.error } : { honored: sub.value.honoredFilter }, events, tools };
  },
});
