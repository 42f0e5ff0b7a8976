/**
 * Writes the golden files of both protocols: the runner protocol's
 * (shared/golden/runner-vectors.json and runner.schema.json, from shared/runner.ts) and the
 * agent protocol's (wire-vectors.json and wire.schema.json, from shared/wire.ts), then formats
 * them with oxfmt so `npm run format:check` accepts them. Run after changing either's schemas:
 *
 *   npx node test/gen-golden.ts
 *
 * shared/golden.test.ts fails until the files match what this would write.
 */
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { goldenFiles } from "../shared/golden/runner-golden.ts";
import { wireGoldenFiles } from "../shared/golden/wire-golden.ts";

const root = new URL("../", import.meta.url);
const written: string[] = [];
for (const [name, content] of Object.entries({ ...goldenFiles(), ...wireGoldenFiles() })) {
  const path = fileURLToPath(new URL(`shared/golden/${name}`, root));
  writeFileSync(path, `${JSON.stringify(content, null, 2)}\n`);
  written.push(path);
}
const oxfmt = fileURLToPath(new URL("node_modules/.bin/oxfmt", root));
const fmt = spawnSync(oxfmt, written, { stdio: "inherit" });
if (fmt.status !== 0) {
  console.error(
    `oxfmt failed (${fmt.error?.message ?? `status ${fmt.status}`}); the files are written but unformatted`,
  );
  process.exit(1);
}
for (const path of written) console.log(`wrote ${path}`);
