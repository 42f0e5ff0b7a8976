import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decode as decodePng } from "fast-png";
import { GifReader } from "omggif";
import { afterAll, describe, expect, it } from "vitest";
import { type EncodeFrame, encodeGif, encodeOutputs, encodePng } from "./encode.ts";

/** Smooth gradients and a moving square: what runners hand back, in miniature. */
function frames(n: number, width: number, height: number): EncodeFrame[] {
  return Array.from({ length: n }, (_, f) => {
    const data = new Uint8Array(width * height * 4);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const o = (y * width + x) * 4;
        const inSquare = x >= f * 5 && x < f * 5 + 8 && y >= 4 && y < 12;
        data[o] = inSquare ? 250 : Math.round((x / width) * 255);
        data[o + 1] = inSquare ? 30 : Math.round((y / height) * 255);
        data[o + 2] = (f * 60) & 255;
        data[o + 3] = 255;
      }
    }
    return { width, height, data };
  });
}

const tmp = mkdtempSync(join(tmpdir(), "floodgate-encode-test-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A stand-in ffmpeg (a Node script): checks the raw input's size and writes a fake MP4, or fails. */
function fakeFfmpeg(name: string, behaviour: "ok" | "fail"): string {
  const path = join(tmp, name);
  writeFileSync(
    path,
    `#!${process.execPath}
const fs = require("node:fs");
const args = process.argv.slice(2);
const [w, h] = args[args.indexOf("-s") + 1].split("x").map(Number);
const chunks = [];
process.stdin.on("data", (c) => chunks.push(c));
process.stdin.on("end", () => {
  const n = Buffer.concat(chunks).length;
  if (${JSON.stringify(behaviour)} === "fail") { process.stderr.write("Unknown encoder 'libx264'\\n"); process.exit(1); }
  fs.writeFileSync(args.at(-1), "FAKEMP4 " + n / (w * h * 4) + " frames " + args.join(" "));
});
`,
  );
  chmodSync(path, 0o755);
  return path;
}

const hasFfmpeg = spawnSync("ffmpeg", ["-version"], { stdio: "ignore" }).status === 0;

describe("encoding result frames", () => {
  it("the GIF decodes back to every frame, at the right size, with pixels close to the input", () => {
    const input = frames(4, 40, 30);
    const reader = new GifReader(Buffer.from(encodeGif(input, 10)));
    expect([reader.width, reader.height, reader.numFrames(), reader.loopCount()]).toEqual([40, 30, 4, 0]);
    for (let i = 0; i < input.length; i++) {
      expect(reader.frameInfo(i).delay).toBe(10); // centiseconds at 10 fps
      const pixels = new Uint8Array(40 * 30 * 4);
      reader.decodeAndBlitFrameRGBA(i, pixels);
      const want = input[i]!.data;
      let sum = 0;
      let max = 0;
      for (let p = 0; p < pixels.length; p++) {
        const d = Math.abs(pixels[p]! - want[p]!);
        sum += d;
        max = Math.max(max, d);
      }
      // 256 colours per frame (quantized at 5-6-5 bits): close, not exact.
      expect(sum / pixels.length).toBeLessThan(4);
      expect(max).toBeLessThan(24);
    }
  });

  it("a frame that is a view into a larger buffer encodes its own pixels only", () => {
    const [f] = frames(1, 8, 8);
    const padded = new Uint8Array(16 + f!.data.length + 12);
    padded.fill(7);
    padded.set(f!.data, 16);
    const view = { width: 8, height: 8, data: padded.subarray(16, 16 + f!.data.length) };
    const reader = new GifReader(Buffer.from(encodeGif([view])));
    const pixels = new Uint8Array(8 * 8 * 4);
    reader.decodeAndBlitFrameRGBA(0, pixels);
    expect(Math.abs(pixels[0]! - f!.data[0]!)).toBeLessThan(12);
    expect(decodePng(encodePng(view)).data).toEqual(f!.data);
  });

  it("the PNG is the frame, losslessly", () => {
    const [f] = frames(1, 33, 17);
    const png = decodePng(encodePng(f!));
    expect([png.width, png.height, png.channels, png.depth]).toEqual([33, 17, 4, 8]);
    expect(png.data).toEqual(f!.data);
  });

  it("outputs are animation.gif and last.png (the last frame) with their sha256, and no video.mp4 without ffmpeg", async () => {
    const input = frames(3, 16, 16);
    const warnings: string[] = [];
    const out = await encodeOutputs(input, { ffmpeg: join(tmp, "no-such-ffmpeg"), onWarning: (w) => warnings.push(w) });
    expect(out.map((o) => [o.name, o.content_type])).toEqual([
      ["animation.gif", "image/gif"],
      ["last.png", "image/png"],
    ]);
    expect(decodePng(out[1]!.data).data).toEqual(input[2]!.data);
    const { createHash } = await import("node:crypto");
    for (const o of out) expect(o.sha256).toBe(createHash("sha256").update(o.data).digest("hex"));
    expect(warnings).toEqual([]);
  });

  it("with an ffmpeg, raw RGBA frames are piped into it and its MP4 comes back as video.mp4", async () => {
    const out = await encodeOutputs(frames(5, 12, 10), { fps: 12, ffmpeg: fakeFfmpeg("ffmpeg-ok", "ok") });
    const mp4 = out.find((o) => o.name === "video.mp4");
    expect(mp4?.content_type).toBe("video/mp4");
    const text = new TextDecoder().decode(mp4?.data);
    expect(text).toMatch(/^FAKEMP4 5 frames /);
    expect(text).toContain("-pix_fmt rgba -s 12x10 -r 12 -i pipe:0");
    expect(text).toContain("-pix_fmt yuv420p");
  });

  it("an ffmpeg that fails gives no video.mp4 and a warning saying why", async () => {
    const warnings: string[] = [];
    const out = await encodeOutputs(frames(2, 8, 8), {
      ffmpeg: fakeFfmpeg("ffmpeg-fail", "fail"),
      onWarning: (w) => warnings.push(w),
    });
    expect(out.map((o) => o.name)).toEqual(["animation.gif", "last.png"]);
    expect(warnings).toEqual([expect.stringContaining("Unknown encoder 'libx264'")]);
  });

  it("one frame makes no video.mp4 and starts no ffmpeg: the PNG is the whole result", async () => {
    const warnings: string[] = [];
    // This ffmpeg fails loudly whenever it runs: no warning means it never ran.
    const out = await encodeOutputs(frames(1, 8, 8), {
      ffmpeg: fakeFfmpeg("ffmpeg-never", "fail"),
      onWarning: (w) => warnings.push(w),
    });
    expect(out.map((o) => o.name)).toEqual(["animation.gif", "last.png"]);
    expect(warnings).toEqual([]);
  });

  it("ffmpeg: false skips the MP4 without looking for ffmpeg", async () => {
    const out = await encodeOutputs(frames(1, 4, 4), { ffmpeg: false });
    expect(out.map((o) => o.name)).toEqual(["animation.gif", "last.png"]);
  });

  it("frames of different sizes, a wrong byte count or no frames are refused", async () => {
    const [a] = frames(1, 8, 8);
    const [b] = frames(1, 9, 8);
    await expect(encodeOutputs([a!, b!], { ffmpeg: false })).rejects.toThrow(RangeError);
    expect(() => encodePng({ width: 8, height: 8, data: new Uint8Array(10) })).toThrow(RangeError);
    expect(() => encodeGif([])).toThrow(RangeError);
  });

  it.skipIf(!hasFfmpeg)("the real ffmpeg, where installed, makes an MP4", async () => {
    const out = await encodeOutputs(frames(8, 33, 21), { fps: 8 });
    const mp4 = out.find((o) => o.name === "video.mp4");
    // An MP4 starts with its ftyp box.
    expect(new TextDecoder().decode(mp4?.data.subarray(4, 8))).toBe("ftyp");
  });
});
