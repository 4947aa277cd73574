// Devices (rendezvous): a user's always-on boxes, each with a name and a token. The token is made
// here, shown once, and only its SHA-256 is stored: it is 32 random bytes, so a fast hash is as
// good as a slow one, and it lets a presence connection be looked up by its token at once.
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { StoreError, type DeviceRecord, type Store } from '../store/store.js';
import { UserError } from './users.js';

/** Device names: what `edgeward peer connect DEVICE` types. */
const DEVICE_NAME = /^[A-Za-z0-9._-]{1,64}$/;
/** Every device token starts so, which tells it apart from a session token or the API token. */
export const DEVICE_TOKEN_PREFIX = 'ewd_';

function tokenHash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export class DeviceService extends EventEmitter<{ removed: [id: number] }> {
  constructor(private readonly store: Store) {
    super();
  }

  /** Registers a device of `username`; the token comes back once and is not kept. */
  async add(username: string, name: string): Promise<{ device: DeviceRecord; token: string }> {
    if (!DEVICE_NAME.test(name)) throw new UserError('invalid', 'name', 'device name must be 1-64 characters of A-Z a-z 0-9 . _ -');
    const token = `${DEVICE_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
    try {
      return { device: await this.store.createDevice(username, name, tokenHash(token)), token };
    } catch (e) {
      if (e instanceof StoreError && e.code === 'conflict') throw new UserError('conflict', 'name', e.message);
      if (e instanceof StoreError && e.code === 'not_found') throw new UserError('not_found', 'user', e.message);
      throw e;
    }
  }

  /** `username`'s devices, or everyone's. */
  list(username?: string): Promise<DeviceRecord[]> {
    return this.store.listDevices(username);
  }

  async remove(id: number): Promise<void> {
    if (!(await this.store.deleteDevice(id))) throw new UserError('not_found', 'id', `no device with id ${id}`);
    this.emit('removed', id);
  }

  /** The device a presented token belongs to; null for any other string. */
  async byToken(token: string): Promise<DeviceRecord | null> {
    if (!token.startsWith(DEVICE_TOKEN_PREFIX) || token.length > 100) return null;
    return this.store.getDeviceByTokenHash(tokenHash(token));
  }
}
