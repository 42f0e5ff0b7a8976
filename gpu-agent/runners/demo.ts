/**
 * The demo model: renders a short looping animation from a prompt by iterative denoising, fast
 * on a CPU, so the whole platform runs on a laptop. `node gpu-agent/runners/demo.ts` serves it
 * over the runner protocol (gpu-agent/runner/runtime.ts).
 *
 * The prompt picks the scene (palette, number of shapes, how they move); the seed (default:
 * derived from the prompt) picks where they start. Sampling starts from seeded noise and each
 * step moves the picture part of the way toward the scene while the re-injected noise shrinks,
 * reaching the scene at the last step. Everything follows from the seeds, so one input always
 * gives byte-identical frames.
 *
 * Input: `prompt` (string), `seed` (uint32), `steps` (default 20), `frames` (default 16),
 * `size` (pixels, square, default 128). Video to video: `video` or `image`, the local path of an
 * input file (the agent puts it there in place of the file id), gives the frames the prompt
 * transforms: each frame of the source (at most `frames`; an image is every frame) is blended
 * with the prompt's scene, and sampling lands on that blend.
 *
 * `--version-dir DIR` serves the model version in DIR as the agent assembled it: the model,
 * version and `max_batch` of its manifest.json, and its `config` ({@link DemoVersionConfig}),
 * whose switches make a version fail on purpose (how a broken version is tested). Without it,
 * the runner serves `demo` at the project's version (`--runner demo`).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { z } from "zod";
import { VersionManifest } from "../../shared/repository.ts";
import { rng } from "../../shared/rng.ts";
import { type JobContext, JobFailure, type RunnerModel, main } from "../runner/runtime.ts";
import { sourceFrames, type SourceFrames } from "./demo-source.ts";

export const DemoInput = z.object({
  prompt: z.string().min(1).max(2000),
  /** A local path: the source video, as the agent downloaded it. */
  video: z.string().min(1).optional(),
  /** A local path: the source image, as the agent downloaded it. */
  image: z.string().min(1).optional(),
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 32 - 1)
    .optional(),
  steps: z.number().int().min(1).max(200).default(20),
  frames: z.number().int().min(1).max(120).default(16),
  size: z.number().int().min(8).max(512).default(128),
});
export type DemoInput = z.infer<typeof DemoInput>;

/** A preview is sent every this many steps (before the last). */
const PREVIEW_EVERY = 5;
/** Previews are at most this wide and high (pixels): they travel to the client while sampling. */
const PREVIEW_MAX = 64;
/** How much of a video-to-video target is the source (the rest is the prompt's scene). */
const SOURCE_WEIGHT = 0.6;
/** Amplitude of the noise re-injected at the first step (8-bit levels), falling to 0. */
const NOISE = 96;
/** Values in the noise table (a power of two: indices wrap with a mask). */
const NOISE_TABLE = 1 << 18;

/** FNV-1a over the prompt's UTF-8 bytes, with a salt so one prompt gives independent hashes. */
export function hash32(text: string, salt = 0): number {
  let h = (0x811c9dc5 ^ salt) >>> 0;
  for (const b of new TextEncoder().encode(text)) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

type Rgb = [number, number, number];

function hsl(h: number, s: number, l: number): Rgb {
  const f = (n: number): number => {
    const k = (n + h / 30) % 12;
    const a = s * Math.min(l, 1 - l);
    return 255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1)));
  };
  return [f(0), f(8), f(4)];
}

interface Blob {
  color: Rgb;
  radius: number; // fraction of the frame
  ax: number;
  ay: number;
  fx: number; // whole turns per loop, so the animation loops
  fy: number;
  px: number; // phase (radians)
  py: number;
}

interface Scene {
  from: Rgb;
  to: Rgb;
  angle: number; // radians, gradient direction at t = 0
  spin: number; // gradient turns per loop
  blobs: Blob[];
}

