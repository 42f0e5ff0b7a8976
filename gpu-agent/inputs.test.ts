import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { InputFiles } from "../shared/files.ts";
import { fetchInputs, InputError } from "./inputs.ts";

const BYTES = Buffer.from("not really a video, but bytes all the same");
const SHA = createHash("sha256").update(BYTES).digest("hex");
const ID = "file_0123456789abcdef";
const ref = { job_id: "job_x", epoch: 3 };

let server: Server;
let baseUrl: string;
const seen: { url: string; auth: string | undefined; agent: string | undefined }[] = [];

beforeAll(async () => {
  // Stands in for the edge's download route: what it answers per field.
  server = createServer((req, res) => {
    seen.push({
      url: req.url ?? "",
      auth: req.headers.authorization,
      agent: req.headers["x-floodgate-agent"] as string,
    });
    const field = (req.url ?? "").split("/").at(-1);
    if (field === "slow") {
      // Sends a little, then stalls: only an abort ends the download.
      res.writeHead(200);
      res.write(BYTES.subarray(0, 4));
      return;
    }
    if (field === "stale") {
      res.writeHead(409, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { code: "stale_lease", message: "not yours" } }));
    } else res.end(field === "long" ? Buffer.concat([BYTES, Buffer.from("more")]) : BYTES);
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(
  () =>
    new Promise<void>((ok) => {
      server.closeAllConnections();
      server.close(() => ok());
    }),
);

const target = () => ({ baseUrl, token: "tok", agentId: "agent-1" });
const files = (field: string, over: Partial<InputFiles[string]> = {}): InputFiles => ({
  [field]: { id: ID, content_type: "video/mp4", size: BYTES.length, sha256: SHA, ...over },
});

describe("input files of a lease", () => {
  it("each file is downloaded with the agent's credentials, checked, and its field holds the local path until cleanup", async () => {
    const root = mkdtempSync(join(tmpdir(), "fg-inputs-"));
    const local = await fetchInputs(target(), ref, { prompt: "p", video: ID }, files("video"), root);
    const path = local.input.video as string;
    expect(local.input.prompt).toBe("p");
    expect(path).toBe(join(root, "job_x-3", `${ID}.mp4`));
    expect(readFileSync(path)).toEqual(BYTES);
    expect(seen.at(-1)).toEqual({ url: "/v1/agent/inputs/job_x/3/video", auth: "Bearer tok", agent: "agent-1" });
    await local.cleanup();
    expect(existsSync(path)).toBe(false);
  });

  it("a lease without files keeps its input and downloads nothing", async () => {
    const before = seen.length;
    const input = { prompt: "p" };
    expect((await fetchInputs(target(), ref, input, undefined, tmpdir())).input).toBe(input);
    expect(seen.length).toBe(before);
  });

  it("bytes that are not the lease's size or sha256 fail the attempt, and nothing is left on disk", async () => {
    const root = mkdtempSync(join(tmpdir(), "fg-inputs-"));
    for (const f of [
      files("video", { sha256: "0".repeat(64) }),
      files("video", { size: BYTES.length + 1 }),
      files("long"),
    ]) {
      const err = await fetchInputs(target(), ref, {}, f, root).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InputError);
      expect((err as InputError).stale).toBe(false);
      expect(existsSync(join(root, "job_x-3"))).toBe(false);
    }
  });

  it("a download the edge refuses as stale abandons the lease rather than failing it", async () => {
    const err = await fetchInputs(target(), ref, {}, files("stale"), tmpdir()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).stale).toBe(true);
  });

  it("an edge that cannot be reached fails the attempt as unavailable", async () => {
    const err = await fetchInputs(
      { ...target(), baseUrl: "http://127.0.0.1:1" },
      ref,
      {},
      files("video"),
      tmpdir(),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).stale).toBe(false);
  });

  it("a lease abandoned while its file downloads stops the download and leaves nothing on disk", async () => {
    const root = mkdtempSync(join(tmpdir(), "fg-inputs-"));
    const ctl = new AbortController();
    const pending = fetchInputs(target(), ref, {}, files("slow"), root, ctl.signal).catch((e: unknown) => e);
    // Aborted once the edge has started answering.
    const deadline = Date.now() + 5000;
    while (!seen.some((r) => r.url.endsWith("/slow")) && Date.now() < deadline) {
      await new Promise((r) => setImmediate(r));
    }
    ctl.abort();
    expect(await pending).toBeInstanceOf(InputError);
    expect(existsSync(join(root, "job_x-3"))).toBe(false);
  });
});
