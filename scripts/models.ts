/**
 * The built-in models as version directories, `models/<model>/<version>/`, as a model author
 * would package them (docs/models.md) and as the local platform pushes them. Their manifest.json
 * is written here from what the project already declares, so nothing is said twice: the input
 * schemas, run times and outputs of shared/models.ts, and the reference model's entry, version
 * and configuration from its generator (gpu-agent/python/floodgate_runner/reference/generate.py).
 * The reference model's weights (random, seeded) are generated, never committed.
 *
 *   npx node scripts/models.ts            rewrite the manifests
 *   npx node scripts/models.ts --weights  and generate the weights the versions need
 *
 * scripts/models.test.ts (and the Python tests, for the reference model's configuration) fail
 * until the committed manifests are what this writes. {@link ensureBuiltInVersions} is what a
 * push of the built-in versions calls first.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { findPython } from "../gpu-agent/python-runner.ts";
import { DEMO_MODEL, DEMO_MODEL_CONFIG, REFERENCE_MODEL, REFERENCE_MODEL_CONFIG } from "../shared/models.ts";
import { VersionManifest } from "../shared/repository.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/** Where the built-in versions live. */
export const MODELS_DIR = join(ROOT, "models");
const PYTHON_DIR = join(ROOT, "gpu-agent", "python");

/** The demo model's version in the repository. */
export const DEMO_VERSION = "2";
/** The reference model's size packaged in the repository: fast on a CPU. */
export const REFERENCE_SIZE = "tiny";

/** The directory of a built-in version. */
export function versionDir(model: string, version: string): string {
  return join(MODELS_DIR, model, version);
}

/** The demo model's manifest: a CPU version of the demo runner. */
export function demoManifest(): VersionManifest {
  return VersionManifest.parse({
    format: 1,
    model: DEMO_MODEL,
    version: DEMO_VERSION,
    runner: "demo",
    input_schema: DEMO_MODEL_CONFIG.input_schema,
    resources: { gpus: 0, vram_gib: 0 },
    max_batch: 4,
    expected_runtime_s: DEMO_MODEL_CONFIG.expected_runtime_s,
    outputs: DEMO_MODEL_CONFIG.outputs,
    config: {},
  });
}

/** What the reference model's generator says its manifest holds. */
const Described = z.strictObject({
  model: z.literal(REFERENCE_MODEL),
  version: z.string(),
  entry: z.string(),
  weights: z.string(),
  config: z.record(z.string(), z.unknown()),
});

async function run(command: string, args: string[]): Promise<string> {
  return await new Promise((res, rej) => {
    execFile(
      command,
      args,
      { cwd: PYTHON_DIR, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) rej(new Error(`${command} ${args.join(" ")}: ${stderr.trim() || err.message}`));
        else res(stdout);
      },
    );
  });
}

async function python(): Promise<string> {
  const found = await findPython(process.env.FLOODGATE_PYTHON);
  if (!found.ok) throw new Error(found.message);
  return found.python;
}

/**
 * The reference model's manifest (size {@link REFERENCE_SIZE}): a CPU version of the python
 * runner; its entry, version and configuration come from the generator.
 */
export async function referenceManifest(interpreter?: string): Promise<VersionManifest> {
  const out = await run(interpreter ?? (await python()), [
    "-B",
    "-m",
    "floodgate_runner.reference.generate",
    "--size",
    REFERENCE_SIZE,
    "--describe",
  ]);
  const d = Described.parse(JSON.parse(out));
  return VersionManifest.parse({
    format: 1,
    model: d.model,
    version: d.version,
    runner: "python",
    entry: d.entry,
    weights: d.weights,
    input_schema: REFERENCE_MODEL_CONFIG.input_schema,
    resources: { gpus: 0, vram_gib: 0 },
    max_batch: 4,
    expected_runtime_s: REFERENCE_MODEL_CONFIG.expected_runtime_s,
    outputs: REFERENCE_MODEL_CONFIG.outputs,
    config: d.config,
  });
}

/** A manifest as the repository keeps it: two-space JSON with a final newline. */
export function manifestText(m: VersionManifest): string {
  return `${JSON.stringify(m, null, 2)}\n`;
}

/** Writes the built-in versions' manifests; answers their directories. */
export async function writeManifests(interpreter?: string): Promise<string[]> {
  const out: string[] = [];
  for (const m of [demoManifest(), await referenceManifest(interpreter)]) {
    const dir = versionDir(m.model, m.version);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "manifest.json"), manifestText(m));
    out.push(dir);
  }
  return out;
}

/**
 * The reference model's version directory: the one committed under models/reference/
 * (scripts/models.test.ts keeps it one, and the Python tests keep its manifest the generator's).
 */
function referenceDir(): string {
  const [version, ...more] = readdirSync(join(MODELS_DIR, REFERENCE_MODEL));
  if (version === undefined || more.length > 0) {
    throw new Error(`models/${REFERENCE_MODEL}/ must hold one version; run npx node scripts/models.ts`);
  }
  return versionDir(REFERENCE_MODEL, version);
}

/**
 * Makes the built-in versions whole: generates the reference model's weights beside its
 * committed manifest unless they are there (the generator checks the manifest describes them),
 * so a start that finds them needs no Python. Answers the version directories, ready to push.
 */
export async function ensureBuiltInVersions(interpreter?: string): Promise<string[]> {
  const demo = versionDir(DEMO_MODEL, DEMO_VERSION);
  const reference = referenceDir();
  const manifest = VersionManifest.parse(JSON.parse(readFileSync(join(reference, "manifest.json"), "utf8")));
  if (manifest.weights === undefined || !existsSync(join(reference, manifest.weights))) {
    await run(interpreter ?? (await python()), [
      "-B",
      "-m",
      "floodgate_runner.reference.generate",
      "--size",
      REFERENCE_SIZE,
      "--out",
      reference,
      "--weights-only",
    ]);
  }
  return [demo, reference];
}

if (import.meta.main) {
  for (const dir of await writeManifests()) console.error(`wrote ${join(dir, "manifest.json")}`);
  if (process.argv.includes("--weights")) {
    for (const dir of await ensureBuiltInVersions()) console.error(`ready: ${dir}`);
  }
}
