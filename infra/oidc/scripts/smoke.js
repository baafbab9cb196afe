#!/usr/bin/env node
// Smoke test of the local OIDC provider, as a scripted browser + client would use it.
//
//   node infra/oidc/scripts/smoke.js            # login flow, tokens, refusals, admin sign
//   node infra/oidc/scripts/smoke.js --rotate   # also rotates the signing key (POST /admin/rotate)
//
// Environment: OIDC_ISSUER, OIDC_CLIENT_ID, OIDC_AUDIENCE, OIDC_ADMIN_URL (defaults: infra/local.env).
// Exits non-zero if any check fails; the last line is "smoke: N passed, N failed".

import * as crypto from 'node:crypto';

import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';

const ISSUER = (process.env.OIDC_ISSUER || 'http://172.17.0.1:8180/realms/mecapy').replace(/\/+$/, '');
const CLIENT_ID = process.env.OIDC_CLIENT_ID || 'mecapy-api';
const AUDIENCE = process.env.OIDC_AUDIENCE || 'mecapy-api';
const ADMIN = (process.env.OIDC_ADMIN_URL || 'http://127.0.0.1:8181').replace(/\/+$/, '');
const REDIRECT_URI = 'http://localhost:3000/auth/callback';
const ROTATE = process.argv.includes('--rotate');

let passed = 0;
let failed = 0;
function check(name, ok, detail = '') {
  if (ok) passed += 1; else failed += 1;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? ` - ${detail}` : ''}`);
  return ok;
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const decodePayload = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));

// A minimal cookie jar (one host): name -> {value, path}.
class Jar {
  constructor() { this.cookies = new Map(); }

  store(res) {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      let cookiePath = '/';
      let expired = value === '';
      for (const attr of attrs) {
        const [k, v = ''] = attr.split('=');
        if (k.toLowerCase() === 'path') cookiePath = v;
        if (k.toLowerCase() === 'max-age' && Number(v) <= 0) expired = true;
        if (k.toLowerCase() === 'expires' && Date.parse(v) < Date.now()) expired = true;
      }
      const key = `${name};${cookiePath}`;
      if (expired) this.cookies.delete(key); else this.cookies.set(key, { name, value, path: cookiePath });
    }
  }

  header(url) {
    const { pathname } = new URL(url);
    return [...this.cookies.values()]
      .filter((c) => pathname === c.path || pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`) || c.path === '/')
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
  }
}

async function request(jar, url, options = {}) {
  const headers = { ...(options.headers || {}) };
  const cookie = jar.header(url);
  if (cookie) headers.cookie = cookie;
  const res = await fetch(url, { ...options, headers, redirect: 'manual' });
  jar.store(res);
  return res;
}

// Follow redirects until a page (non-3xx) or a Location on the redirect URI.
async function follow(jar, res, url) {
  let current = res;
  let currentUrl = url;
  for (let hops = 0; hops < 10; hops += 1) {
    if (current.status < 300 || current.status >= 400) return { res: current, url: currentUrl };
    const location = new URL(current.headers.get('location'), currentUrl).href;
    if (location.startsWith(REDIRECT_URI)) return { callback: new URL(location) };
    currentUrl = location;
    current = await request(jar, location);
  }
  throw new Error('too many redirects');
}

function pkce() {
  const verifier = b64url(crypto.randomBytes(32));
  const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge };
}

function authorizationUrl(discovery, { challenge, state, withChallenge = true }) {
  const url = new URL(discovery.authorization_endpoint);
  url.search = new URLSearchParams({
    client_id: CLIENT_ID,
    response_type: 'code',
    redirect_uri: REDIRECT_URI,
    scope: 'openid profile email',
    state,
    nonce: b64url(crypto.randomBytes(12)),
    ...(withChallenge ? { code_challenge: challenge, code_challenge_method: 'S256' } : {}),
  }).toString();
  return url.href;
}

const formAction = (html) => /<form[^>]*\baction="([^"]+)"/.exec(html)?.[1]?.replaceAll('&amp;', '&');