/** The scene a prompt describes; the seed places its shapes. */
function scene(prompt: string, seed: number): Scene {
  const p = rng(hash32(prompt, 0x5eed));
  const s = rng(seed);
  const hue = p() * 360;
  const blobs: Blob[] = [];
  const n = 2 + Math.floor(p() * 4);
  for (let i = 0; i < n; i++) {
    blobs.push({
      color: hsl((hue + 90 + p() * 180) % 360, 0.65 + 0.3 * p(), 0.45 + 0.2 * p()),
      radius: 0.08 + 0.14 * s(),
      ax: 0.15 + 0.25 * s(),
      ay: 0.15 + 0.25 * s(),
      fx: 1 + Math.floor(p() * 2),
      fy: 1 + Math.floor(p() * 2),
      px: 2 * Math.PI * s(),
      py: 2 * Math.PI * s(),
    });
  }
  return {
    from: hsl(hue, 0.5, 0.2 + 0.15 * p()),
    to: hsl((hue + 40 + 60 * p()) % 360, 0.6, 0.55 + 0.2 * p()),
    angle: 2 * Math.PI * s(),
    spin: p() < 0.5 ? 1 : -1,
    blobs,
  };
}

/** Renders the scene's frames as float RGB (frames × size × size × 3). */
function renderTarget(sc: Scene, frames: number, size: number): Float32Array {
  const out = new Float32Array(frames * size * size * 3);
  const edge = 1.5 / size; // soft edge, one and a half pixels
  for (let f = 0; f < frames; f++) {
    const t = f / frames;
    const ang = sc.angle + 2 * Math.PI * sc.spin * t;
    const dx = Math.cos(ang);
    const dy = Math.sin(ang);
    const centres = sc.blobs.map((b) => ({
      x: 0.5 + b.ax * Math.sin(2 * Math.PI * b.fx * t + b.px),
      y: 0.5 + b.ay * Math.cos(2 * Math.PI * b.fy * t + b.py),
    }));
    for (let y = 0; y < size; y++) {
      const v = (y + 0.5) / size;
      for (let x = 0; x < size; x++) {
        const u = (x + 0.5) / size;
        const g = Math.min(1, Math.max(0, 0.5 + (u - 0.5) * dx + (v - 0.5) * dy));
        let r = sc.from[0] + (sc.to[0] - sc.from[0]) * g;
        let gr = sc.from[1] + (sc.to[1] - sc.from[1]) * g;
        let b = sc.from[2] + (sc.to[2] - sc.from[2]) * g;
        for (let i = 0; i < sc.blobs.length; i++) {
          const blob = sc.blobs[i]!;
          const c = centres[i]!;
          const d = Math.hypot(u - c.x, v - c.y);
          const a = Math.min(1, Math.max(0, (blob.radius - d) / edge));
          if (a > 0) {
            r += (blob.color[0] - r) * a;
            gr += (blob.color[1] - gr) * a;
            b += (blob.color[2] - b) * a;
          }
        }
        const o = ((f * size + y) * size + x) * 3;
        out[o] = r;
        out[o + 1] = gr;
        out[o + 2] = b;
      }
    }
  }
  return out;
}

/** One frame of the float buffer as RGBA8, downscaled by `scale` (box filter). */
function toRgba(x: Float32Array, frame: number, size: number, scale = 1): Uint8Array<ArrayBuffer> {
  const w = Math.floor(size / scale);
  const out = new Uint8Array(w * w * 4);
  const base = frame * size * size * 3;
  const n = scale * scale;
  for (let y = 0; y < w; y++) {
    for (let xo = 0; xo < w; xo++) {
      let r = 0;
      let g = 0;
      let b = 0;
      for (let sy = 0; sy < scale; sy++) {
        for (let sx = 0; sx < scale; sx++) {
          const i = base + ((y * scale + sy) * size + xo * scale + sx) * 3;
          r += x[i]!;
          g += x[i + 1]!;
          b += x[i + 2]!;
        }
      }
      const o = (y * w + xo) * 4;
      // Uint8Array stores clamp only on Uint8ClampedArray: clamp and round here.
      out[o] = Math.min(255, Math.max(0, Math.round(r / n)));
      out[o + 1] = Math.min(255, Math.max(0, Math.round(g / n)));
      out[o + 2] = Math.min(255, Math.max(0, Math.round(b / n)));
      out[o + 3] = 255;
    }
  }
  return out;
}

