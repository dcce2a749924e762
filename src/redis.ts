// resilient-proxy/redis: the stale store shared through Redis (ioredis, an
// optional peer dependency), so every instance can fall back on what any kept.

export {
  RedisStaleStore,
  REDIS_STALE_DEFAULTS,
  type RedisStaleStoreOptions,
  type RedisStaleStoreStatus,
  type StaleStoreState,
  type StaleStoreStateChange,
} from './stale/redis-store.js';
