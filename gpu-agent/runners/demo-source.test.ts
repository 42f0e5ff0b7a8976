/**
 * The demo's video to video: sources decoded from real files (PNG by fast-png, video by ffmpeg),
 * and a job whose frames are its source's, transformed by its prompt.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encode as encodePng } from "fast-png";
import { afterAll, describe, expect, it } from "vitest";
import type { JobContext } from "../runner/runtime.ts";
import { renderJob } from "./demo.ts";
import { sourceFrames } from "./demo-source.ts";

const dir = mkdtempSync(join(tmpdir(), "fg-demo-source-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A solid RGB PNG of `w` × `h`. */
function png(name: string, w: number, h: number, rgb: [number, number, number]): string {
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) data.set(rgb, i * 3);
  const path = join(dir, name);
  writeFileSync(path, encodePng({ width: w, height: h, data, channels: 3, depth: 8 }));
  return path;
}

/** A solid-colour MP4 of `frames` frames, made by ffmpeg. */
function mp4(name: string, frames: number, color: string): string {
  const path = join(dir, name);
  const source = ["-f", "lavfi", "-i", `color=c=${color}:s=48x32:r=8`];
  const out = ["-frames:v", String(frames), "-pix_fmt", "yuv420p", "-y", path];
  execFileSync("ffmpeg", ["-hide_banner", "-loglevel", "error", ...source, ...out]);
  return path;
}

function mean(rgb: Float32Array | Uint8Array, stride: number, channel: number): number {
  let sum = 0;
  let n = 0;
  for (let i = channel; i < rgb.length; i += stride) {
    sum += rgb[i]!;
    n++;
  }
  return sum / n;
}

/** Runs a demo job in process and collects its final frames and params. */
async function run(input: Record<string, unknown>) {
  const frames: Uint8Array[] = [];
  const outputs = new Map<string, Uint8Array>();
  const job: JobContext = {
    id: "j",
    model: "demo",
    version: "1",
    input,
    signal: new AbortController().signal,
    step: async () => undefined,
    progress: async () => undefined,
    frame: async (f) => {
      if (!f.preview) frames.push(f.data);
    },
    log: async () => undefined,
    output: async (name, _type, data) => void outputs.set(name, data),
  };
  await renderJob(job);
  return {
    frames,
    params: JSON.parse(new TextDecoder().decode(outputs.get("params.json"))) as Record<string, unknown>,
  };
}

describe("the demo's sources", () => {
  it("a PNG is one frame scaled to the square, its colours kept", async () => {
    const src = await sourceFrames(png("red.png", 40, 20, [255, 0, 0]), 16, 16);
    expect(src.count).toBe(1);
    expect(src.rgb.length).toBe(16 * 16 * 3);
    expect([mean(src.rgb, 3, 0), mean(src.rgb, 3, 1), mean(src.rgb, 3, 2)]).toEqual([255, 0, 0]);
  });

  it("a video gives at most the frames asked for, each scaled to the square", async () => {
    const path = mp4("blue.mp4", 5, "blue");
    expect((await sourceFrames(path, 16, 16)).count).toBe(5);
    const three = await sourceFrames(path, 3, 16);
    expect(three.count).toBe(3);
    expect(mean(three.rgb, 3, 2)).toBeGreaterThan(200);
    expect(mean(three.rgb, 3, 0)).toBeLessThan(60);
  });

  it("a file that is no image or video fails the job as invalid input", async () => {
    const path = join(dir, "junk.mp4");
    writeFileSync(path, "not a video");
    await expect(sourceFrames(path, 4, 16)).rejects.toMatchObject({ code: "invalid_input" });
    await expect(sourceFrames(join(dir, "missing"), 4, 16)).rejects.toMatchObject({ code: "invalid_input" });
  });
});

describe("demo video to video", () => {
  it("a video job has its source's frame count and colours, transformed by the prompt", async () => {
    const path = mp4("red.mp4", 6, "red");
    const out = await run({ prompt: "a fox", video: path, frames: 16, size: 32, steps: 3 });
    expect(out.frames.length).toBe(6);
    expect(out.params).toMatchObject({ frames: 6, source: "video" });
    const last = out.frames.at(-1)!;
    // 60 % red source: red dominates whatever the scene adds.
    expect(mean(last, 4, 0)).toBeGreaterThan(mean(last, 4, 1) + 60);
    const plain = await run({ prompt: "a fox", frames: 6, size: 32, steps: 3 });
    expect(plain.frames.at(-1)).not.toEqual(last);
    // Another prompt transforms the same source otherwise.
    const other = await run({ prompt: "the sea at night", video: path, frames: 16, size: 32, steps: 3 });
    expect(other.frames.at(-1)).not.toEqual(last);
  });

  it("an image job animates its one frame for the frames asked; a video and an image together are refused", async () => {
    const path = png("green.png", 8, 8, [0, 255, 0]);
    const out = await run({ prompt: "a fox", image: path, frames: 4, size: 16, steps: 2 });
    expect(out.frames.length).toBe(4);
    expect(mean(out.frames[0]!, 4, 1)).toBeGreaterThan(mean(out.frames[0]!, 4, 0) + 60);
    await expect(run({ prompt: "x", image: path, video: path })).rejects.toMatchObject({ code: "invalid_input" });
  });
});
