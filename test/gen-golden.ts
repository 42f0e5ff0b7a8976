/**
 * Writes everything generated from the wire schemas: the golden files of both protocols — the
 * runner protocol's (shared/golden/runner-vectors.json and runner.schema.json, from
 * shared/runner.ts) and the agent protocol's (wire-vectors.json and wire.schema.json, from
 * shared/wire.ts) — and the generated parts of docs/protocol.md and docs/runner-protocol.md
 * (shared/golden/protocol-doc.ts), then formats them with oxfmt so `npm run format:check`
 * accepts them. Run after changing a schema, an error code or a close code:
 *
 *   npx node test/gen-golden.ts
 *
 * shared/golden.test.ts and shared/protocol-doc.test.ts fail until the files match what this
 * would write.
 */
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { docRegions, fillRegions } from "../shared/golden/protocol-doc.ts";
import { goldenFiles } from "../shared/golden/runner-golden.ts";
import { wireGoldenFiles } from "../shared/golden/wire-golden.ts";

const root = new URL("../", import.meta.url);
const written: string[] = [];
for (const [name, content] of Object.entries({ ...goldenFiles(), ...wireGoldenFiles() })) {
  const path = fileURLToPath(new URL(`shared/golden/${name}`, root));
  writeFileSync(path, `${JSON.stringify(content, null, 2)}\n`);
  written.push(path);
}
for (const [doc, regions] of Object.entries(docRegions())) {
  const path = fileURLToPath(new URL(doc, root));
  writeFileSync(path, fillRegions(readFileSync(path, "utf8"), regions, doc));
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
