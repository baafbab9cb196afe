// In-memory storage adapter for oidc-provider.
//
// One Map shared by every Provider instance of this process, so that rebuilding the
// Provider (key rotation) keeps sessions, grants, codes and refresh tokens. No size cap
// (unlike the library's LRU-based development adapter); expired entries are swept
// periodically. Everything is lost when the process stops: this is a development server.

const store = new Map(); // key -> { payload, expiresAt (ms epoch) | undefined }

const GRANTABLE = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
]);

function get(key) {
  const entry = store.get(key);
  if (!entry) return undefined;
  if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
    store.delete(key);
    return undefined;
  }
  return entry.payload;
}

function set(key, payload, expiresIn) {
  store.set(key, {
    payload,
    expiresAt: typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined,
  });
}

const sweep = setInterval(() => {
  const now = Date.now();
  for (const [key, entry] of store) {
    if (entry.expiresAt !== undefined && entry.expiresAt <= now) store.delete(key);
  }
}, 60_000);
sweep.unref();

export default class MemoryAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    set(key, payload, expiresIn);

    if (GRANTABLE.has(this.model) && payload.grantId) {
      const grantKey = `grant:${payload.grantId}`;
      const members = get(grantKey) || [];
      members.push(key);
      set(grantKey, members, expiresIn);
    }
    if (this.model === 'Session' && payload.uid) {
      set(`sessionUid:${payload.uid}`, id, expiresIn);
    }
    if (payload.userCode) {
      set(`userCode:${payload.userCode}`, id, expiresIn);
    }
  }

  async find(id) {
    return get(this.key(id));
  }

  async findByUid(uid) {
    const id = get(`sessionUid:${uid}`);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = get(`userCode:${userCode}`);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const payload = get(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    const grantKey = `grant:${grantId}`;
    for (const key of get(grantKey) || []) store.delete(key);
    store.delete(grantKey);
  }
}
