// MecaPy local OpenID Connect provider: stands in for the Keycloak realm "mecapy" in
// development and tests. See README.md for URLs, users, the login form and the admin API.

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import Provider, { errors } from 'oidc-provider';
import { createLocalJWKSet, jwtVerify } from 'jose';

import MemoryAdapter from './lib/adapter.js';
import { KeyFile } from './lib/keys.js';
import { loginPage, logoutPage, messagePage } from './lib/pages.js';
import { Users } from './lib/users.js';

// ---------------------------------------------------------------- configuration

const HERE = path.dirname(fileURLToPath(import.meta.url));
const RUN_DIR = path.resolve(process.env.MECAPY_RUN_DIR || path.join(HERE, '..', '..', '.run'));
const KEYS_FILE = process.env.OIDC_JWKS_FILE || path.join(RUN_DIR, 'oidc', 'jwks.json');
const USERS_FILE = process.env.OIDC_USERS_FILE || path.join(HERE, 'users.json');

const ISSUER = (process.env.OIDC_ISSUER || 'http://172.17.0.1:8180/realms/mecapy').replace(/\/+$/, '');
const issuerUrl = new URL(ISSUER);
const MOUNT = issuerUrl.pathname.replace(/\/+$/, ''); // "/realms/mecapy"
const LISTEN_HOST = process.env.OIDC_LISTEN_HOST || issuerUrl.hostname;
const LISTEN_PORT = Number(process.env.OIDC_LISTEN_PORT || issuerUrl.port || 80);

const adminUrl = new URL(process.env.OIDC_ADMIN_URL || 'http://127.0.0.1:8181');
const ADMIN_HOST = adminUrl.hostname;
const ADMIN_PORT = Number(adminUrl.port || 80);

const CLIENT_ID = process.env.OIDC_CLIENT_ID || 'mecapy-api';
const AUDIENCE = process.env.OIDC_AUDIENCE || 'mecapy-api';
const RESOURCE = 'urn:mecapy:api';
const RESOURCE_SCOPE = 'openid profile email';
// The client's redirect URIs, post-logout redirect URIs and CORS origins: comma-separated lists
// from the environment (infra/services.sh adds the web console's), each replacing its default.
function list(name, fallback) {
  const items = (process.env[name] || '').split(',').map((s) => s.trim()).filter(Boolean);
  return items.length ? items : fallback;
}
const REDIRECT_URIS = list('OIDC_REDIRECT_URIS', ['http://localhost:3000/auth/callback', 'http://127.0.0.1:3000/auth/callback']);
const POST_LOGOUT_REDIRECT_URIS = list('OIDC_POST_LOGOUT_REDIRECT_URIS', ['http://localhost:3000/', 'http://127.0.0.1:3000/']);
const WEB_ORIGINS = new Set(list('OIDC_WEB_ORIGINS', ['http://localhost:3000', 'http://127.0.0.1:3000']));
const ACCESS_TOKEN_TTL = 300;

const KC = '/protocol/openid-connect';
const LOGIN_ACTIONS = `${MOUNT}/login-actions/`;
const USERINFO_PATH = `${MOUNT}${KC}/userinfo`;

function log(...args) {
  console.log(new Date().toISOString(), ...args);
}

function isLoopback(host) {
  return host === 'localhost' || host === '[::1]' || host === '::1' || /^127\./.test(host);
}

if (!isLoopback(ADMIN_HOST)) {
  console.error(`refusing to bind the admin API to ${ADMIN_HOST}: it must be a loopback address`);
  process.exit(2);
}

// ---------------------------------------------------------------- state

const users = new Users(USERS_FILE);
const keyFile = new KeyFile(KEYS_FILE).load();
const COOKIE_KEYS = [crypto.randomBytes(32).toString('base64url')];

function publicJwks() {
  return {
    keys: keyFile.keys.map((k) => {
      const {
        d, p, q, dp, dq, qi, ...pub
      } = k;
      return pub;
    }),
  };
}

