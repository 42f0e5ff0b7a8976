/**
 * The demo model's video-to-video source: the frames of an input image or video (a local path
 * the agent downloaded), as float RGB scaled to the demo's square frame. Video, and images other
 * than PNG, are decoded by ffmpeg (raw RGB frames on its stdout), as the encoder uses it for
 * MP4 (gpu-agent/encode.ts); a PNG is decoded by fast-png, so an image job runs where ffmpeg
 * does not. Called by the demo runner (demo.ts).
 */
import { spawn } from "node:child_process";
import { open, readFile } from "node:fs/promises";
import { decode as decodePng } from "fast-png";
import { JobFailure } from "../runner/runtime.ts";

/** How long ffmpeg may take to decode a source (ms). */
const DECODE_TIMEOUT_MS = 60_000;

/** Source frames: `count` frames of `size` × `size` float RGB, row-major. */
export interface SourceFrames {
  count: number;
  size: number;
  rgb: Float32Array;
}

/** Whether a path names a PNG, by its first bytes (the extension is only the agent's guess). */
function isPng(head: Uint8Array): boolean {
  return [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a].every((b, i) => head[i] === b);
}

/** Nearest-neighbour scale of an RGBA or RGB image to `size` × `size` float RGB. */
function scaleToSquare(
  data: ArrayLike<number>,
  width: number,
  height: number,
  channels: number,
  depth: number,
  size: number,
): Float32Array {
  const out = new Float32Array(size * size * 3);
  const max = depth === 16 ? 65535 : 255;
  for (let y = 0; y < size; y++) {
    const sy = Math.min(height - 1, Math.floor(((y + 0.5) * height) / size));
    for (let x = 0; x < size; x++) {
      const sx = Math.min(width - 1, Math.floor(((x + 0.5) * width) / size));
      const i = (sy * width + sx) * channels;
      const o = (y * size + x) * 3;
      for (let c = 0; c < 3; c++) {
        // Grey images (1 or 2 channels) repeat their one value.
        const v = channels < 3 ? data[i]! : data[i + c]!;
        out[o + c] = (v * 255) / max;
      }
    }
  }
  return out;
}

/** Decodes a PNG with fast-png into one square frame. */
async function pngFrame(path: string, size: number): Promise<SourceFrames> {
  const png = decodePng(await readFile(path));
  return { count: 1, size, rgb: scaleToSquare(png.data, png.width, png.height, png.channels, png.depth, size) };
}

/** Decodes up to `frames` frames of a video or an image with ffmpeg, scaled to the square. */
function ffmpegFrames(path: string, frames: number, size: number, ffmpeg: string): Promise<SourceFrames> {
  return new Promise((resolve, reject) => {
    const args = ["-hide_banner", "-loglevel", "error", "-i", path, "-frames:v", String(frames)];
    args.push("-vf", `scale=${size}:${size}`, "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1");
    const child = spawn(ffmpeg, args, { stdio: ["ignore", "pipe", "pipe"] });
    const chunks: Buffer[] = [];
    let stderr = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), DECODE_TIMEOUT_MS);
    child.stdout.on("data", (c: Buffer) => chunks.push(c));
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (s: string) => {
      stderr = (stderr + s).slice(-2000);
    });
    child.on("error", (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        new JobFailure(
          "model_error",
          err.code === "ENOENT" ? "decoding this input needs ffmpeg, which this host does not have" : String(err),
        ),
      );
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const bytes = Buffer.concat(chunks);
      const frameBytes = size * size * 3;
      const count = Math.floor(bytes.length / frameBytes);
      if (code !== 0 || count === 0) {
        const why = stderr.trim().split("\n").slice(-2).join(" | ") || `ffmpeg ${signal ?? `exited ${code}`}`;
        reject(new JobFailure("invalid_input", `the input file could not be decoded: ${why}`));
        return;
      }
      const rgb = new Float32Array(count * frameBytes);
      for (let i = 0; i < rgb.length; i++) rgb[i] = bytes[i]!;
      resolve({ count, size, rgb });
    });
  });
}

/**
 * The frames of the source at `path`: a PNG image as one frame (fast-png), anything else (video,
 * JPEG, WebP, GIF) through ffmpeg, at most `frames` of them, each scaled to `size` × `size`.
 *
 * @example
 * const src = await sourceFrames("/cache/inputs/job-1/file_x.mp4", 16, 128);
 */
export async function sourceFrames(
  path: string,
  frames: number,
  size: number,
  ffmpeg = "ffmpeg",
): Promise<SourceFrames> {
  const head = new Uint8Array(8);
  try {
    const file = await open(path);
    try {
      await file.read(head, 0, 8, 0);
    } finally {
      await file.close();
    }
  } catch (err) {
    throw new JobFailure("invalid_input", `the input file cannot be read: ${String(err)}`);
  }
  if (isPng(head)) {
    try {
      return await pngFrame(path, size);
    } catch (err) {
      throw new JobFailure("invalid_input", `the PNG could not be decoded: ${String(err)}`);
    }
  }
  return await ffmpegFrames(path, frames, size, ffmpeg);
}
