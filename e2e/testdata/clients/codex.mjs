// Drives Codex's app-server (JSON-RPC over stdio, no model needed) to list
// the gateway's tools and call one, the way Codex does for an agent. The Go
// test writes $HOME/.codex/config.toml with an MCP server "sb" whose bearer
// token is in SB_TOKEN, and passes the codex launcher as argv[2]. Prints one
// JSON line: what Codex saw.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

const codex = spawn(process.argv[2], ['app-server'], { stdio: ['pipe', 'pipe', 'inherit'] });
const waiting = new Map();
let nextID = 0;
createInterface({ input: codex.stdout }).on('line', (line) => {
  const m = JSON.parse(line);
  if (m.id !== undefined && waiting.has(m.id)) {
    waiting.get(m.id)(m);
    waiting.delete(m.id);
  }
});
const request = (method, params) =>
  new Promise((resolve) => {
    const id = ++nextID;
    waiting.set(id, resolve);
    codex.stdin.write(JSON.stringify({ id, method, params }) + '\n');
  });

const timer = setTimeout(() => {
  console.log(JSON.stringify({ fatal: 'codex app-server did not answer within 90s' }));
  process.exit(2);
}, 90000);
await request('initialize', { clientInfo: { name: 'switchboard-e2e', version: '1.0.0' } });
codex.stdin.write(JSON.stringify({ method: 'initialized' }) + '\n');
const status = await request('mcpServerStatus/list', {});
const sb = status.result?.data?.find((s) => s.name === 'sb');
const thread = await request('thread/start', {});
const threadId = thread.result?.thread?.id;
const called = await request('mcpServer/tool/call', { server: 'sb', threadId, tool: 'everything__echo', arguments: { message: 'from codex' } });
clearTimeout(timer);
console.log(
  JSON.stringify({
    statusError: status.error,
    serverInfo: sb?.serverInfo,
    tools: Object.keys(sb?.tools ?? {}),
    threadError: thread.error,
    call: called.result,
    callError: called.error,
  }),
);
codex.kill();
process.exit(0);
