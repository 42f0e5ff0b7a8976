#!/usr/bin/env node
// The `floodgate` command. In the repository it runs the TypeScript sources directly (Node ≥ 22.18
// strips the types; `npx floodgate` and npm scripts put the project's pinned Node first on the
// PATH). Installed from the package (`npm install @floodgate/cli`), which ships no sources, it
// runs the JavaScript the package was built with (scripts/build-package.ts).
import { existsSync } from "node:fs";
import module from "node:module";

const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  console.error(
    `floodgate needs Node ≥ 22.18 (this is ${process.version}); inside the repository run it as \`npx floodgate\`, which uses the pinned Node.`,
  );
  process.exit(2);
}
// Each run reuses the code compiled by the last (in the OS temporary directory): agents, the
// provisioner and every CLI command start faster.
module.enableCompileCache();
const sources = existsSync(new URL("./main.ts", import.meta.url));
const { main } = sources ? await import("./main.ts") : await import("./dist/cli/main.js");
process.exitCode = await main(process.argv.slice(2));
