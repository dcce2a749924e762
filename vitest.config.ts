import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const source = (path: string): string => fileURLToPath(new URL(path, import.meta.url));

export default defineConfig({
  resolve: {
    // The examples import the package by name, as users do; here that name is the source.
    alias: [
      { find: /^resilient-proxy$/, replacement: source('./src/index.ts') },
      { find: /^resilient-proxy\/(fastify|koa)$/, replacement: source('./src/$1.ts') },
      { find: /^resilient-proxy\/testing$/, replacement: source('./src/testing/index.ts') },
      { find: /^resilient-proxy\/otel$/, replacement: source('./src/otel.ts') },
      { find: /^resilient-proxy\/redis$/, replacement: source('./src/redis.ts') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts', 'examples/**/*.test.ts'],
    testTimeout: 15_000,
    hookTimeout: 15_000,
    // Fault tests open many sockets; isolating files in forks keeps one file's
    // leaked handle from hiding in another's.
    pool: 'forks',
  },
});
