import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // 2-core CI machine: two workers keep heavy engine tests from starving each other.
    maxWorkers: 2,
    // Parallelism comes from the workers, so the engine runs one thread in each (and in the CLI processes tests
    // spawn, which inherit this). With its default of one thread per core, 2 workers put 4 engine threads plus
    // OpenBLAS's spinning ones on 2 cores: fork-join regions then wait on descheduled threads, and under outside
    // load engine-memory.test.ts took 181 s instead of 25 s (measured beside 2 busy loops) and timed out when
    // four suites ran at once. A caller's own MPO_ENGINE_THREADS still wins.
    env: { MPO_ENGINE_THREADS: process.env.MPO_ENGINE_THREADS ?? "1" },
    reporters: ["default"],
  },
});
