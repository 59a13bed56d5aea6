// Test IdP for certbound's e2e tests: oidc-provider 8.8.1 over HTTPS with mutual TLS, issuing
// certificate-bound (RFC 8705) and DPoP-bound (RFC 9449) access tokens to machine clients
// (client_credentials).
//
//   node server.mjs [--port 8443] [--state DIR] [--host idp.localhost] [--bind 127.0.0.1]
//   (or IDP_PORT, IDP_STATE_DIR, IDP_HOST, IDP_BIND)
//
// DIR holds the PKI from tests/e2e/pki.sh (ca.pem, server.pem, server.key, client-c.pem) and the
// token signing key (idp-signing-key.json, made on first start). The issuer is
// https://<host>:<port>: a host NAME, because Envoy (and Kong's engine) send the issuer's host
// as SNI and verify it, and an IP literal cannot be SNI. Clients dial 127.0.0.1 with that name.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.IDP_PORT ?? '8443' },
    state: { type: 'string', default: process.env.IDP_STATE_DIR ?? '.' },
    host: { type: 'string', default: process.env.IDP_HOST ?? 'idp.localhost' },
    bind: { type: 'string', default: process.env.IDP_BIND ?? '127.0.0.1' },
  },
});
const port = Number(args.port);
const issuer = `https://${args.host}:${port}`;
const state = (name) => path.join(args.state, name);

// Resource servers (RFC 8707 resource indicators). The three api.example resources share one
// audience so a single filter config accepts JWT, opaque and short-lived tokens alike.
const API = 'https://api.example';
const SCOPES = 'accounts:read accounts:write';
const RESOURCES = {
  'https://api.example/jwt': { audience: API, accessTokenFormat: 'jwt', accessTokenTTL: 300 },
  'https://api.example/opaque': { audience: API, accessTokenFormat: 'opaque', accessTokenTTL: 300 },
  // Expires in 2 s: for the filter's exp check (mind its leeway).
  'https://api.example/short': { audience: API, accessTokenFormat: 'jwt', accessTokenTTL: 2 },
  // A well-formed, correctly bound JWT for someone else's API: for the wrong-audience case.
  'https://other.example': { audience: 'https://other.example', accessTokenFormat: 'jwt', accessTokenTTL: 300 },
};

// Clients registered with client_secret_post only; the IdP refuses Basic for them (below).
const POST_ONLY = new Set(['gateway-post']);

// The signing key is made once per state dir and reused, so tokens and cached JWKS outlive a restart.
function signingKey() {
  const file = state('idp-signing-key.json');
  if (!fs.existsSync(file)) {
    const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwk = { ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256', kid: `test-${crypto.randomUUID().slice(0, 8)}` };
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(jwk), { mode: 0o600 });
    // link() fails if another starter won the race; then its key is the one to use.
    try { fs.linkSync(tmp, file); } catch (e) { if (e.code !== 'EEXIST') throw e; }
    fs.unlinkSync(tmp);
  }
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

// client-c's certificate comes from an unrelated CA; it can still get tokens through
// self_signed_tls_client_auth, which pins the certificate itself (its x5c) instead of a CA.
function pinnedCertJwk(file) {
  const cert = new crypto.X509Certificate(fs.readFileSync(file));
  return { ...cert.publicKey.export({ format: 'jwk' }), x5c: [cert.raw.toString('base64')] };
}

const machine = { grant_types: ['client_credentials'], response_types: [], redirect_uris: [], scope: SCOPES };
const clients = [
  ...['client-a', 'client-b'].map((id) => ({
    ...machine,
    client_id: id,
    token_endpoint_auth_method: 'tls_client_auth',
    tls_client_auth_subject_dn: `CN=${id}`,
    tls_client_certificate_bound_access_tokens: true,
  })),
  // client-d's certificate carries `,` `;` `"` `=` in its Subject and SANs (XFCC parsing
  // cases): pinned like client-c, which sidesteps matching such a subject DN.
  ...['client-c', 'client-d'].map((id) => ({
    ...machine,
    client_id: id,
    token_endpoint_auth_method: 'self_signed_tls_client_auth',
    jwks: { keys: [pinnedCertJwk(state(`${id}.pem`))] },
    tls_client_certificate_bound_access_tokens: true,
  })),
  // Plain bearer tokens (no cnf): refused in strict mode, allowed in optional mode.
  { ...machine, client_id: 'client-unbound', client_secret: 'client-unbound-secret', token_endpoint_auth_method: 'client_secret_basic' },
  // The filter's own credentials for introspection.
  { ...machine, client_id: 'gateway', client_secret: 'gateway-secret', token_endpoint_auth_method: 'client_secret_basic' },
  { ...machine, client_id: 'gateway-post', client_secret: 'gateway-post-secret', token_endpoint_auth_method: 'client_secret_post' },
  // DPoP-bound tokens: the token request needs a proof, whose key's thumbprint becomes cnf.jkt
  // (JWT claim and introspection member). oidc-provider allows one proof-of-possession
  // mechanism per client, so this client has no certificate binding.
  {
    ...machine,
    client_id: 'client-dpop',
    client_secret: 'client-dpop-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    dpop_bound_access_tokens: true,
  },
];

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [signingKey()] },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  clientAuthMethods: ['tls_client_auth', 'self_signed_tls_client_auth', 'client_secret_basic', 'client_secret_post'],
  scopes: ['accounts:read', 'accounts:write'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // oidc-provider also takes form credentials from a client registered for
      // client_secret_basic; refusing them lets a test prove the filter really sent Basic
      // (checked once the token is found: an unknown token still gets active: false).
      allowedPolicy(ctx, client) {
        if (client.clientAuthMethod === 'client_secret_basic' && !/^basic /i.test(ctx.headers.authorization ?? '')) {
          throw new errors.InvalidClientAuth('this client must authenticate with client_secret_basic');
        }
        return true;
      },
    },
    revocation: { enabled: true },
    // RFC 9449 at the token endpoint. Nonces are the gateway's business in these tests, not
    // the IdP's: requireNonce is off.
    dPoP: { enabled: true, nonceSecret: crypto.randomBytes(32), requireNonce: () => false },
    // Signed introspection responses (RFC 9701) for a client that asks with
    // `Accept: application/token-introspection+jwt`; every client defaults to RS256.
    jwtIntrospection: { enabled: true },
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      tlsClientAuth: true,
      selfSignedTlsClientAuth: true,
      // v8 wants a crypto.X509Certificate; Node gives {} when the client sent none.
      getCertificate(ctx) {
        const peer = ctx.socket.getPeerCertificate();
        return peer?.raw ? new crypto.X509Certificate(peer.raw) : undefined;
      },
      // The server runs with rejectUnauthorized: false, so "verified against ca" is this flag.
      certificateAuthorized: (ctx) => ctx.socket.authorized,
      certificateSubjectMatches(ctx, property, expected) {
        if (property !== 'tls_client_auth_subject_dn') return false;
        const cert = new crypto.X509Certificate(ctx.socket.getPeerCertificate().raw);
        // Node lists RDNs top-down, one per line; RFC 4514 strings go bottom-up with commas.
        return cert.subject.split('\n').reverse().join(',') === expected;
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'https://api.example/jwt',
      useGrantedResource: () => true,
      getResourceServerInfo(ctx, resource) {
        const rs = RESOURCES[resource];
        if (!rs) throw new errors.InvalidTarget();
        return { scope: SCOPES, ...rs, ...(rs.accessTokenFormat === 'jwt' ? { jwt: { sign: { alg: 'RS256' } } } : {}) };
      },
    },
  },
  // Explicit, so the provider does not warn about defaults; the resource decides the lifetime.
  ttl: {
    AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL ?? 300,
    ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? 300,
  },
});

