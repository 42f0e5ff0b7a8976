/**
 * The long fuzz run's workerd project (`npm run fuzz`). Inside workerd `process.env` holds the
 * Worker's bindings, not the shell's environment, so the shell's `FUZZ_RUNS` is passed in as a
 * binding here; under vitest.config.ts it is absent and the suites run their default 300.
 */
import { generateKeyPairSync } from "node:crypto";
import { fileURLToPath } from "node:url";
import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

/** Test-only secrets, made fresh for each run, shaped as in vitest.config.ts. */
function testSecrets(): Record<string, string> {
  const { privateKey } = generateKeyPairSync("ed25519");
  const older = generateKeyPairSync("ed25519").privateKey;
  return {
    ADMIN_KEY: "fga_test-admin-key",
    FILE_SIGNING_KEY: "test-file-signing-key-0123456789abcdef",
    AGENT_SIGNING_KEYS: JSON.stringify({
      active: "k-test-2",
      keys: [
        { ...privateKey.export({ format: "jwk" }), kid: "k-test-2" },
        { ...older.export({ format: "jwk" }), kid: "k-test-1" },
      ],
    }),
  };
}

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
