import { defineConfig } from 'vitest/config';

// Card tests run in Node: @hubspot/ui-extensions/testing renders into its own
// in-memory tree, so no DOM (jsdom) and no React plugin are needed.
export default defineConfig({
  test: {
    globals: true,
    environment: 'node',
    include: ['src/**/*.test.{ts,tsx}'],
  },
});
