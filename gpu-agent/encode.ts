/**
 * Turns a job's result frames (RGBA8, from any runner) into the files a client downloads, the
 * same way for every runner: `animation.gif` (every frame), `last.png` (the last frame) and,
 * where an `ffmpeg` binary can be run, `video.mp4` (H.264 or whatever the build's default MP4
 * encoder is, yuv420p). The agent calls it once per finished job and uploads the results.
 *
 * GIF: gifenc (pure JavaScript), one 256-colour palette per frame (PNN quantizer). PNG:
 * fast-png (pure JavaScript, fflate). MP4: raw RGBA piped into ffmpeg's stdin, written to a
 * temporary file (MP4 needs a seekable output for its index), read back and removed.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encode as encodePngImage } from "fast-png";

/** What gpu-agent uses of gifenc (mattdesl/gifenc, MIT), which ships no types. */
interface Gifenc {
  GIFEncoder(): {
    /** `palette` is required on the first frame (global table), a local table on later ones; `delay` in ms; `repeat` 0 = loop forever. */
    writeFrame(
      index: Uint8Array,
      width: number,
      height: number,
      opts: { palette: number[][]; delay: number; repeat: number },
    ): void;
    finish(): void;
    bytes(): Uint8Array;
  };
  /** At most `maxColors` colours for flat RGBA pixels. Reads `rgba.buffer` whole, as 32-bit words. */
  quantize(rgba: Uint8Array, maxColors: number): number[][];
  /** One palette index per pixel; the same caveat on `rgba.buffer`. */
  applyPalette(rgba: Uint8Array, palette: number[][]): Uint8Array;
}

// Loaded through require: gifenc's CommonJS build (`main`) is what Node imports, but bundlers
// (vitest included) pick its ESM build (`module`), whose default export is another thing.
// require gives the same object everywhere.
const gifenc: Gifenc = createRequire(import.meta.url)("gifenc");

/** Fewest frames that make a `video.mp4`. */
export const MIN_VIDEO_FRAMES = 2;

/** One RGBA8 frame, row-major, no padding. */
export interface EncodeFrame {
  width: number;
  height: number;
  data: Uint8Array;
}

/** One encoded file. */
export interface EncodedOutput {
  name: string;
  content_type: string;
  data: Uint8Array;
  /** Hex SHA-256 of `data`. */
  sha256: string;
}

export interface EncodeOptions {
  /** Frames per second of the GIF and the MP4 (default 8). */
  fps?: number;
  /**
   * The ffmpeg to run: a path or a name looked up on PATH (default `"ffmpeg"`); `false` for no
   * MP4. A missing binary means no MP4, silently.
   */
  ffmpeg?: string | false;
  /** How long ffmpeg may take before it is killed and the MP4 skipped (ms, default 60 000). */
  ffmpegTimeoutMs?: number;
  /** Told why an MP4 was skipped when ffmpeg exists but failed. */
  onWarning?: (message: string) => void;
}

const DEFAULT_FPS = 8;
const DEFAULT_FFMPEG_TIMEOUT_MS = 60_000;

function checkFrames(frames: readonly EncodeFrame[]): { width: number; height: number } {
  const first = frames[0];
  if (first === undefined) throw new RangeError("no frames to encode");
  for (const [i, f] of frames.entries()) {
    if (f.width !== first.width || f.height !== first.height) {
      throw new RangeError(`frame ${i} is ${f.width}×${f.height}, frame 0 ${first.width}×${first.height}`);
    }
    if (f.data.length !== f.width * f.height * 4) {
      throw new RangeError(`frame ${i}: ${f.data.length} bytes for ${f.width}×${f.height} RGBA8`);
    }
  }
  return { width: first.width, height: first.height };
}

function file(name: string, content_type: string, data: Uint8Array): EncodedOutput {
  return { name, content_type, data, sha256: createHash("sha256").update(data).digest("hex") };
}

/**
 * Encodes frames as a looping animated GIF, each frame with its own 256-colour palette.
 *
 * @example
 * const gif = encodeGif(result.frames, 8);
 */
export function encodeGif(frames: readonly EncodeFrame[], fps: number = DEFAULT_FPS): Uint8Array {
  checkFrames(frames);
  const gif = gifenc.GIFEncoder();
  const delay = Math.round(1000 / fps); // ms; GIF stores centiseconds
  for (const f of frames) {
    // gifenc reads `data.buffer` whole as 32-bit words: give it an array that owns its buffer.
    const rgba = new Uint8Array(f.data);
    const palette = gifenc.quantize(rgba, 256);
    const index = gifenc.applyPalette(rgba, palette);
    gif.writeFrame(index, f.width, f.height, { palette, delay, repeat: 0 });
  }
  gif.finish();
  return gif.bytes();
}

/**
 * Encodes one frame as an RGBA PNG.
 *
 * @example
 * const png = encodePng(preview);
 */
