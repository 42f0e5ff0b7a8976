/**
 * Builds one of the packages users install, into its `dist/` (gitignored): `client`
 * (`@floodgate/client`, the SDK) or `cli` (`@floodgate/cli`, the `floodgate` command with the
 * agent and its runners). tsc compiles the package's entry points and every module they import
 * (shared/ included) to ESM with `.ts` imports rewritten to `.js` (`client/tsconfig.build.json`,
 * `cli/tsconfig.build.json`); the cli build also copies the python runner's sources. Then the
 * output's bare imports are checked against the package's `dependencies`: each one declared, none
 * declared in vain, each pinned as the root package.json pins it.
 *
 * Usage: node scripts/build-package.ts client|cli (each package's `npm run build`, and its
 * `prepack`, so `npm pack` always packs a fresh build). Exit codes: 0 built, 1 failed, 2 usage.
 */
import { spawnSync } from "node:child_process";
import { cpSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { z } from "zod";

const ROOT = resolve(import.meta.dirname, "..");
const PACKAGES = ["client", "cli"] as const;
type PackageName = (typeof PACKAGES)[number];

const Manifest = z.looseObject({
  name: z.string(),
  version: z.string(),
  dependencies: z.record(z.string(), z.string()).default({}),
  devDependencies: z.record(z.string(), z.string()).default({}),
});

function manifest(dir: string): z.infer<typeof Manifest> {
  return Manifest.parse(JSON.parse(readFileSync(join(dir, "package.json"), "utf8")));
}

function* jsFiles(dir: string): Generator<string> {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) yield* jsFiles(path);
    else if (entry.endsWith(".js")) yield path;
  }
}

/** The packages a built module imports by name (not `node:` builtins, not relative paths). */
export function bareImports(source: string): string[] {
  const found = new Set<string>();
  const patterns = [
    /^(?:import|export)\b[^\n]*?\bfrom\s+"([^"]+)"/gm,
    /^\}\s*from\s+"([^"]+)"/gm,
    /^import\s+"([^"]+)"/gm,
    /\bimport\(\s*"([^"]+)"\s*\)/g,
    /\bcreateRequire\([^)]*\)\(\s*"([^"]+)"\s*\)/g,
  ];
  for (const re of patterns) {
    for (const m of source.matchAll(re)) {
      const spec = m[1] as string;
      if (spec.startsWith(".") || spec.startsWith("node:")) continue;
      // A package's name: `@scope/name` or `name`, without a subpath.
      const parts = spec.split("/");
      found.add(spec.startsWith("@") ? parts.slice(0, 2).join("/") : (parts[0] as string));
    }
  }
  return [...found].sort();
}

/** Compares what the build imports with what the package declares; answers the problems. */
function checkDependencies(name: PackageName, dist: string): string[] {
  const pkg = manifest(join(ROOT, name));
  const root = manifest(ROOT);
  const used = new Map<string, string>();
  for (const file of jsFiles(dist)) {
    for (const dep of bareImports(readFileSync(file, "utf8"))) used.set(dep, relative(dist, file));
  }
  const problems: string[] = [];
  for (const [dep, file] of used) {
    if (!(dep in pkg.dependencies))
      problems.push(`${file} imports ${dep}, which ${name}/package.json does not declare`);
  }
  for (const [dep, version] of Object.entries(pkg.dependencies)) {
    if (!used.has(dep)) problems.push(`${name}/package.json declares ${dep}, which the build never imports`);
    const pinned = root.dependencies[dep] ?? root.devDependencies[dep];
    if (pinned !== version) {
      problems.push(`${name}/package.json pins ${dep}@${version}; the root package.json pins ${pinned ?? "nothing"}`);
    }
  }
  if (pkg.version !== root.version) problems.push(`${name} is version ${pkg.version}, the project ${root.version}`);
  return problems;
}

function build(name: PackageName): number {
  const dir = join(ROOT, name);
  const dist = join(dir, "dist");
  rmSync(dist, { recursive: true, force: true });
  const tsc = spawnSync(
    process.execPath,
    [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", join(dir, "tsconfig.build.json")],
    { cwd: dir, stdio: "inherit" },
  );
  if (tsc.status !== 0) {
    process.stderr.write(`build-package: tsc failed for ${name}\n`);
    return 1;
  }
  if (name === "cli") {
    // The python runner is started as `python serve.py` beside the agent's modules
    // (gpu-agent/python-runner.ts): its sources travel with the package, its tests do not.
    const from = join(ROOT, "gpu-agent", "python");
    const to = join(dist, "gpu-agent", "python");
    cpSync(join(from, "serve.py"), join(to, "serve.py"));
    cpSync(join(from, "floodgate_runner"), join(to, "floodgate_runner"), {
      recursive: true,
      filter: (src) => !src.includes("__pycache__") && !src.endsWith(".pyc"),
    });
    // The demo model's version follows the project's: gpu-agent/runners/demo.ts reads it from
    // ../../package.json, which in the package is this file.
    writeFileSync(
      join(dist, "package.json"),
      JSON.stringify({ type: "module", version: manifest(ROOT).version }, null, 2) + "\n",
    );
  }
  const problems = checkDependencies(name, dist);
  for (const p of problems) process.stderr.write(`build-package: ${p}\n`);
  return problems.length === 0 ? 0 : 1;
}

if (import.meta.main) {
  const name = PACKAGES.find((p) => p === process.argv[2]);
  if (name === undefined || process.argv.length !== 3) {
    process.stderr.write(`usage: node scripts/build-package.ts ${PACKAGES.join("|")}\n`);
    process.exitCode = 2;
  } else {
    process.exitCode = build(name);
  }
}