/** A demo job's input with its defaults; `source` the local path of its video or image, if any. */
export type DemoJob = Omit<Required<DemoInput>, "video" | "image"> & {
  source?: { kind: "video" | "image"; path: string };
};

/** Parses a job's input; a bad input is the job's `invalid_input` error. */
export function parseDemoInput(input: Record<string, unknown>): DemoJob {
  const parsed = DemoInput.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new JobFailure("invalid_input", `input.${issue?.path.join(".") ?? ""}: ${issue?.message ?? "invalid"}`);
  }
  const { video, image, ...rest } = parsed.data;
  if (video !== undefined && image !== undefined) {
    throw new JobFailure("invalid_input", "input: give a video or an image, not both");
  }
  const source =
    video !== undefined
      ? { kind: "video" as const, path: video }
      : image !== undefined
        ? { kind: "image" as const, path: image }
        : undefined;
  return { ...rest, seed: rest.seed ?? hash32(rest.prompt), ...(source ? { source } : {}) };
}

/**
 * The video-to-video target: each frame of the source blended with the scene's frame (an image
 * source is every frame), {@link SOURCE_WEIGHT} of it the source's.
 */
function blend(src: SourceFrames, sceneFrames: Float32Array, frames: number): Float32Array {
  const per = src.size * src.size * 3;
  const out = new Float32Array(frames * per);
  for (let f = 0; f < frames; f++) {
    const s = Math.min(f, src.count - 1) * per;
    for (let i = 0; i < per; i++) {
      out[f * per + i] = SOURCE_WEIGHT * src.rgb[s + i]! + (1 - SOURCE_WEIGHT) * sceneFrames[f * per + i]!;
    }
  }
  return out;
}

/** Runs one demo job: sampling with progress every step and previews every few, then the frames. */
export async function renderJob(job: JobContext): Promise<void> {
  const { prompt, seed, steps, size, source, frames: asked } = parseDemoInput(job.input);
  let frames = asked;
  // A video source sets the frame count (at most `frames`); an image is every frame.
  const src = source ? await sourceFrames(source.path, source.kind === "video" ? frames : 1, size) : undefined;
  if (src && source?.kind === "video") frames = src.count;
  await job.log(
    "info",
    `demo: ${frames} frames of ${size}×${size}, ${steps} steps, seed ${seed}${source ? `, from the input ${source.kind}` : ""}`,
  );
  await job.output(
    "params.json",
    "application/json",
    new TextEncoder().encode(
      JSON.stringify({ prompt, seed, steps, frames, size, ...(source ? { source: source.kind } : {}) }),
    ),
  );
  const sceneFrames = renderTarget(scene(prompt, seed), frames, size);
  const target = src ? blend(src, sceneFrames, frames) : sceneFrames;
  const noise = rng(seed ^ 0x9e3779b9);
  const x = new Float32Array(target.length);
  for (let i = 0; i < x.length; i++) x[i] = 255 * noise();
  // Re-injected noise comes from a seeded table read at a fresh seeded offset each step: a
  // PRNG call per value per step would be most of the sampling time.
  const table = new Float32Array(NOISE_TABLE);
  for (let i = 0; i < table.length; i++) table[i] = noise() - 0.5;

  const middle = Math.floor(frames / 2);
  const previewScale = Math.max(1, Math.ceil(size / PREVIEW_MAX));
  for (let s = 1; s <= steps; s++) {
    await job.step();
    // Move 1/(remaining steps) of the way: the last step lands on the target, noise-free.
    const k = 1 / (steps - s + 1);
    const sigma = (NOISE * (steps - s)) / steps;
    const offset = Math.floor(noise() * NOISE_TABLE);
    for (let i = 0; i < x.length; i++) {
      x[i] = x[i]! + (target[i]! - x[i]!) * k + sigma * table[(i + offset) & (NOISE_TABLE - 1)]!;
    }
    await job.progress("sampling", s, steps);
    if (s % PREVIEW_EVERY === 0 && s < steps) {
      const w = Math.floor(size / previewScale);
      await job.frame({
        index: middle,
        width: w,
        height: w,
        data: toRgba(x, middle, size, previewScale),
        preview: true,
      });
    }
  }
  for (let f = 0; f < frames; f++) {
    await job.frame({ index: f, width: size, height: size, data: toRgba(x, f, size), preview: false });
    await job.progress("decoding", f + 1, frames);
  }
}

