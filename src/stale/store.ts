// Where stale-on-error keeps the last good responses: the store interface
// (sync or async, so a shared store such as Redis fits) and the default, an
// in-memory store bounded by bytes with least-recently-used eviction.

/** One kept response, as plain data a store can copy or serialize (the body is a Buffer). */
export interface StaleResponse {
  readonly kind: 'response';
  /** The origin's status and reason phrase. */
  readonly status: number;
  readonly statusMessage: string;
  /**
   * The origin's response headers, hop-by-hop ones removed. The proxy's
   * rewrites and the response hooks run again for each request a kept
   * response is served to, so nothing built from one request is kept.
   */
  readonly headers: Readonly<Record<string, string | readonly string[]>>;
  /** The origin's body as it came (in its `Content-Encoding`; `transformResponse` runs again when served); empty for a response to HEAD. */
  readonly body: Buffer;
  /** The cache policy (http-cache-semantics' `toObject()`): opaque data, for the proxy only. */
  readonly policy: Readonly<Record<string, unknown>>;
  /** The bytes this entry accounts for: what its body, headers, policy and objects take of memory, counted high. */
  readonly size: number;
}

/**
 * Kept under a URL's key when its response varies (`Vary`): the request
 * headers that select a variant. Each variant is kept under a key of its own.
 */
export interface StaleVariants {
  readonly kind: 'variants';
  /** Lower-case request header names. */
  readonly vary: readonly string[];
  readonly size: number;
}

export type StaleEntry = StaleResponse | StaleVariants;

/**
 * Where kept responses live. Each method may answer at once or with a
 * promise. A `get` that throws, rejects or takes longer than 500 ms counts as
 * a miss; a `set` or `delete` that fails is ignored. Keys are opaque strings
 * (they hold no header value: variants are keyed by a hash).
 */
export interface StaleStore {
  get(key: string): StaleEntry | undefined | Promise<StaleEntry | undefined>;
  /**
   * `ttl`: how long, in ms, the entry can still be of use (fresh, then stale
   * within `maxStale` or the origin's `stale-if-error`), for a store that
   * expires entries itself (Redis). The memory store bounds by bytes instead.
   */
  set(key: string, entry: StaleEntry, ttl?: number): unknown;
  delete(key: string): unknown;
}

export interface MemoryStaleStoreOptions {
  /** The most bytes kept (each entry's `size` plus what its key and map slot take). Default `33554432` (32 MiB). */
  maxBytes?: number;
}

export const DEFAULT_STALE_MAX_BYTES = 32 * 1024 * 1024;

/**
 * The default store: a Map in least-recently-used order. Storing past
 * `maxBytes` evicts the least recently stored or served entries first; an
 * entry larger than `maxBytes` is not kept.
 */
export class MemoryStaleStore implements StaleStore {
  readonly maxBytes: number;
  readonly #entries = new Map<string, StaleEntry>();
  #bytes = 0;

  constructor(options: MemoryStaleStoreOptions = {}) {
    const { maxBytes = DEFAULT_STALE_MAX_BYTES } = options;
    if (typeof maxBytes !== 'number' || !Number.isSafeInteger(maxBytes) || maxBytes < 1) {
      throw new TypeError(`Expected \`maxBytes\` to be a whole number of bytes (1 or more), got ${String(maxBytes)}.`);
    }
    this.maxBytes = maxBytes;
  }

  /** Bytes accounted for now: never more than `maxBytes`. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Entries kept now. */
  get size(): number {
    return this.#entries.size;
  }

  get(key: string): StaleEntry | undefined {
    const entry = this.#entries.get(key);
    if (entry !== undefined) {
      // Served entries are the most recently used.
      this.#entries.delete(key);
      this.#entries.set(key, entry);
    }
    return entry;
  }

  set(key: string, entry: StaleEntry): void {
    this.delete(key);
    const cost = costOf(key, entry);
    if (cost > this.maxBytes) return;
    this.#entries.set(key, entry);
    this.#bytes += cost;
    for (const [oldest, evicted] of this.#entries) {
      if (this.#bytes <= this.maxBytes) break;
      this.#entries.delete(oldest);
      this.#bytes -= costOf(oldest, evicted);
    }
  }

  delete(key: string): void {
    const entry = this.#entries.get(key);
    if (entry === undefined) return;
    this.#entries.delete(key);
    this.#bytes -= costOf(key, entry);
  }

  clear(): void {
    this.#entries.clear();
    this.#bytes = 0;
  }
}

/** The map slot and the key's string header, in bytes. */
const KEY_OVERHEAD = 64;

/** An entry's size, and its key at two bytes a character (as a string outside Latin-1 takes) with its slot. */
function costOf(key: string, entry: StaleEntry): number {
  return entry.size + KEY_OVERHEAD + 2 * key.length;
}
