import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // 2-core CI machine: two workers keep heavy engine tests from starving each other.
    maxWorkers: 2,
    reporters: ["default"],
  },
});