function providerConfiguration() {
  const signingKid = keyFile.current.kid;
  return {
    adapter: MemoryAdapter,
    jwks: keyFile.jwks,
    cookies: { keys: COOKIE_KEYS },
    clients: [{
      client_id: CLIENT_ID,
      client_name: 'MecaPy',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: REDIRECT_URIS,
      post_logout_redirect_uris: POST_LOGOUT_REDIRECT_URIS,
      id_token_signed_response_alg: 'RS256',
    }],
    routes: {
      authorization: `${KC}/auth`,
      token: `${KC}/token`,
      jwks: `${KC}/certs`,
      userinfo: `${KC}/userinfo`,
      end_session: `${KC}/logout`,
      revocation: `${KC}/revoke`,
      pushed_authorization_request: `${KC}/ext/par/request`,
    },
    responseTypes: ['code'],
    interactions: {
      url: (ctx, interaction) => `${ISSUER}/login-actions/${interaction.uid}`,
    },
    scopes: ['openid', 'offline_access', 'profile', 'email'],
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username', 'given_name', 'family_name'],
      email: ['email', 'email_verified'],
    },
    conformIdTokenClaims: false, // like Keycloak: profile/email claims in the ID token too
    pkce: { required: () => true }, // S256 is the only method oidc-provider 9 supports
    features: {
      devInteractions: { enabled: false },
      encryption: { enabled: true }, // lets the JWKS carry an RSA "use": "enc" key
      revocation: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        // The project's own pages: oidc-provider's defaults load a web font from the internet.
        logoutSource: (ctx, form) => { ctx.type = 'html'; ctx.body = logoutPage(form); },
        postLogoutSuccessSource: (ctx) => { ctx.type = 'html'; ctx.body = messagePage('Logged out', 'You are logged out.'); },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator) => {
          if (resourceIndicator !== RESOURCE) throw new errors.InvalidTarget();
          return {
            audience: AUDIENCE,
            scope: RESOURCE_SCOPE,
            accessTokenFormat: 'jwt',
            accessTokenTTL: ACCESS_TOKEN_TTL,
            jwt: { sign: { alg: 'RS256', kid: signingKid } },
          };
        },
      },
    },
    clientBasedCORS: (ctx, origin) => WEB_ORIGINS.has(origin),
    renderError: (ctx, out) => {
      ctx.type = 'html';
      ctx.body = messagePage('Error', `${out.error}${out.error_description ? `: ${out.error_description}` : ''}`);
    },
    findAccount: (ctx, sub) => {
      const user = users.find(sub);
      if (!user) return undefined;
      return { accountId: sub, claims: () => Users.claims(user) };
    },
    extraTokenClaims: (ctx, token) => {
      const user = token.accountId && users.find(token.accountId);
      if (!user) return undefined;
      const { sub, ...claims } = Users.claims(user);
      return { ...claims, azp: token.clientId };
    },
    issueRefreshToken: (ctx, client) => client.grantTypeAllowed('refresh_token'),
    ttl: {
      AccessToken: ACCESS_TOKEN_TTL,
      AuthorizationCode: 60,
      IdToken: ACCESS_TOKEN_TTL,
      RefreshToken: 1800,
      Interaction: 600,
      Session: 36000,
      Grant: 36000,
    },
  };
}

function buildProvider() {
  const provider = new Provider(ISSUER, providerConfiguration());
  for (const event of ['server_error', 'authorization.error', 'grant.error', 'end_session.error', 'revocation.error', 'userinfo.error']) {
    provider.on(event, (ctx, err) => {
      log(`${event}: ${err.name}: ${err.message}${err.error_description ? ` (${err.error_description})` : ''}`);
    });
  }
  return { provider, handle: provider.callback(), kid: keyFile.current.kid };
}

// Rebuilt in-process on key rotation; the adapter's store is module-level, so sessions,
// grants, codes and refresh tokens survive the rebuild.
let current = buildProvider();

// ---------------------------------------------------------------- helpers

function send(res, status, body, type = 'application/json') {
  const text = type === 'application/json' ? `${JSON.stringify(body)}\n` : body;
  res.writeHead(status, {
    'Content-Type': `${type}; charset=utf-8`,
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
  });
  res.end(text);
}

async function readBody(req, limit = 64 * 1024) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw Object.assign(new Error('request body too large'), { status: 413 });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function readForm(req) {
  return Object.fromEntries(new URLSearchParams(await readBody(req)));
}

async function readJson(req) {
  const text = await readBody(req, 1024 * 1024);
  if (!text.trim()) return {};
  try {
    return JSON.parse(text);
  } catch {
    throw Object.assign(new Error('body is not valid JSON'), { status: 400 });
  }
}

// ---------------------------------------------------------------- login form (interactions)