// Full login in a fresh cookie jar; returns {code, state, verifier, callback}.
async function login(discovery, username, password) {
  const jar = new Jar();
  const { verifier, challenge } = pkce();
  const state = b64url(crypto.randomBytes(12));
  const start = authorizationUrl(discovery, { challenge, state });
  const page = await follow(jar, await request(jar, start), start);
  if (!page.res) throw new Error('expected a login form, got a redirect to the redirect URI');
  const html = await page.res.text();
  const action = formAction(html);
  if (!action) throw new Error(`no login form (HTTP ${page.res.status}): ${html.slice(0, 200)}`);
  const actionUrl = new URL(action, page.url).href;
  const posted = await request(jar, actionUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ username, password }).toString(),
  });
  const done = await follow(jar, posted, actionUrl);
  return {
    jar, verifier, state, action, actionUrl, posted, done,
  };
}

async function exchange(discovery, code, verifier) {
  const res = await fetch(discovery.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, client_id: CLIENT_ID, code_verifier: verifier,
    }).toString(),
  });
  return { status: res.status, body: await res.json() };
}

async function certs(discovery) {
  return (await fetch(discovery.jwks_uri)).json();
}

async function verifyAccessToken(discovery, token) {
  return jwtVerify(token, createLocalJWKSet(await certs(discovery)), {
    issuer: ISSUER, audience: AUDIENCE, algorithms: ['RS256'],
  });
}

async function fullLogin(discovery, label) {
  const flow = await login(discovery, 'alice', 'alice-password');
  const cb = flow.done.callback;
  if (!check(`${label}: login redirects to the redirect URI with code and state`, cb && cb.searchParams.get('code') && cb.searchParams.get('state') === flow.state, cb ? cb.href : `HTTP ${flow.done.res?.status}`)) {
    return undefined;
  }
  const tokens = await exchange(discovery, cb.searchParams.get('code'), flow.verifier);
  check(`${label}: token endpoint answers 200`, tokens.status === 200, JSON.stringify(tokens.body).slice(0, 200));
  return { ...tokens.body, code: cb.searchParams.get('code'), verifier: flow.verifier };
}

