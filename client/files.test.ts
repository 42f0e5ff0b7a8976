import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { FileView } from "../shared/files.ts";
import { MIN_PART_BYTES } from "../shared/outputs.ts";
import { json, startServer, type Recorded, type TestServer } from "../test/support/http-server.ts";
import { createClient } from "./client.ts";
import { FloodgateClientError } from "./errors.ts";
import { localFile } from "./files.ts";

const ID = "file_0123456789abcdef";

function view(size: number, over: Partial<FileView> = {}): FileView {
  return {
    id: ID,
    name: "clip.mp4",
    content_type: "video/mp4",
    size,
    status: "uploading",
    sha256: null,
    part_bytes: MIN_PART_BYTES,
    parts: Math.ceil(size / MIN_PART_BYTES),
    created_at: "2026-01-01T00:00:00.000Z",
    expires_at: "2026-01-08T00:00:00.000Z",
    ...over,
  };
}

/** A stand-in for the edge's file routes: records each request, answers as the edge does. */
function edge(size: number, stored: number[] = []) {
  return (req: Recorded, res: Parameters<Parameters<typeof startServer>[0]>[1]) => {
    if (req.method === "POST" && req.path === "/v1/files") return json(res, 201, view(size));
    if (req.method === "GET" && req.path === `/v1/files/${ID}`) return json(res, 200, view(size));
    if (req.method === "GET" && req.path === `/v1/files/${ID}/parts`) {
      const parts = Math.ceil(size / MIN_PART_BYTES);
      const list = stored.map((n) => ({ part_number: n, size: 1 }));
      return json(res, 200, { id: ID, status: "uploading", part_bytes: MIN_PART_BYTES, parts, stored: list });
    }
    if (req.method === "PUT") return json(res, 200, { part_number: 1, size: 1 });
    if (req.path.endsWith("/complete")) return json(res, 200, view(size, { status: "ready", sha256: "a".repeat(64) }));
    if (req.method === "POST" && req.path === "/v1/models/demo/jobs") {
      return json(res, 202, { id: "job_x", status: "queued", model: "demo", tier: "plus", created_at: "x" });
    }
    return json(res, 404, { error: { code: "not_found", message: req.path } });
  };
}

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe("input files in the SDK", () => {
  it("a submit uploads a Blob input in parts, reports progress, and sends the file id in its place", async () => {
    const size = MIN_PART_BYTES + 10;
    server = await startServer(edge(size));
    const fg = createClient({ url: server.url, apiKey: "fgk_a.b.c" });
    const seen: number[] = [];
    const blob = new Blob([new Uint8Array(size).fill(7)], { type: "video/mp4" });
    await fg.jobs.submit("demo", { prompt: "snow", video: blob }, { onUploadProgress: (p) => seen.push(p.sent) });
    const calls = server.requests.map((r) => `${r.method} ${r.path}`);
    expect(calls).toEqual([
      "POST /v1/files",
      `PUT /v1/files/${ID}/parts/1`,
      `PUT /v1/files/${ID}/parts/2`,
      `POST /v1/files/${ID}/complete`,
      "POST /v1/models/demo/jobs",
    ]);
    expect(JSON.parse(server.requests[0]!.body)).toMatchObject({ content_type: "video/mp4", size });
    expect(JSON.parse(server.requests[4]!.body)).toEqual({ input: { prompt: "snow", video: ID } });
    expect(seen).toEqual([MIN_PART_BYTES, size]);
  });

  it("a submit without files makes no file request", async () => {
    server = await startServer(edge(1));
    const fg = createClient({ url: server.url, apiKey: "fgk_a.b.c" });
    await fg.jobs.submit("demo", { prompt: "snow" });
    expect(server.requests.map((r) => r.path)).toEqual(["/v1/models/demo/jobs"]);
  });

  it("a resumed upload sends only the parts the edge has not stored", async () => {
    const size = 2 * MIN_PART_BYTES + 10;
    server = await startServer(edge(size, [1, 3]));
    const fg = createClient({ url: server.url, apiKey: "fgk_a.b.c" });
    const dir = mkdtempSync(join(tmpdir(), "fg-files-"));
    writeFileSync(join(dir, "clip.mp4"), new Uint8Array(size));
    const file = await fg.files.upload(localFile(join(dir, "clip.mp4")), { resume: ID });
    expect(file.status).toBe("ready");
    expect(server.requests.filter((r) => r.method === "PUT").map((r) => r.path)).toEqual([`/v1/files/${ID}/parts/2`]);
  });

  it("a missing path, an empty file or a type inputs may not have is refused before anything is sent", async () => {
    server = await startServer(edge(1));
    const fg = createClient({ url: server.url, apiKey: "fgk_a.b.c" });
    const dir = mkdtempSync(join(tmpdir(), "fg-files-"));
    writeFileSync(join(dir, "notes.txt"), "x");
    for (const source of [
      localFile(join(dir, "missing.mp4")),
      localFile(join(dir, "notes.txt")),
      new Blob([], { type: "video/mp4" }),
    ]) {
      expect(await fg.files.upload(source).catch((e: unknown) => e)).toBeInstanceOf(FloodgateClientError);
    }
    expect(server.requests).toEqual([]);
  });
});
