#!/usr/bin/env node
// The `floodgate` command. Node ≥ 22.18 runs the TypeScript sources directly (type stripping);
// `npx floodgate` and npm scripts put the project's pinned Node first on the PATH.
const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  console.error(
    `floodgate needs Node ≥ 22.18 (this is ${process.version}); run it as \`npx floodgate\` inside the repository, which uses the pinned Node.`,
  );
  process.exit(2);
}
const { main } = await import("./main.ts");
process.exitCode = await main(process.argv.slice(2));