/** The project's version (package.json), which the demo model's version follows. */
function packageVersion(): string {
  const pkg = z
    .object({ version: z.string().min(1).max(64) })
    .parse(JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")));
  return pkg.version;
}

/** The demo model as a runner. */
export function demoModel(): RunnerModel {
  const version = packageVersion();
  return { runner: "demo", version, maxBatch: 4, models: [{ model: "demo", version }], run: renderJob };
}

/** What a demo version's manifest `config` may say. */
export const DemoVersionConfig = z.strictObject({
  /** Fail on purpose: `load` answers every `runner.load` with `runner.load_failed`; `start` exits before its hello. */
  fail: z.enum(["load", "start"]).optional(),
  /** Share of jobs that fail with `model_error` (percent), drawn from the job id: a retry of a job fails the same way. */
  fail_pct: z.number().min(0).max(100).default(0),
  /** How long a load takes (ms). */
  load_ms: z.number().int().min(0).max(600_000).default(0),
});
export type DemoVersionConfig = z.infer<typeof DemoVersionConfig>;

/**
 * The demo model serving the version in `dir` (its manifest.json); a manifest that is not a
 * demo version's throws, and the runner exits before its hello.
 */
export function demoVersion(
  dir: string,
  log: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): RunnerModel {
  const manifest = VersionManifest.parse(JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")));
  if (manifest.runner !== "demo") throw new Error(`${dir}: a ${manifest.runner} version, not a demo one`);
  const parsed = DemoVersionConfig.safeParse(manifest.config);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`${dir}: config.${issue?.path.join(".")}: ${issue?.message}`);
  }
  const cfg = parsed.data;
  const { model, version } = manifest;
  // The devices this runner was given, for people and for the tests that check replicas' GPUs.
  log(
    `demo: serving ${model}@${version} (max_batch ${manifest.max_batch}) with CUDA_VISIBLE_DEVICES=${process.env.CUDA_VISIBLE_DEVICES ?? "(unset)"} in process ${process.pid}`,
  );
  if (cfg.fail === "start") throw new Error(`${model}@${version} is configured to fail its start`);
  return {
    runner: "demo",
    version: packageVersion(),
    maxBatch: manifest.max_batch,
    models: [{ model, version }],
    load: async () => {
      if (cfg.load_ms > 0) await new Promise((res) => setTimeout(res, cfg.load_ms));
      if (cfg.fail === "load")
        throw new JobFailure("model_error", `${model}@${version} is configured to fail its load`);
    },
    run: async (job) => {
      if (cfg.fail_pct > 0 && hash32(job.id, 0xfa11) % 100 < cfg.fail_pct) {
        throw new JobFailure("model_error", `${model}@${version} fails ${cfg.fail_pct}% of jobs, this one included`);
      }
      await job.log(
        "info",
        `demo ${model}@${version} on CUDA_VISIBLE_DEVICES=${process.env.CUDA_VISIBLE_DEVICES ?? "(unset)"}`,
      );
      await renderJob(job);
    },
  };
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { "version-dir": { type: "string" } }, strict: true });
  const dir = values["version-dir"];
  let model: RunnerModel;
  try {
    model = dir === undefined ? demoModel() : demoVersion(dir);
  } catch (err) {
    // One line, the last on stderr: the agent quotes it as why the runner did not start.
    process.stderr.write(`demo: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
  await main(model);
}
