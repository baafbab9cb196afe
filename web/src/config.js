// Run-time settings, written beside index.html at deploy time (infra/deploy.sh), so one build
// serves any stack: {api_url, issuer, client_id, redirect_uri}.
const REQUIRED = ['api_url', 'issuer', 'client_id', 'redirect_uri'];

export async function loadConfig() {
  let response;
  try {
    response = await fetch('./config.json', { cache: 'no-store' });
  } catch (e) {
    throw { title: 'Configuration unreachable', detail: `config.json could not be fetched: ${e.message}` };
  }
  if (!response.ok) {
    throw { title: 'Configuration missing', detail: `config.json answered ${response.status}: the console was deployed without its settings (infra/deploy.sh writes them)` };
  }
  let config;
  try {
    config = await response.json();
  } catch {
    throw { title: 'Configuration unreadable', detail: 'config.json is not valid JSON' };
  }
  const missing = REQUIRED.filter((k) => typeof config[k] !== 'string' || !config[k]);
  if (missing.length) {
    throw { title: 'Configuration incomplete', detail: `config.json lacks ${missing.join(', ')}` };
  }
  return {
    ...config,
    api_url: config.api_url.replace(/\/+$/, ''),
    issuer: config.issuer.replace(/\/+$/, ''),
  };
}
