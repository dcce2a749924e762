import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 15_000,
    hookTimeout: 15_000,
    // Fault tests open many sockets; isolating files in forks keeps one file's
    // leaked handle from hiding in another's.
    pool: 'forks',
  },
});
