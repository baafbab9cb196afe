// Login through the identity provider, with the authorization code + PKCE done by our API:
// POST /auth/login gives the provider's URL, the verifier and the signed state (kept in
// sessionStorage while the browser is away); the provider redirects back with ?code&state;
// POST /auth/callback exchanges them for the access token and the user.
import { request, ApiError } from './api.js';

const SESSION_KEY = 'mecapy.session';
const PENDING_KEY = 'mecapy.login';

export function loadSession() {
  try {
    const session = JSON.parse(sessionStorage.getItem(SESSION_KEY));
    if (session?.access_token && session.expires_at > Date.now()) return session;
  } catch {
    /* no session */
  }
  sessionStorage.removeItem(SESSION_KEY);
  return null;
}

export function clearSession() {
  sessionStorage.removeItem(SESSION_KEY);
  sessionStorage.removeItem(PENDING_KEY);
}

export async function startLogin(config) {
  const login = await request('POST', '/auth/login', { json: { redirect_uri: config.redirect_uri }, auth: false });
  sessionStorage.setItem(PENDING_KEY, JSON.stringify({ code_verifier: login.code_verifier, state: login.state }));
  window.location.assign(login.authorization_url);
}

/** True when the page is the provider's redirect back (a code or an error in the query). */
export function isCallback(params) {
  return params.has('state') && (params.has('code') || params.has('error'));
}

export async function completeLogin(params) {
  const pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) || 'null');
  sessionStorage.removeItem(PENDING_KEY);
  if (params.has('error')) {
    throw new ApiError({
      title: params.get('error') === 'access_denied' ? 'Login cancelled' : 'Login refused',
      detail: `${params.get('error')}: ${params.get('error_description') || 'the identity provider gave no reason'}`,
    }, 0);
  }
  if (!pending) {
    throw new ApiError({ title: 'Login not started here', detail: 'This browser tab has no login in progress: log in again.' }, 0);
  }
  if (pending.state !== params.get('state')) {
    throw new ApiError({ title: 'Login state mismatch', detail: 'The state returned by the identity provider is not the one this tab sent: log in again.' }, 0);
  }
  const answer = await request('POST', '/auth/callback', {
    json: { code: params.get('code'), code_verifier: pending.code_verifier, state: pending.state },
    auth: false,
  });
  const session = {
    access_token: answer.access_token,
    token_type: answer.token_type,
    expires_at: Date.now() + (answer.expires_in || 300) * 1000,
    user: answer.user,
  };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  return session;
}

/** RP-initiated logout at the provider, so the next login shows its form again. */
export function logoutUrl(config) {
  const url = new URL(`${config.issuer}/protocol/openid-connect/logout`);
  url.searchParams.set('client_id', config.client_id);
  url.searchParams.set('post_logout_redirect_uri', config.redirect_uri);
  return url.toString();
}

export function logout(config) {
  clearSession();
  window.location.assign(logoutUrl(config));
}
