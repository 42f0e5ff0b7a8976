/**
 * The long fuzz run's workerd project (`npm run fuzz`). Inside workerd `process.env` holds the
 * Worker's bindings, not the shell's environment, so the shell's `FUZZ_RUNS` is passed in as a
 * binding here; under vitest.config.ts it is absent and the suites run their default 300.
 */
import { fileURLToPath } from "node:url";
import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";
import { testSecrets } from "../vitest.config.ts";

export default defineConfig({
  root: fileURLToPath(new URL("..", import.meta.url)),
  plugins: [
    cloudflareTest({
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: { bindings: { ...testSecrets(), FUZZ_RUNS: process.env.FUZZ_RUNS ?? "300" } },
    }),
  ],
  test: {
    name: "fuzz",
    include: ["test/workers/fuzz-*.test.ts"],
    // One file at a time: the two suites would otherwise share two cores with each other.
    fileParallelism: false,
    testTimeout: 3_600_000,
    hookTimeout: 120_000,
  },
});
