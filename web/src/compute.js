// Computations: submit, follow, list, cancel.
import { request } from './api.js';

export const FINAL = new Set(['succeeded', 'failed', 'timeout', 'oom', 'error', 'cancelled']);

/** submit({code} | {file_id}, input_file_ids, args) → {job_id, status, links}. */
export function submitJob({ code, fileId, inputIds = [], args = [] }) {
  const body = { tool: 'python' };
  if (fileId) body.file_id = fileId;
  else body.code = code;
  if (inputIds.length) body.input_file_ids = inputIds;
  if (args.length) body.args = args;
  return request('POST', '/compute', { json: body });
}

export function getJob(id) {
  return request('GET', `/compute/${encodeURIComponent(id)}`);
}

export function listJobs({ limit = 10, offset = 0 } = {}) {
  return request('GET', `/compute?limit=${limit}&offset=${offset}`);
}

export function cancelJob(id) {
  return request('DELETE', `/compute/${encodeURIComponent(id)}`);
}

/** Polls until the job ends or stop() is called; onUpdate gets every state seen. */
export function watchJob(id, onUpdate, onError, intervalMs = 1000) {
  let stopped = false;
  let timer;
  const tick = async () => {
    try {
      const job = await getJob(id);
      if (stopped) return;
      onUpdate(job);
      if (FINAL.has(job.status)) return;
    } catch (e) {
      if (stopped) return;
      onError(e);
      if (e.status === 401 || e.status === 404) return;
    }
    timer = setTimeout(tick, intervalMs);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/** "a b 'c d'" → ["a", "b", "c d"] (single or double quotes group words). */
export function splitArgs(text) {
  const out = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  let m;
  while ((m = re.exec(text))) out.push(m[1] ?? m[2] ?? m[3]);
  return out;
}
