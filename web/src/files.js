// Files: multipart POST for small files, presigned PUT (with progress) for large ones.
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { request, ApiError, networkError } from './api.js';

/** The API's MAX_UPLOAD_BYTES: larger files go through a presigned upload. */
export const DIRECT_LIMIT = 4 * 1024 * 1024;

export function listFiles({ limit = 50, offset = 0 } = {}) {
  return request('GET', `/files?limit=${limit}&offset=${offset}`);
}

export function getFile(id) {
  return request('GET', `/files/${encodeURIComponent(id)}`);
}

/** uploadFile(file, onProgress(fraction)) → the file view. */
export async function uploadFile(file, onProgress = () => {}) {
  if (file.size <= DIRECT_LIMIT) {
    const form = new FormData();
    form.append('file', file, file.name);
    onProgress(0);
    const view = await request('POST', '/files', { body: form });
    onProgress(1);
    return view;
  }
  const sha256 = await sha256Hex(file);
  const presigned = await request('POST', '/files/presign', {
    json: { filename: file.name, content_type: file.type || 'application/octet-stream', size: file.size, sha256 },
  });
  await putWithProgress(presigned.upload, file, onProgress);
  return request('POST', presigned.complete_url || `/files/${presigned.file.id}/complete`);
}

/** The hex SHA-256 of a file, read a slice at a time (the presigned URL is bound to it). */
async function sha256Hex(file) {
  const hash = sha256.create();
  const slice = 8 * 1024 * 1024;
  for (let at = 0; at < file.size; at += slice) {
    hash.update(new Uint8Array(await file.slice(at, at + slice).arrayBuffer()));
  }
  return bytesToHex(hash.digest());
}

/** Headers a browser sets itself from the body (and refuses to be given). */
const SET_BY_THE_BROWSER = new Set(['content-length']);

function putWithProgress(upload, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(upload.method || 'PUT', upload.url);
    for (const [name, value] of Object.entries(upload.headers || {})) {
      if (!SET_BY_THE_BROWSER.has(name.toLowerCase())) xhr.setRequestHeader(name, value);
    }
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve();
      } else {
        reject(new ApiError({ title: `Storage refused the upload (${xhr.status})`, detail: xhr.responseText.slice(0, 300) }, xhr.status));
      }
    };
    xhr.onerror = () => reject(networkError('the presigned upload could not reach the storage', 'connection failed'));
    xhr.send(file);
  });
}

export function formatBytes(n) {
  if (n == null) return '–';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
