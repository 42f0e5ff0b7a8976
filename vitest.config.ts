/**
 * Three test layers, each a vitest project: `unit` (pure logic in plain Node, beside the code),
 * `workers` (actors and routes inside workerd through the Workers vitest integration) and
 * `e2e` (the real local stack: `floodgate dev` as a child process).
 */
import { generateKeyPairSync } from "node:crypto";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";
import { ASSETS_DIR, buildDashboard } from "./dashboard/build.ts";

// Every Node process the suite starts (npm, npx, the packed CLI, wrangler) reuses the code the
// last one compiled: hundreds of processes start in two thirds of the time.
process.env.NODE_COMPILE_CACHE ??= join(tmpdir(), "node-compile-cache");

// wrangler.toml's [assets] directory must exist for the workers project: a clean clone builds
// it once here (`wrangler dev`, and so the e2e stack, rebuild it on every start).
if (!existsSync(join(ASSETS_DIR, "dashboard", "index.html"))) await buildDashboard();

/** Test-only secrets, made fresh for each run, and the edge's public URL. */
export function testSecrets(): Record<string, string> {
  const { privateKey } = generateKeyPairSync("ed25519");
  const older = generateKeyPairSync("ed25519").privateKey;
  return {
    PUBLIC_URL: "http://edge.test",
    ADMIN_KEY: "fga_test-admin-key",
    FILE_SIGNING_KEY: "test-file-signing-key-0123456789abcdef",
    KEY_SIGNING_KEY: "test-key-signing-key-0123456789abcdef",
    AGENT_SIGNING_KEYS: JSON.stringify({
      active: "k-test-2",
      keys: [
        { ...privateKey.export({ format: "jwk" }), kid: "k-test-2" },
        { ...older.export({ format: "jwk" }), kid: "k-test-1" },
      ],
    }),
  };
}

/**
 * Two files run side by side across all three projects (vitest's default on a 2-core machine
 * is one): much of the suite waits on workerd, agents, runners and timers. Every project names
 * the same count, so they share one group.
 */
const MAX_WORKERS = 2;

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: [
            "{shared,mesh,cli,gpu-agent,client,bench,scripts,packaging,dashboard}/**/*.test.ts",
            "test/chaos/**/*.test.ts",
          ],
          environment: "node",
          maxWorkers: MAX_WORKERS,
          // Files share a worker's module cache: a fresh one per file cost more than the tests.
          isolate: false,
          // Property tests run hundreds of cases: a deadline for a hang, not for a busy machine.
          testTimeout: 30_000,
        },
      },
      {
        plugins: [
          cloudflareTest({
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: { bindings: testSecrets() },
          }),
        ],
        // A file's first test also starts its actors: seconds on a busy machine, past vitest's 5 s.
        test: { name: "workers", include: ["test/workers/**/*.test.ts"], testTimeout: 30_000, maxWorkers: MAX_WORKERS },
      },
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          environment: "node",
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // Each file runs its own stack (free ports, its own state directory).
          maxWorkers: MAX_WORKERS,
          isolate: false,
        },
      },
    ],
  },
});