// Grant everything the client asked for, like Keycloak with consent turned off.
async function grantEverything(provider, details, accountId) {
  const { params, prompt } = details;
  let grant = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
  if (!grant || grant.accountId !== accountId) {
    grant = new provider.Grant({ accountId, clientId: params.client_id });
  }
  const supported = new Set(['openid', 'offline_access', 'profile', 'email']);
  const requested = String(params.scope || 'openid').split(' ').filter((s) => supported.has(s));
  if (requested.length) grant.addOIDCScope(requested.join(' '));
  const d = prompt.details || {};
  if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
  if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
  if (d.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(d.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  grant.addResourceScope(RESOURCE, RESOURCE_SCOPE);
  return grant.save();
}

async function handleInteraction(req, res, uid) {
  const { provider } = current;
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    log(`interaction ${uid}: ${err.name}: ${err.message}`);
    send(res, 400, messagePage('Login expired', 'This login page has expired or its cookie is missing. Start the login again from the application.'), 'text/html');
    return;
  }
  if (details.uid !== uid) {
    send(res, 400, messagePage('Login expired', 'This login page does not match the current login. Start the login again from the application.'), 'text/html');
    return;
  }
  const action = `${ISSUER}/login-actions/${details.uid}`;
  const promptName = details.prompt.name;

  if (promptName !== 'login') {
    // Consent (or any other prompt) is granted automatically.
    const accountId = details.session?.accountId;
    if (!accountId) {
      send(res, 400, messagePage('Login expired', 'No signed-in user for this request. Start the login again.'), 'text/html');
      return;
    }
    const grantId = await grantEverything(provider, details, accountId);
    log(`interaction ${uid}: ${promptName} granted automatically for ${accountId}`);
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }

  if (req.method === 'GET' || req.method === 'HEAD') {
    send(res, 200, loginPage({ action, clientId: details.params.client_id, username: details.params.login_hint }), 'text/html');
    return;
  }
  if (req.method !== 'POST') {
    send(res, 405, messagePage('Method not allowed', 'Use GET or POST.'), 'text/html');
    return;
  }

  const form = await readForm(req);
  if (form.cancel !== undefined) {
    log(`interaction ${uid}: cancelled`);
    await provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'End-user cancelled the login',
    }, { mergeWithLastSubmission: false });
    return;
  }
  const user = users.authenticate(form.username, form.password);
  if (!user) {
    log(`interaction ${uid}: invalid credentials for ${JSON.stringify(String(form.username ?? ''))}`);
    send(res, 401, loginPage({
      action, clientId: details.params.client_id, username: form.username, error: 'Invalid username or password.',
    }), 'text/html');
    return;
  }
  const grantId = await grantEverything(provider, details, user.sub);
  log(`interaction ${uid}: ${user.username} signed in (sub ${user.sub})`);
  await provider.interactionFinished(req, res, {
    login: { accountId: user.sub },
    consent: { grantId },
  }, { mergeWithLastSubmission: false });
}

// ---------------------------------------------------------------- userinfo

// oidc-provider refuses audience-restricted (JWT, aud=mecapy-api) access tokens at
// userinfo; Keycloak accepts its access tokens there, so this endpoint is served here.
async function handleUserinfo(req, res) {
  const origin = req.headers.origin;
  if (origin && WEB_ORIGINS.has(origin)) {
    res.setHeader('Access-Control-Allow-Origin', origin);
    res.setHeader('Vary', 'Origin');
  }
  if (req.method === 'OPTIONS') {
    res.setHeader('Access-Control-Allow-Methods', 'GET, POST');
    res.setHeader('Access-Control-Allow-Headers', 'Authorization');
    res.writeHead(204);
    res.end();
    return;
  }
  if (req.method !== 'GET' && req.method !== 'POST') {
    send(res, 405, { error: 'invalid_request', error_description: 'use GET or POST' });
    return;
  }
  const match = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization || '');
  const fail = (description) => {
    res.setHeader('WWW-Authenticate', `Bearer realm="mecapy", error="invalid_token", error_description="${description}"`);
    send(res, 401, { error: 'invalid_token', error_description: description });
  };
  if (!match) {
    fail('missing bearer access token');
    return;
  }
  try {
    const { payload } = await jwtVerify(match[1], createLocalJWKSet(publicJwks()), {
      issuer: ISSUER,
      audience: AUDIENCE,
      algorithms: ['RS256'],
    });
    const user = users.find(payload.sub);
    if (!user) {
      fail('unknown subject');
      return;
    }
    send(res, 200, Users.claims(user));
  } catch (err) {
    fail(`access token rejected: ${err.code || err.name}`);
  }
}

// ---------------------------------------------------------------- public server

