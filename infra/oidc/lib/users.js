// Development users, read from users.json (see README.md).

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';

export class Users {
  constructor(file) {
    const parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
    const list = Array.isArray(parsed) ? parsed : parsed.users;
    if (!Array.isArray(list) || list.length === 0) throw new Error(`${file}: no users`);
    this.bySub = new Map();
    this.byLogin = new Map();
    for (const u of list) {
      for (const field of ['sub', 'username', 'password', 'email', 'name']) {
        if (typeof u[field] !== 'string' || !u[field]) throw new Error(`${file}: user without "${field}"`);
      }
      this.bySub.set(u.sub, u);
      this.byLogin.set(u.username.toLowerCase(), u);
      this.byLogin.set(u.email.toLowerCase(), u);
    }
  }

  // Like Keycloak: log in with the user name or the e-mail address.
  authenticate(login, password) {
    const user = this.byLogin.get(String(login || '').trim().toLowerCase());
    if (!user || typeof password !== 'string') return undefined;
    const a = crypto.createHash('sha256').update(password).digest();
    const b = crypto.createHash('sha256').update(user.password).digest();
    return crypto.timingSafeEqual(a, b) ? user : undefined;
  }

  find(sub) {
    return this.bySub.get(sub);
  }

  // Claims of a user, as Keycloak puts them in tokens and userinfo.
  static claims(user) {
    return {
      sub: user.sub,
      email: user.email,
      email_verified: user.email_verified !== false,
      name: user.name,
      preferred_username: user.username,
      given_name: user.given_name,
      family_name: user.family_name,
    };
  }
}
