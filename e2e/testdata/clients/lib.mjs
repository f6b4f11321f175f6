// Shared setup for the e2e client scripts. A script exports scenarios; the Go
// test runs `node <script> <scenario>` with SB_URL (the gateway's /mcp URL)
// and SB_KEY (an API key; SB_KEY_<NAME> for more users) in the environment,
// and reads the one JSON line the scenario prints: what the client observed.
// The Go side makes the assertions. A scenario that throws prints
// {"fatal": "<message>"} and exits 2.
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as TransportV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema, ElicitRequestSchema, ListRootsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { Client as ClientV2, StreamableHTTPClientTransport as TransportV2 } from '@modelcontextprotocol/client';

export const url = process.env.SB_URL;

// key returns the API key of user name ('' for SB_KEY).
export function key(name = '') {
  const v = process.env[name ? `SB_KEY_${name.toUpperCase()}` : 'SB_KEY'];
  if (!v) throw new Error(`no API key for user ${JSON.stringify(name)} in the environment`);
  return v;
}

// tap records every message the transport receives and sends, in order,
// with its arrival time, in wire (an array). It wraps onmessage whenever the
// SDK sets it, so nothing is missed.
function tap(transport, wire) {
  let handler;
  Object.defineProperty(transport, 'onmessage', {
    configurable: true,
    get() {
      return handler && ((msg, extra) => {
        wire.push({ dir: 'in', at: Date.now(), msg });
        handler(msg, extra);
      });
    },
    set(h) {
      handler = h;
    },
  });
  const send = transport.send.bind(transport);
  transport.send = (msg, opts) => {
    wire.push({ dir: 'out', at: Date.now(), msg });
    return send(msg, opts);
  };
}

function headers(user) {
  return { requestInit: { headers: { Authorization: `Bearer ${key(user)}` } } };
}

// connectV1 connects a TS SDK v1 client (@modelcontextprotocol/sdk) over
// streamable HTTP as user. handlers maps request methods the client serves
// (e.g. 'sampling/createMessage') to async functions of the request.
export async function connectV1({ user = '', name = 'e2e-v1', capabilities = {}, handlers = {} } = {}) {
  const wire = [];
  const transport = new TransportV1(new URL(url), headers(user));
  tap(transport, wire);
  const client = new ClientV1({ name, version: '1.0.0' }, { capabilities });
  for (const [method, fn] of Object.entries(handlers)) {
    client.setRequestHandler(schemaV1[method], fn);
  }
  await client.connect(transport);
  return { client, transport, wire };
}

// connectV2 connects a TS SDK v2 client (@modelcontextprotocol/client) as
// user. mode is 'legacy', 'auto' or a pinned version such as '2026-07-28'.
export async function connectV2({ user = '', name = 'e2e-v2', mode = '2026-07-28', capabilities = {}, handlers = {}, inputRequired } = {}) {
  const wire = [];
  const transport = new TransportV2(new URL(url), headers(user));
  tap(transport, wire);
  const versionNegotiation = { mode: mode === 'legacy' || mode === 'auto' ? mode : { pin: mode } };
  const client = new ClientV2({ name, version: '1.0.0' }, { capabilities, versionNegotiation, inputRequired });
  for (const [method, fn] of Object.entries(handlers)) {
    client.setRequestHandler(method, fn);
  }
  await client.connect(transport);
  return { client, transport, wire, v2: true };
}

// The v1 SDK registers handlers by schema.
const schemaV1 = {
  'sampling/createMessage': CreateMessageRequestSchema,
  'elicitation/create': ElicitRequestSchema,
  'roots/list': ListRootsRequestSchema,
};

// notifications returns the inbound notifications of method in wire.
export function notifications(wire, method) {
  return wire.filter((w) => w.dir === 'in' && w.msg.method === method && w.msg.id === undefined).map((w) => w.msg.params);
}

// call calls tool name with args and returns {result} or {error, code}, the
// JSON-RPC id the request went out with, and during: the inbound
// notifications that arrived between the request and its response.
export async function call(conn, name, args = {}, options = {}) {
  const start = conn.wire.length;
  const params = { name, arguments: args };
  const opts = { timeout: 60000, ...options };
  const out = await attempt(() => (conn.v2 ? conn.client.callTool(params, opts) : conn.client.callTool(params, undefined, opts)));
  const sent = conn.wire.slice(start).find((w) => w.dir === 'out' && w.msg.method === 'tools/call' && w.msg.params?.name === name);
  const id = sent?.msg.id;
  const end = conn.wire.findIndex((w, i) => i >= start && w.dir === 'in' && w.msg.id === id && w.msg.method === undefined);
  const during = conn.wire
    .slice(start, end < 0 ? conn.wire.length : end)
    .filter((w) => w.dir === 'in' && w.msg.method?.startsWith('notifications/'))
    .map((w) => w.msg);
  return { result: out.value, error: out.error, code: out.code, id, during };
}

// waitUntil polls cond every 20ms until it is true or ms have passed.
export async function waitUntil(ms, cond) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

// attempt runs fn and returns {value} or {error: message, code}.
export async function attempt(fn) {
  try {
    return { value: await fn() };
  } catch (e) {
    return { error: String(e?.message ?? e), code: e?.code };
  }
}

// run runs the scenario named by argv[2] and prints what it returns.
export async function run(scenarios) {
  const name = process.argv[2];
  const fn = scenarios[name];
  if (!fn) {
    console.log(JSON.stringify({ fatal: `unknown scenario ${JSON.stringify(name)}; have ${Object.keys(scenarios).join(', ')}` }));
    process.exit(2);
  }
  try {
    const out = await fn();
    console.log(JSON.stringify(out));
    process.exit(0);
  } catch (e) {
    console.error(e?.stack ?? e);
    console.log(JSON.stringify({ fatal: String(e?.message ?? e) }));
    process.exit(2);
  }
}
