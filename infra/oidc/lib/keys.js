// Signing keys of the local OIDC provider, persisted in <run dir>/oidc/jwks.json.
//
// The file is a plain JWKS ({"keys": [...]}, private parts included) in this order:
//   1. the CURRENT signing key (RSA-2048, alg RS256, use sig): signs every new token;
//   2. previous RSA signing keys, newest first (still published so older tokens verify);
//   3. one EC P-256 key (alg ES256, use sig): published, never used to sign;
//   4. one RSA key with use "enc" (alg RSA-OAEP): published, never used to sign.
// Keys 3 and 4 exist so that clients learn to skip JWKS entries they cannot use for RS256.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

// How many previous RSA signing keys stay published after rotations.
export const MAX_PREVIOUS_SIGNING_KEYS = 20;

function newKid(prefix) {
  return `${prefix}-${crypto.randomBytes(12).toString('base64url')}`;
}

export function generateSigningKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: newKid('rs256'), alg: 'RS256', use: 'sig' };
}

function generateEcKey() {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid: newKid('es256'), alg: 'ES256', use: 'sig' };
}

function generateEncKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: newKid('rsa-enc'), alg: 'RSA-OAEP', use: 'enc' };
}

const isRsaSig = (k) => k.kty === 'RSA' && k.use === 'sig' && k.alg === 'RS256';

// Put a key set in the canonical order, filling in whatever is missing.
function normalize(keys, { newCurrent } = {}) {
  const rsaSig = keys.filter(isRsaSig);
  if (newCurrent) rsaSig.unshift(newCurrent);
  if (rsaSig.length === 0) rsaSig.push(generateSigningKey());
  const ec = keys.find((k) => k.kty === 'EC' && k.crv === 'P-256') || generateEcKey();
  const enc = keys.find((k) => k.kty === 'RSA' && k.use === 'enc') || generateEncKey();
  return [...rsaSig.slice(0, 1 + MAX_PREVIOUS_SIGNING_KEYS), ec, enc];
}

export class KeyFile {
  constructor(file) {
    this.file = file;
    this.keys = [];
  }

  // Load the file (or create it). Returns this.
  load() {
    let keys = [];
    if (fs.existsSync(this.file)) {
      const parsed = JSON.parse(fs.readFileSync(this.file, 'utf8'));
      if (!parsed || !Array.isArray(parsed.keys)) {
        throw new Error(`${this.file} is not a JWKS ({"keys": [...]})`);
      }
      keys = parsed.keys;
    }
    const normalized = normalize(keys);
    const changed = JSON.stringify(normalized) !== JSON.stringify(keys);
    this.keys = normalized;
    if (changed) this.save();
    return this;
  }

  save() {
    fs.mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, `${JSON.stringify({ keys: this.keys }, null, 2)}\n`, { mode: 0o600 });
    fs.renameSync(tmp, this.file);
  }

  // Generate a new RS256 key, make it current, keep the previous ones. Returns the new key.
  rotate() {
    const key = generateSigningKey();
    this.keys = normalize(this.keys, { newCurrent: key });
    this.save();
    return key;
  }

  get current() {
    return this.keys[0];
  }

  // The JWKS given to oidc-provider (private parts included, the current key first).
  get jwks() {
    return { keys: this.keys.map((k) => ({ ...k })) };
  }

  currentPrivateKey() {
    return crypto.createPrivateKey({ key: this.current, format: 'jwk' });
  }
}