export function encodePng(frame: EncodeFrame): Uint8Array {
  checkFrames([frame]);
  return encodePngImage({ width: frame.width, height: frame.height, data: frame.data, channels: 4, depth: 8 });
}

/**
 * Encodes frames as an MP4 with ffmpeg. Resolves undefined when ffmpeg cannot be started (not
 * installed), or fails or times out (then `onWarning` says why).
 */
export async function encodeMp4(
  frames: readonly EncodeFrame[],
  opts: { fps?: number; ffmpeg?: string; timeoutMs?: number; onWarning?: (message: string) => void } = {},
): Promise<Uint8Array | undefined> {
  const { width, height } = checkFrames(frames);
  const dir = await mkdtemp(join(tmpdir(), "floodgate-mp4-"));
  const out = join(dir, "video.mp4");
  try {
    const ok = await runFfmpeg(
      opts.ffmpeg ?? "ffmpeg",
      [
        "-hide_banner",
        "-loglevel",
        "error",
        // Input: raw RGBA frames on stdin.
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgba",
        "-s",
        `${width}x${height}`,
        "-r",
        String(opts.fps ?? DEFAULT_FPS),
        "-i",
        "pipe:0",
        // Output: yuv420p (what players accept), which needs even dimensions; index up front.
        "-vf",
        "scale=trunc(iw/2)*2:trunc(ih/2)*2",
        "-pix_fmt",
        "yuv420p",
        "-movflags",
        "+faststart",
        "-y",
        out,
      ],
      frames,
      opts.timeoutMs ?? DEFAULT_FFMPEG_TIMEOUT_MS,
      opts.onWarning,
    );
    return ok ? new Uint8Array(await readFile(out)) : undefined;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function runFfmpeg(
  command: string,
  args: string[],
  frames: readonly EncodeFrame[],
  timeoutMs: number,
  warn: ((message: string) => void) | undefined,
): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ["pipe", "ignore", "pipe"] });
    let stderr = "";
    let settled = false;
    const settle = (ok: boolean, why?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (why !== undefined) warn?.(why);
      resolve(ok);
    };
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      settle(false, `ffmpeg took over ${timeoutMs} ms; no video.mp4`);
    }, timeoutMs);
    child.on("error", (err: NodeJS.ErrnoException) => {
      // Not installed: no MP4, and nothing to say about it.
      settle(false, err.code === "ENOENT" ? undefined : `ffmpeg could not run: ${err.message}`);
    });
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (s: string) => {
      stderr = (stderr + s).slice(-2000);
    });
    child.on("close", (code, signal) => {
      if (code === 0) settle(true);
      else
        settle(
          false,
          `ffmpeg failed (${signal ?? `code ${code}`}): ${stderr.trim().split("\n").slice(-3).join(" | ")}`,
        );
    });
    // EPIPE when ffmpeg exits early; its exit status says why.
    child.stdin.on("error", () => {});
    void (async () => {
      for (const f of frames) {
        if (settled || child.stdin.destroyed) return;
        if (!child.stdin.write(f.data)) {
          await new Promise<void>((r) => {
            const done = (): void => {
              child.stdin.off("drain", done);
              child.stdin.off("close", done);
              r();
            };
            child.stdin.on("drain", done);
            child.stdin.on("close", done);
          });
        }
      }
      child.stdin.end();
    })();
  });
}

/**
 * Encodes a job's result frames into its output files: `animation.gif`, `last.png`, and
 * `video.mp4` when ffmpeg is available and there are at least {@link MIN_VIDEO_FRAMES} frames.
 * Frames must share one size (a RangeError otherwise).
 *
 * @example
 * const outputs = await encodeOutputs(result.frames, { fps: 8 });
 * for (const o of outputs) await upload(o.name, o.content_type, o.data, o.sha256);
 */
export async function encodeOutputs(
  frames: readonly EncodeFrame[],
  opts: EncodeOptions = {},
): Promise<EncodedOutput[]> {
  checkFrames(frames);
  const fps = opts.fps ?? DEFAULT_FPS;
  const out = [
    file("animation.gif", "image/gif", encodeGif(frames, fps)),
    file("last.png", "image/png", encodePng(frames.at(-1)!)),
  ];
  // A video of one frame shows nothing the PNG does not, and starting ffmpeg costs a job about
  // 20–50 ms of CPU and 0.3 s of wall time: only animations get one.
  if (opts.ffmpeg !== false && frames.length >= MIN_VIDEO_FRAMES) {
    const mp4 = await encodeMp4(frames, {
      fps,
      ffmpeg: opts.ffmpeg,
      timeoutMs: opts.ffmpegTimeoutMs,
      onWarning: opts.onWarning,
    });
    if (mp4) out.push(file("video.mp4", "video/mp4", mp4));
  }
  return out;
}
