// A stale store shared by every instance through Redis (ioredis): what one
// instance kept, any other can serve when the upstream fails. Redis is a
// fallback's fallback, so it never holds a request up: a lookup waits at most
// `timeout` and is a miss past it or while Redis is away; writes are sent
// without being waited for, and dropped (counted) while Redis is away or
// when `maxPendingWrites` are already in flight.

import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { staleStoreChannel } from '../observe/channels.js';
import type { StaleEntry, StaleStore } from './store.js';

export interface RedisStaleStoreOptions {
  /**
   * The ioredis client (yours: the store neither connects nor quits it).
   * Create it with `enableOfflineQueue: false` and a small
   * `maxRetriesPerRequest` (e.g. `1`), so no command waits for Redis to come back.
   */
  client: Redis;
  /** Prepended to every key. Default `'resilient-proxy:stale:'`. */
  prefix?: string;
  /** The longest a lookup waits for Redis, in ms; past it the lookup is a miss. Default `50`. */
  timeout?: number;
  /** The largest entry written, in bytes (body, headers and policy as stored); larger ones are not kept. Default `1048576` (1 MiB). */
  maxEntryBytes?: number;
  /** Writes in flight at most; past it (Redis slow) new writes are dropped. Default `1000`. */
  maxPendingWrites?: number;
  /** Called when the store becomes ready or unavailable (also published on `resilient-proxy:stale-store:state`). */
  onStateChange?: (change: StaleStoreStateChange) => void;
}

export const REDIS_STALE_DEFAULTS = Object.freeze({
  prefix: 'resilient-proxy:stale:',
  timeout: 50,
  maxEntryBytes: 1024 * 1024,
  maxPendingWrites: 1000,
});

/** `ready`: commands go to Redis. `unavailable`: lookups miss and writes are dropped at once. */
export type StaleStoreState = 'ready' | 'unavailable';

export interface StaleStoreStateChange {
  /** The store's key prefix, to tell stores apart. */
  readonly prefix: string;
  readonly state: StaleStoreState;
  /** What made it unavailable, when known. For operators only. */
  readonly error: unknown;
}

/** What `status()` reports: the state and counts since the store was made. */
export interface RedisStaleStoreStatus {
  readonly state: StaleStoreState;
  /** Lookups answered with an entry. */
  readonly hits: number;
  /** Lookups answered with nothing (Redis away, no entry, a bad entry, an error or a timeout). */
  readonly misses: number;
  /** Misses because Redis took longer than `timeout`. */
  readonly timeouts: number;
  /** Writes (and deletes) sent. */
  readonly writes: number;
  /** Writes not sent: Redis away, or `maxPendingWrites` in flight. */
  readonly dropped: number;
  /** Entries not written for being over `maxEntryBytes`. */
  readonly tooLarge: number;
  /** Writes sent and not yet answered. */
  readonly pendingWrites: number;
  /** Commands that failed. */
  readonly errors: number;
  readonly lastError: { readonly message: string; readonly at: number } | null;
}

/** Stored as `MAGIC`, the JSON head's length (4 bytes), the JSON head, the body. */
const MAGIC = Buffer.from('RPS1');

function positive(option: string, value: unknown, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw new TypeError(`Expected \`${option}\` to be a whole number from 1 to ${max}, got ${typeof value === 'number' ? value : typeof value}.`);
  }
  return value;
}

function encode(entry: StaleEntry): Buffer {
  const body = entry.kind === 'response' ? entry.body : Buffer.alloc(0);
  const head = Buffer.from(JSON.stringify(entry.kind === 'response' ? { ...entry, body: undefined } : entry));
  const length = Buffer.allocUnsafe(4);
  length.writeUInt32BE(head.length);
  return Buffer.concat([MAGIC, length, head, body]);
}

function decode(stored: Buffer | null): StaleEntry | undefined {
  if (stored === null || stored.length < 8 || !stored.subarray(0, 4).equals(MAGIC)) return undefined;
  const length = stored.readUInt32BE(4);
  if (8 + length > stored.length) return undefined;
  const head = JSON.parse(stored.subarray(8, 8 + length).toString()) as Record<string, unknown>;
  if (head.kind === 'variants') return head as unknown as StaleEntry;
  if (head.kind !== 'response') return undefined;
  return { ...head, body: stored.subarray(8 + length) } as unknown as StaleEntry;
}