async function handlePublic(req, res) {
  const { pathname } = new URL(req.url, 'http://placeholder');
  if (pathname.startsWith(LOGIN_ACTIONS) && !pathname.slice(LOGIN_ACTIONS.length).includes('/')) {
    await handleInteraction(req, res, pathname.slice(LOGIN_ACTIONS.length));
    return;
  }
  if (pathname === USERINFO_PATH) {
    await handleUserinfo(req, res);
    return;
  }
  if (pathname === MOUNT || pathname.startsWith(`${MOUNT}/`)) {
    // Mount oidc-provider under the issuer's path, the way express does it: the provider
    // derives its mount path from req.originalUrl minus req.url.
    req.originalUrl = req.url;
    req.url = req.url.slice(MOUNT.length) || '/';
    req.headers.host = issuerUrl.host; // discovery and redirects always use the issuer's origin
    current.handle(req, res);
    return;
  }
  if (pathname === '/') {
    send(res, 200, {
      issuer: ISSUER,
      discovery: `${ISSUER}/.well-known/openid-configuration`,
    });
    return;
  }
  send(res, 404, { error: 'not_found' });
}

// ---------------------------------------------------------------- admin API (loopback only)

function signJwt(claims, extraHeader) {
  // Extra header fields override the defaults, except "alg".
  const header = { typ: 'at+jwt', kid: keyFile.current.kid, ...extraHeader };
  header.alg = 'RS256';
  const input = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  const signature = crypto.sign('sha256', Buffer.from(input), keyFile.currentPrivateKey()).toString('base64url');
  return `${input}.${signature}`;
}

async function handleAdmin(req, res) {
  const { pathname } = new URL(req.url, 'http://placeholder');
  if (pathname === '/admin/health' && (req.method === 'GET' || req.method === 'HEAD')) {
    send(res, 200, {
      status: 'ok',
      issuer: ISSUER,
      kid: current.kid,
      redirect_uris: REDIRECT_URIS,
      post_logout_redirect_uris: POST_LOGOUT_REDIRECT_URIS,
      web_origins: [...WEB_ORIGINS],
    });
    return;
  }
  if (pathname === '/admin/rotate' && req.method === 'POST') {
    const key = keyFile.rotate();
    current = buildProvider();
    log(`admin: rotated signing key, current kid ${key.kid}`);
    send(res, 200, { kid: key.kid });
    return;
  }
  if (pathname === '/admin/sign' && req.method === 'POST') {
    const body = await readJson(req);
    const claims = body.claims ?? {};
    const header = body.header ?? {};
    if (typeof claims !== 'object' || Array.isArray(claims) || claims === null
      || typeof header !== 'object' || Array.isArray(header) || header === null) {
      send(res, 400, { error: '"claims" and "header" must be JSON objects' });
      return;
    }
    send(res, 200, { token: signJwt(claims, header), kid: keyFile.current.kid });
    return;
  }
  send(res, 404, { error: 'not_found', routes: ['GET /admin/health', 'POST /admin/rotate', 'POST /admin/sign'] });
}

// ---------------------------------------------------------------- servers

function serve(name, handler) {
  return http.createServer((req, res) => {
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      log(`${name} ${req.method} ${(req.originalUrl || req.url).split('?')[0]} ${res.statusCode} ${ms.toFixed(1)}ms`);
    });
    Promise.resolve(handler(req, res)).catch((err) => {
      log(`${name} error: ${err.stack || err}`);
      if (!res.headersSent) send(res, err.status || 500, { error: err.status ? 'invalid_request' : 'server_error', error_description: err.message });
      else res.end();
    });
  });
}

function listen(server, host, port, what) {
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`cannot listen on ${host}:${port} (${what}): ${err.code || err.message}`)));
    server.listen(port, host, resolve);
  });
}

const publicServer = serve('oidc', handlePublic);
const adminServer = serve('admin', handleAdmin);

try {
  await listen(publicServer, LISTEN_HOST, LISTEN_PORT, 'OIDC provider');
  await listen(adminServer, ADMIN_HOST, ADMIN_PORT, 'admin API');
} catch (err) {
  console.error(err.message);
  process.exit(1);
}
log(`issuer ${ISSUER} listening on http://${LISTEN_HOST}:${LISTEN_PORT}`);
log(`admin API on http://${ADMIN_HOST}:${ADMIN_PORT} (loopback only)`);
log(`signing key kid ${keyFile.current.kid} (keys in ${KEYS_FILE})`);

function shutdown(signal) {
  log(`${signal}: shutting down`);
  publicServer.close();
  adminServer.close();
  publicServer.closeAllConnections?.();
  adminServer.closeAllConnections?.();
  setTimeout(() => process.exit(0), 200).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
