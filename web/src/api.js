// The API client: JSON in and out, the bearer token, problem+json errors as ApiError.
const ACCEPT = 'application/vnd.mecapy.v1+json, application/problem+json';

let settings = { baseUrl: '', token: () => null, onUnauthorized: () => {} };

export function configureApi(next) {
  settings = { ...settings, ...next };
}

/** An error to show: the problem+json fields (RFC 9457), or a network failure (status 0). */
export class ApiError extends Error {
  constructor(problem, status) {
    super(problem.detail || problem.title || 'Request failed');
    this.status = status ?? problem.status ?? 0;
    this.title = problem.title || (this.status ? `HTTP ${this.status}` : 'Network error');
    this.detail = problem.detail || '';
    this.type = problem.type;
    this.field = problem.field;
    this.findings = Array.isArray(problem.findings) ? problem.findings : [];
    this.requestId = problem.request_id;
  }
}

export function networkError(what, err) {
  return new ApiError({ title: 'Network error', detail: `${what}: ${err?.message || err}` }, 0);
}

async function readBody(response) {
  const type = response.headers.get('content-type') || '';
  const text = await response.text();
  if (!text) return null;
  if (type.includes('json')) {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return text;
}

/**
 * request('POST', '/files', {json} | {body}) → the parsed body; throws ApiError.
 * `auth: false` for /auth/* (no token, and a 401 there is not a lost session).
 */
export async function request(method, path, { json, body, auth = true } = {}) {
  const headers = { Accept: ACCEPT };
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  if (auth) {
    const token = settings.token();
    if (token) headers.Authorization = `Bearer ${token}`;
  }
  const url = `${settings.baseUrl}${path}`;
  let response;
  try {
    response = await fetch(url, { method, headers, body, credentials: 'omit' });
  } catch (e) {
    throw networkError(`${method} ${path} could not reach the API (${settings.baseUrl})`, e);
  }
  const data = await readBody(response);
  if (!response.ok) {
    const problem = data && typeof data === 'object'
      ? data
      : { title: `${response.status} ${response.statusText}`.trim(), detail: typeof data === 'string' ? data.slice(0, 300) : '' };
    const error = new ApiError(problem, response.status);
    if (response.status === 401 && auth) settings.onUnauthorized(error);
    throw error;
  }
  return data;
}

/** GET of a presigned link (stdout, stderr, outputs): no token, text or bytes. */
export async function fetchLink(url, as = 'text') {
  let response;
  try {
    response = await fetch(url, { credentials: 'omit' });
  } catch (e) {
    throw networkError('the storage link could not be fetched', e);
  }
  if (!response.ok) {
    throw new ApiError({ title: `Storage answered ${response.status}`, detail: (await response.text()).slice(0, 300) }, response.status);
  }
  return as === 'blob' ? response.blob() : response.text();
}