export class RedisStaleStore implements StaleStore {
  readonly client: Redis;
  readonly prefix: string;
  readonly timeout: number;
  readonly maxEntryBytes: number;
  readonly maxPendingWrites: number;
  readonly #onStateChange: ((change: StaleStoreStateChange) => void) | null;
  #state: StaleStoreState;
  #hits = 0;
  #misses = 0;
  #timeouts = 0;
  #writes = 0;
  #dropped = 0;
  #tooLarge = 0;
  #pending = 0;
  #errors = 0;
  #lastError: { message: string; at: number } | null = null;
  readonly #onReady = (): void => this.#moved('ready', null);
  readonly #onError = (error: unknown): void => {
    this.#failed(error);
    this.#moved('unavailable', error);
  };
  readonly #onClose = (): void => this.#moved('unavailable', null);

  constructor(options: RedisStaleStoreOptions) {
    // Checked as untyped input: JavaScript callers pass anything.
    const given: unknown = options;
    if (typeof given !== 'object' || given === null) throw new TypeError('Expected the options to be an object with a `client` (an ioredis client).');
    const { client, prefix = REDIS_STALE_DEFAULTS.prefix, onStateChange } = given as Record<string, unknown>;
    if (typeof client !== 'object' || client === null || typeof (client as Partial<Redis>).getBuffer !== 'function' || typeof (client as Partial<Redis>).on !== 'function') {
      throw new TypeError('Expected `client` to be an ioredis client (new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 1 })).');
    }
    if (typeof prefix !== 'string' || prefix.length > 200) throw new TypeError('Expected `prefix` to be a string of at most 200 characters.');
    if (onStateChange !== undefined && typeof onStateChange !== 'function') throw new TypeError('Expected `onStateChange` to be a function.');
    this.client = options.client;
    this.prefix = prefix;
    this.timeout = positive('timeout', options.timeout, REDIS_STALE_DEFAULTS.timeout, 10_000);
    this.maxEntryBytes = positive('maxEntryBytes', options.maxEntryBytes, REDIS_STALE_DEFAULTS.maxEntryBytes, 512 * 1024 * 1024);
    this.maxPendingWrites = positive('maxPendingWrites', options.maxPendingWrites, REDIS_STALE_DEFAULTS.maxPendingWrites, 1_000_000);
    this.#onStateChange = options.onStateChange ?? null;
    this.#state = this.client.status === 'ready' ? 'ready' : 'unavailable';
    // A listener on 'error' also keeps ioredis from reporting it as unhandled.
    this.client.on('ready', this.#onReady);
    this.client.on('error', this.#onError);
    this.client.on('close', this.#onClose);
  }

  /** Stops listening to the client (which stays yours to quit). */
  close(): void {
    this.client.off('ready', this.#onReady);
    this.client.off('error', this.#onError);
    this.client.off('close', this.#onClose);
  }

  status(): RedisStaleStoreStatus {
    return {
      state: this.#state,
      hits: this.#hits,
      misses: this.#misses,
      timeouts: this.#timeouts,
      writes: this.#writes,
      dropped: this.#dropped,
      tooLarge: this.#tooLarge,
      pendingWrites: this.#pending,
      errors: this.#errors,
      lastError: this.#lastError,
    };
  }

  /** The Redis key: a hash, so no URL or header reaches the key space and every key has one length. */
  #key(key: string): string {
    return this.prefix + createHash('sha256').update(key).digest('base64url');
  }

  get(key: string): Promise<StaleEntry | undefined> | undefined {
    if (this.client.status !== 'ready') {
      this.#misses += 1;
      return undefined;
    }
    return new Promise((resolve) => {
      let settled = false;
      const settle = (entry: StaleEntry | undefined): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (entry === undefined) this.#misses += 1;
        else this.#hits += 1;
        resolve(entry);
      };
      const timer = setTimeout(() => {
        this.#timeouts += 1;
        settle(undefined);
      }, this.timeout);
      this.client.getBuffer(this.#key(key)).then(
        (stored) => {
          let entry: StaleEntry | undefined;
          try {
            entry = decode(stored);
          } catch (error) {
            this.#failed(error);
          }
          settle(entry);
        },
        (error: unknown) => {
          this.#failed(error);
          settle(undefined);
        },
      );
    });
  }

  /** Writes `entry` to expire after `ttl` ms (the layer passes how long it can be of use); without a `ttl` nothing is written. */
  set(key: string, entry: StaleEntry, ttl?: number): void {
    if (ttl === undefined || !(ttl >= 1)) return;
    const stored = encode(entry);
    if (stored.length > this.maxEntryBytes) {
      this.#tooLarge += 1;
      return;
    }
    this.#send(() => this.client.set(this.#key(key), stored, 'PX', Math.ceil(ttl)));
  }

  delete(key: string): void {
    this.#send(() => this.client.del(this.#key(key)));
  }

  #send(command: () => Promise<unknown>): void {
    if (this.client.status !== 'ready' || this.#pending >= this.maxPendingWrites) {
      this.#dropped += 1;
      return;
    }
    this.#pending += 1;
    this.#writes += 1;
    command().then(
      () => {
        this.#pending -= 1;
      },
      (error: unknown) => {
        this.#pending -= 1;
        this.#failed(error);
      },
    );
  }

  #failed(error: unknown): void {
    this.#errors += 1;
    this.#lastError = { message: error instanceof Error ? error.message : String(error), at: Date.now() };
  }

  #moved(state: StaleStoreState, error: unknown): void {
    if (state === this.#state) return;
    this.#state = state;
    const change: StaleStoreStateChange = { prefix: this.prefix, state, error };
    if (staleStoreChannel.hasSubscribers) staleStoreChannel.publish(change);
    if (this.#onStateChange === null) return;
    try {
      this.#onStateChange(change);
    } catch {
      // A hook only observes: its failure must not reach ioredis' emitter.
    }
  }
}