// One line per request, after the response: method, path (no query string), status. Never
// headers or bodies: they carry tokens and client secrets.
provider.use(async (ctx, next) => {
  try {
    await next();
  } finally {
    console.log(`${new Date().toISOString()} ${ctx.method} ${ctx.path} ${ctx.status}`);
  }
});

// /jwks-slow is /jwks answered 1.5 s late: long enough for a client to reset its stream while
// the gateway waits for the keys (the key-fetch attack case).
provider.use(async (ctx, next) => {
  if (ctx.path === '/jwks-slow') {
    await new Promise((resolve) => setTimeout(resolve, 1500));
    ctx.path = '/jwks';
  }
  await next();
});

// oidc-provider accepts Basic credentials even from a client registered for client_secret_post.
// Refusing Basic for those clients lets a test prove the filter really sent the secret in the form.
provider.use(async (ctx, next) => {
  const auth = ctx.headers.authorization ?? '';
  if (/^basic /i.test(auth)) {
    const user = Buffer.from(auth.slice(6).trim(), 'base64').toString('utf8').split(':')[0];
    let id;
    try { id = decodeURIComponent(user.replace(/\+/g, '%20')); } catch { id = user; }
    if (POST_ONLY.has(id)) {
      ctx.status = 401;
      ctx.body = { error: 'invalid_client', error_description: 'this client must authenticate with client_secret_post' };
      return;
    }
  }
  await next();
});

// Why a request failed, without the request itself (these texts name no token or secret).
// error_detail holds the real reason behind a generic "client authentication failed".
for (const event of ['grant.error', 'introspection.error', 'revocation.error', 'jwks.error', 'discovery.error']) {
  provider.on(event, (ctx, err) => console.log(`  ${event}: ${[err.message, err.error_description, err.error_detail].filter(Boolean).join(': ')}`));
}
provider.on('server_error', (ctx, err) => console.error('  server_error:', err));

const server = https.createServer({
  key: fs.readFileSync(state('server.key')),
  cert: fs.readFileSync(state('server.pem')),
  ca: fs.readFileSync(state('ca.pem')),
  // Ask for a client certificate but let the provider judge it: tls_client_auth needs a CA-verified
  // one, self_signed_tls_client_auth a pinned one, and secret-based clients none at all.
  requestCert: true,
  rejectUnauthorized: false,
}, provider.callback());

server.listen(port, args.bind, () => console.log(`idp: ${issuer} listening on ${args.bind}:${port}`));

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => server.close(() => process.exit(0)).closeAllConnections());
}
