import { defineConfig } from 'tsup';

export default defineConfig({
  entry: {
    index: 'src/index.ts',
    fastify: 'src/fastify.ts',
    koa: 'src/koa.ts',
    testing: 'src/testing/index.ts',
    otel: 'src/otel.ts',
    redis: 'src/redis.ts',
  },
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'node20',
  platform: 'node',
  // One shared chunk for the core: each entry point bundling its own copy
  // would give the adapters a second default registry (and second breakers).
  splitting: true,
});
