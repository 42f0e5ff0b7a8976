/**
 * Input files end to end, on the real local stack (`floodgate dev` with one demo agent): a video
 * uploaded by the CLI from a local path, a video-to-video job that names it, run by a real agent
 * that downloads it through the edge, and an output video made from it; another account cannot
 * use the file id; deleting the file removes it.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decode as decodePng } from "fast-png";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FileList, FileView } from "../../shared/files.ts";
import { api, cli as runCli, startStack, type Stack } from "./stack.ts";

let stack: Stack;
const dir = mkdtempSync(join(tmpdir(), "floodgate-e2e-files-"));

beforeAll(async () => {
  stack = await startStack({ agents: 1 });
});

afterAll(async () => {
  await stack?.stop("SIGTERM");
});

/** The CLI against the stack, run from the test's folder (where its local files are). */
function cli(args: string[]): ReturnType<typeof runCli> {
  return runCli([...args, "--url", stack.config.url, "--api-key", stack.config.api_key], dir);
}

/** Frames in a video, counted by ffprobe decoding it. */
function frameCount(path: string): number {
  const out = execFileSync("ffprobe", [
    "-v",
    "error",
    "-count_frames",
    "-select_streams",
    "v:0",
    "-show_entries",
    "stream=nb_read_frames",
    "-of",
    "csv=p=0",
    path,
  ]);
  return Number(out.toString().trim());
}

function meanChannel(data: ArrayLike<number>, channels: number, c: number): number {
  let sum = 0;
  for (let i = c; i < data.length; i += channels) sum += data[i]!;
  return sum / (data.length / channels);
}

describe("input files end to end", () => {
  it("a video uploaded from a local path is transformed by a video-to-video job into an output video made from it; another account cannot use it", async () => {
    // Six red frames: the demo's output keeps the source's frame count and its red.
    const clip = join(dir, "clip.mp4");
    execFileSync("ffmpeg", [
      "-hide_banner",
      "-loglevel",
      "error",
      "-f",
      "lavfi",
      "-i",
      "color=c=red:s=48x32:r=8",
      "-frames:v",
      "6",
      "-pix_fmt",
      "yuv420p",
      "-y",
      clip,
    ]);
    const out = join(dir, "out");
    const input = { prompt: "make it snow", video: "@clip.mp4", frames: 16, size: 32, steps: 4 };
    const run = await cli(["submit", "demo", "--input", JSON.stringify(input), "--watch", "--out", out]);
    expect(run.stderr).toMatch(/uploaded video \(clip\.mp4\): /);
    expect(run).toMatchObject({ code: 0 });

    const listed = await cli(["files", "list", "--json"]);
    const file = (JSON.parse(listed.stdout) as FileList).files.find((f) => f.name === "clip.mp4") as FileView;
    expect(file).toMatchObject({ status: "ready", content_type: "video/mp4", size: readFileSync(clip).length });

    const video = join(out, "video.mp4");
    expect(frameCount(video)).toBe(6);
    const last = decodePng(readFileSync(join(out, "last.png")));
    expect([last.width, last.height]).toEqual([32, 32]);
    expect(meanChannel(last.data, last.channels, 0)).toBeGreaterThan(meanChannel(last.data, last.channels, 1) + 60);
    expect(JSON.parse(readFileSync(join(out, "params.json"), "utf8"))).toMatchObject({ source: "video", frames: 6 });

    // Another account: the id names nothing it can read or use.
    const other = await api<{ api_key: string }>(
      stack,
      "POST",
      "/v1/admin/accounts",
      { name: "other", tier: "plus" },
      stack.config.admin_key,
    );
    expect(other.status).toBe(201);
    const theirs = await api<{ error: { code: string } }>(
      stack,
      "POST",
      "/v1/models/demo/jobs",
      { input: { prompt: "steal", video: file.id } },
      other.body.api_key,
    );
    expect([theirs.status, theirs.body.error.code]).toEqual([404, "file_not_found"]);
    const read = await api<{ error: { code: string } }>(
      stack,
      "GET",
      `/v1/files/${file.id}`,
      undefined,
      other.body.api_key,
    );
    expect([read.status, read.body.error.code]).toEqual([404, "file_not_found"]);

    // Its owner deletes it: gone for jobs too.
    expect((await cli(["files", "rm", file.id])).code).toBe(0);
    const after = await api<{ error: { code: string } }>(stack, "POST", "/v1/models/demo/jobs", {
      input: { prompt: "again", video: file.id },
    });
    expect([after.status, after.body.error.code]).toEqual([404, "file_not_found"]);
  }, 120_000);
});
