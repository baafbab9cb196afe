// The deployed stack the browser tests run against (.run/stack.env), each service checked first:
// a missing one fails naming it and the command that starts it.
import { existsSync, readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const RUN_DIR = process.env.MECAPY_RUN_DIR || path.join(REPO, '.run');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** The only hosts the browser may reach: loopback, the docker bridge, *.localstack.cloud (mapped to 127.0.0.1). */
export function allowedHost(hostname) {
  return hostname === '127.0.0.1' || hostname === 'localhost' || /^172\.17\.\d+\.\d+$/.test(hostname)
    || hostname.endsWith('.localstack.cloud');
}

export function readStackEnv() {
  const file = path.join(RUN_DIR, 'stack.env');
  if (!existsSync(file)) throw new Error(`the stack is not deployed (${file} is missing): run \`make deploy\``);
  const env = Object.fromEntries(readFileSync(file, 'utf8').split('\n')
    .filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  for (const key of ['API_URL', 'CONSOLE_URL', 'CONSOLE_BUCKET']) {
    if (!env[key]) throw new Error(`${file} has no ${key}: the stack was deployed without the web console: run \`make deploy\``);
  }
  return env;
}

/** GET through 127.0.0.1 with a Host header (Node cannot resolve *.localstack.cloud offline either). */
function get(url) {
  const u = new URL(url);
  const host = u.hostname.endsWith('.localstack.cloud') ? '127.0.0.1' : u.hostname;
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port: u.port || 80, path: `${u.pathname}${u.search}`, headers: { host: u.host }, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

async function expect200(what, url, start) {
  let res;
  try {
    res = await get(url);
  } catch (e) {
    throw new Error(`${what} does not answer at ${url} (${e.message}): ${start}`);
  }
  if (res.status !== 200) throw new Error(`${what} answered ${res.status} at ${url}: ${start}`);
  return res.body;
}

/** The stack and every service the console needs, or an error naming what is missing. */
export async function checkServices() {
  if (!existsSync(CHROMIUM)) throw new Error(`chromium is missing at ${CHROMIUM}: run \`infra/browser.sh install\``);
  await expect200('LocalStack', 'http://127.0.0.1:4566/_localstack/health', 'start it with `make services`');
  const env = readStackEnv();
  const config = JSON.parse(await expect200('the web console\'s config.json', `${env.CONSOLE_URL}/config.json`,
    'deploy the console with `make deploy` (or `infra/deploy.sh console`)'));
  await expect200('the web console', `${env.CONSOLE_URL}/`, 'deploy it with `make deploy`');
  await expect200('the OIDC provider', `${config.issuer}/.well-known/openid-configuration`, 'start it with `infra/services.sh up oidc`');
  const health = JSON.parse(await expect200('the OIDC provider\'s admin API', `${process.env.OIDC_ADMIN_URL || 'http://127.0.0.1:8181'}/admin/health`,
    'start it with `infra/services.sh up oidc`'));
  if (Array.isArray(health.redirect_uris) && !health.redirect_uris.includes(config.redirect_uri)) {
    throw new Error(`the OIDC provider does not accept the console's redirect URI ${config.redirect_uri}: restart it with \`infra/services.sh down oidc && infra/services.sh up oidc\``);
  }
  const login = await fetch(`${env.API_URL}/auth/login`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ redirect_uri: config.redirect_uri }),
  }).catch((e) => ({ status: `unreachable (${e.message})` }));
  if (login.status !== 200) {
    throw new Error(`the API refuses the console's redirect URI (POST ${env.API_URL}/auth/login answered ${login.status}): redeploy with \`make deploy\``);
  }
  return { env, config };
}
