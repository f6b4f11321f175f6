// A real OAuth 2.1 authorization server for Switchboard's tests, built on
// oidc-provider (an OpenID Certified implementation): authorization code
// with PKCE (required), dynamic client registration, resource indicators
// (RFC 8707: access tokens are bound to the MCP server they were asked for),
// rotating refresh tokens, revocation and introspection (the protected MCP
// server validates every token here). Users log in with a password on an
// HTML form and approve on a second one, as a person would.
//
// Environment:
//   AS_PORT          port on 127.0.0.1 (0: any); the issuer is printed as
//                    one JSON line on stdout once listening
//   AS_ACCESS_TTL    access token lifetime in seconds (default 3600)
//   AS_ACCOUNTS      JSON object: username -> password
//   AS_RS_CLIENT     JSON {client_id, client_secret}: the resource server's
//                    credentials for introspection
//   AS_ADMIN_TOKEN   bearer token for /admin/* (test control)
//
// Test control (Authorization: Bearer AS_ADMIN_TOKEN):
//   POST /admin/revoke?account=U  destroys every grant of U, with its tokens
//   GET  /admin/stats             {"codes":n,"refreshes":n,"refreshFailures":n}
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import Provider, { errors } from 'oidc-provider';

const port = Number(process.env.AS_PORT || 0);
const accessTTL = Number(process.env.AS_ACCESS_TTL || 3600);
const accounts = JSON.parse(process.env.AS_ACCOUNTS || '{"alice":"alice-pw","bob":"bob-pw"}');
const rs = JSON.parse(process.env.AS_RS_CLIENT || '{"client_id":"mcp-rs","client_secret":"rs-secret-0123456789"}');
const adminToken = process.env.AS_ADMIN_TOKEN || randomBytes(16).toString('hex');

const server = http.createServer();
await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const stats = { codes: 0, refreshes: 0, refreshFailures: 0 };
const grantsOf = new Map(); // accountId -> Set(grantId)

const loopback = (u) => {
  try {
    const url = new URL(u);
    return url.protocol === 'http:' && (url.hostname === '127.0.0.1' || url.hostname === 'localhost' || url.hostname === '[::1]');
  } catch {
    return false;
  }
};

const provider = new Provider(issuer, {
  clients: [{
    client_id: rs.client_id,
    client_secret: rs.client_secret,
    grant_types: [],
    response_types: [],
    redirect_uris: [],
  }],
  scopes: ['openid', 'offline_access', 'mcp:tools'],
  pkce: { required: () => true },
  ttl: {
    AccessToken: accessTTL,
    AuthorizationCode: 60,
    Grant: 86400,
    Interaction: 600,
    Session: 86400,
    RefreshToken: 86400,
  },
  rotateRefreshToken: true,
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
    revocation: { enabled: true, allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId },
    introspection: { enabled: true, allowedPolicy: async (ctx, client) => client.clientId === rs.client_id },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => undefined,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resource) => {
        if (!loopback(resource)) {
          throw new errors.InvalidTarget();
        }
        return { scope: 'mcp:tools', audience: resource, accessTokenTTL: accessTTL, accessTokenFormat: 'opaque' };
      },
    },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: async (ctx, id) => (accounts[id] ? { accountId: id, claims: async () => ({ sub: id }) } : undefined),
  cookies: { keys: [randomBytes(16).toString('hex')] },
});
provider.proxy = false;

provider.on('grant.success', (ctx) => {
  const gt = ctx.oidc.params?.grant_type;
  if (gt === 'authorization_code') stats.codes += 1;
  if (gt === 'refresh_token') stats.refreshes += 1;
});
provider.on('grant.error', (ctx) => {
  if (ctx.oidc?.params?.grant_type === 'refresh_token') stats.refreshFailures += 1;
});

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const page = (res, title, body) => {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><html><head><title>${escape(title)}</title></head><body><h1>${escape(title)}</h1>${body}</body></html>`);
};

const readForm = (req) => new Promise((resolve, reject) => {
  let data = '';
  req.setEncoding('utf8');
  req.on('data', (c) => { data += c; if (data.length > 1e5) req.destroy(); });
  req.on('end', () => resolve(new URLSearchParams(data)));
  req.on('error', reject);
});

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    res.writeHead(400).end('interaction mismatch');
    return;
  }
  const { prompt, params } = details;
  if (req.method === 'GET') {
    if (prompt.name === 'login') {
      page(res, 'Sign in', `<form method="post" action="/interaction/${uid}/login">
        <p>${escape(params.client_id)} asks to act for you at ${escape(params.resource || '')}.</p>
        <input name="username"> <input name="password" type="password">
        <button type="submit">Sign in</button></form>`);
    } else {
      page(res, 'Authorize', `<form method="post" action="/interaction/${uid}/confirm">
        <p>Allow ${escape(params.client_id)} ${escape(params.scope || '')}?</p>
        <button type="submit">Allow</button></form>`);
    }
    return;
  }
  const form = await readForm(req);
  if (action === 'login') {
    const user = form.get('username');
    if (!accounts[user] || accounts[user] !== form.get('password')) {
      page(res, 'Sign in', '<p>Wrong username or password.</p>');
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: user } }, { mergeWithLastSubmission: false });
    return;
  }
  if (action === 'confirm' && prompt.name === 'consent') {
    const { details: d } = prompt;
    const accountId = details.session.accountId;
    let grant = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
    if (!grant) {
      grant = new provider.Grant({ accountId, clientId: params.client_id });
    }
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    if (d.missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(d.missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
    }
    const grantId = await grant.save();
    if (!grantsOf.has(accountId)) grantsOf.set(accountId, new Set());
    grantsOf.get(accountId).add(grantId);
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }
  res.writeHead(400).end('unexpected interaction');
}

async function admin(req, res, url) {
  if (req.headers.authorization !== `Bearer ${adminToken}`) {
    res.writeHead(401).end();
    return;
  }
  if (req.method === 'POST' && url.pathname === '/admin/revoke') {
    const account = url.searchParams.get('account');
    let n = 0;
    for (const grantId of grantsOf.get(account) ?? []) {
      await provider.Grant.adapter.revokeByGrantId(grantId);
      const grant = await provider.Grant.find(grantId);
      if (grant) await grant.destroy();
      n += 1;
    }
    grantsOf.delete(account);
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ revoked: n }));
    return;
  }
  if (req.method === 'GET' && url.pathname === '/admin/stats') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(stats));
    return;
  }
  res.writeHead(404).end();
}

const callback = provider.callback();
server.on('request', async (req, res) => {
  const url = new URL(req.url, issuer);
  try {
    const m = url.pathname.match(/^\/interaction\/([^/]+)(?:\/(login|confirm))?$/);
    if (m) {
      await interaction(req, res, m[1], m[2]);
      return;
    }
    if (url.pathname.startsWith('/admin/')) {
      await admin(req, res, url);
      return;
    }
    callback(req, res);
  } catch (err) {
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(`error: ${err.message}`);
  }
});

process.stdout.write(`${JSON.stringify({ issuer, admin_token: adminToken })}\n`);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