async function main() {
  const discovery = await (await fetch(`${ISSUER}/.well-known/openid-configuration`)).json();
  const kc = `${ISSUER}/protocol/openid-connect`;
  check('discovery: issuer', discovery.issuer === ISSUER, discovery.issuer);
  check('discovery: Keycloak endpoint URLs', discovery.authorization_endpoint === `${kc}/auth`
    && discovery.token_endpoint === `${kc}/token` && discovery.jwks_uri === `${kc}/certs`
    && discovery.userinfo_endpoint === `${kc}/userinfo` && discovery.end_session_endpoint === `${kc}/logout`);
  check('discovery: PKCE S256 only', JSON.stringify(discovery.code_challenge_methods_supported) === '["S256"]');

  const jwks = await certs(discovery);
  check('certs: RS256 signing key present', jwks.keys.some((k) => k.kty === 'RSA' && k.alg === 'RS256' && k.use === 'sig'));
  check('certs: EC P-256 (ES256) key present', jwks.keys.some((k) => k.kty === 'EC' && k.crv === 'P-256' && k.alg === 'ES256'));
  check('certs: RSA "use": "enc" key present', jwks.keys.some((k) => k.kty === 'RSA' && k.use === 'enc'));
  check('certs: no private key material', jwks.keys.every((k) => !k.d && !k.p));

  // Wrong password: the form again, with an error, no redirect.
  {
    const flow = await login(discovery, 'alice', 'not-the-password');
    const html = flow.done.res ? await flow.done.res.text() : '';
    check('wrong password is refused with the form again', flow.posted.status === 401 && !flow.posted.headers.get('location')
      && html.includes('Invalid username or password') && Boolean(formAction(html)), `HTTP ${flow.posted.status}`);
  }

  // Missing code_challenge: refused.
  {
    const jar = new Jar();
    const url = authorizationUrl(discovery, { state: 'no-pkce', withChallenge: false });
    const res = await request(jar, url);
    const location = res.headers.get('location') || '';
    const refused = (location.startsWith(REDIRECT_URI) && new URL(location).searchParams.get('error') === 'invalid_request')
      || res.status === 400;
    check('authorization without code_challenge is refused', refused, location || `HTTP ${res.status}`);
  }

  const tokens = await fullLogin(discovery, 'alice');
  if (tokens?.access_token) {
    const header = decodeProtectedHeader(tokens.access_token);
    const claims = decodePayload(tokens.access_token);
    check('access token: RS256 JWT with a kid', header.alg === 'RS256' && typeof header.kid === 'string', JSON.stringify(header));
    const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    check('access token: iss, aud, sub, exp', claims.iss === ISSUER && aud.includes(AUDIENCE)
      && claims.sub === '6f1c1b52-8a3e-4c7b-9d1a-2f4e5a6b7c01' && claims.exp > Date.now() / 1000, JSON.stringify(claims));
    check('access token: Keycloak-like claims', claims.email === 'alice@mecapy.dev' && claims.email_verified === true
      && claims.name === 'Alice Martin' && claims.preferred_username === 'alice');
    check('access token: lifetime 300 s', claims.exp - claims.iat === 300, `${claims.exp - claims.iat}`);
    try {
      await verifyAccessToken(discovery, tokens.access_token);
      check('access token: signature verifies against /certs', true);
    } catch (err) {
      check('access token: signature verifies against /certs', false, err.message);
    }
    check('token response: id_token and refresh_token', Boolean(tokens.id_token && tokens.refresh_token));


    const userinfo = await fetch(discovery.userinfo_endpoint, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    const ui = await userinfo.json();
    check('userinfo accepts the access token', userinfo.status === 200 && ui.email === 'alice@mecapy.dev', JSON.stringify(ui));

    if (tokens.refresh_token) {
      const res = await fetch(discovery.token_endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: CLIENT_ID }).toString(),
      });
      const body = await res.json();
      const ok = res.status === 200 && body.access_token && decodeProtectedHeader(body.access_token).alg === 'RS256'
        && decodePayload(body.access_token).email === 'alice@mecapy.dev';
      check('refresh_token grant gives a new JWT access token', ok, ok ? '' : JSON.stringify(body));
    }

    // Last: a reused code fails, and (per OAuth 2.0) revokes what that code issued.
    const again = await exchange(discovery, tokens.code, tokens.verifier);
    check('reusing an authorization code fails', again.status === 400 && again.body.error === 'invalid_grant', JSON.stringify(again.body));
  }

  // Admin API.
  const health = await fetch(`${ADMIN}/admin/health`);
  check('admin: health', health.status === 200);
  {
    const now = Math.floor(Date.now() / 1000);
    const res = await fetch(`${ADMIN}/admin/sign`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ claims: { iss: ISSUER, aud: 'someone-else', sub: 'forged', iat: now, exp: now + 60 }, header: { 'x-test': 1 } }),
    });
    const { token } = await res.json();
    const header = decodeProtectedHeader(token);
    let audienceRejected = false;
    try {
      await verifyAccessToken(discovery, token);
    } catch (err) {
      audienceRejected = err.code === 'ERR_JWT_CLAIM_VALIDATION_FAILED';
    }
    check('admin: sign gives an RS256 token with the current kid, signature valid, wrong aud rejected',
      res.status === 200 && header.alg === 'RS256' && header.kid === (await health.json()).kid && header['x-test'] === 1 && audienceRejected,
      JSON.stringify(header));
  }

  if (ROTATE && tokens?.access_token) {
    const oldKid = decodeProtectedHeader(tokens.access_token).kid;
    const rotated = await (await fetch(`${ADMIN}/admin/rotate`, { method: 'POST' })).json();
    check('admin: rotate answers a new kid', typeof rotated.kid === 'string' && rotated.kid !== oldKid, JSON.stringify(rotated));
    const after = await fullLogin(discovery, 'after rotation');
    if (after?.access_token) {
      const kid = decodeProtectedHeader(after.access_token).kid;
      check('after rotation: new tokens carry the new kid', kid === rotated.kid, `${kid}`);
      const kids = (await certs(discovery)).keys.map((k) => k.kid);
      check('after rotation: /certs publishes old and new keys', kids.includes(oldKid) && kids.includes(rotated.kid), kids.join(', '));
      try {
        await verifyAccessToken(discovery, tokens.access_token);
        check('after rotation: the old token still verifies', true);
      } catch (err) {
        check('after rotation: the old token still verifies', false, err.message);
      }
    }
  }

  console.log(`smoke: ${passed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
}

main().catch((err) => {
  console.error(err);
  console.log(`smoke: ${passed} passed, ${failed + 1} failed`);
  process.exitCode = 1;
});
