/**
 * Input files in workerd: uploads in parts through the edge into the real local R2 bucket,
 * resumed after a lost connection, owned by their account, capped, typed, deleted with their
 * bytes (on request and past retention), checked at submit and carried in the lease to the
 * agent that holds it, which alone may download them.
 */
import { runInDurableObject } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { FILE_KEYWORD, type FileParts, type FileView } from "../../shared/files.ts";
import { MIN_PART_BYTES } from "../../shared/outputs.ts";
import type { AccountActor } from "../../mesh/index.ts";
import { agentHeaders, leaseOne, sha256Of, welcomed } from "./agent-helpers.ts";
import { call, makeAccount, makeModel, submit } from "./helpers.ts";

type Err = { error: { code: string; message: string } };

/** A model whose input takes a prompt and a video file. */
async function videoModel(): Promise<string> {
  return await makeModel({
    input_schema: {
      type: "object",
      additionalProperties: false,
      required: ["prompt"],
      properties: {
        prompt: { type: "string" },
        video: { type: "string", [FILE_KEYWORD]: true },
      },
    },
  });
}

function bytesOf(n: number, seed = 7): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

async function putPart(key: string, id: string, n: number | string, bytes: Uint8Array<ArrayBuffer>) {
  const res = await exports.default.fetch(
    new Request(`http://edge.test/v1/files/${id}/parts/${n}`, {
      method: "PUT",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/octet-stream" },
      body: bytes,
    }),
  );
  return { status: res.status, body: (await res.json()) as { part_number?: number } & Partial<Err> };
}

async function create(key: string, body: Record<string, unknown>) {
  return await call<FileView & Partial<Err>>("POST", "/v1/files", { key, body });
}

/** Uploads `bytes` as a file in one part and completes it. */
async function upload(key: string, bytes: Uint8Array<ArrayBuffer>, contentType = "video/mp4"): Promise<FileView> {
  const made = await create(key, { name: "clip.mp4", content_type: contentType, size: bytes.length });
  expect(made.status).toBe(201);
  expect((await putPart(key, made.body.id, 1, bytes)).status).toBe(200);
  const done = await call<FileView>("POST", `/v1/files/${made.body.id}/complete`, { key, body: {} });
  expect(done.status).toBe(200);
  return done.body;
}

/** Every key in the bucket under an account's inputs. */
async function stored(accountId: string): Promise<string[]> {
  return (await env.OUTPUTS.list({ prefix: `inputs/${accountId}/` })).objects.map((o) => o.key);
}

describe("input file uploads", () => {
  it("an upload resumed after a lost connection sends only the parts not stored, and completes with the sha256 of its bytes", async () => {
    const a = await makeAccount();
    const bytes = bytesOf(MIN_PART_BYTES + 1000);
    const made = await create(a.key, {
      name: "clip.mp4",
      content_type: "video/mp4",
      size: bytes.length,
      part_bytes: MIN_PART_BYTES,
    });
    expect(made.status).toBe(201);
    expect(made.body).toMatchObject({ status: "uploading", parts: 2, part_bytes: MIN_PART_BYTES, sha256: null });
    expect(made.body.id).toMatch(/^file_[0-9a-z]{16}$/);
    const id = made.body.id;

    // The second part arrives, then the connection is lost.
    expect((await putPart(a.key, id, 2, bytes.slice(MIN_PART_BYTES))).status).toBe(200);
    const parts = await call<FileParts>("GET", `/v1/files/${id}/parts`, { key: a.key });
    expect(parts.body.stored).toEqual([{ part_number: 2, size: 1000 }]);
    const early = await call<Err>("POST", `/v1/files/${id}/complete`, { key: a.key, body: {} });
    expect(early.status).toBe(400);
    expect(early.body.error.code).toBe("invalid_upload");
    expect(early.body.error.message).toContain("1 of 2 parts are not stored (1)");
    expect((await call<FileView>("GET", `/v1/files/${id}`, { key: a.key })).body.status).toBe("uploading");

    // The client resumes: it sends what is missing.
    expect((await putPart(a.key, id, 1, bytes.slice(0, MIN_PART_BYTES))).status).toBe(200);
    const sha = await sha256Of(bytes);
    const done = await call<FileView>("POST", `/v1/files/${id}/complete`, { key: a.key, body: { sha256: sha } });
    expect(done.status).toBe(200);
    expect(done.body).toMatchObject({ id, status: "ready", sha256: sha, size: bytes.length });
    const object = await env.OUTPUTS.get(`inputs/${a.id}/${id}`);
    expect(new Uint8Array(await object!.arrayBuffer())).toEqual(bytes);

    const again = await call<Err>("POST", `/v1/files/${id}/complete`, { key: a.key, body: {} });
    expect(again.status).toBe(409);
    const list = await call<{ files: FileView[] }>("GET", "/v1/files", { key: a.key });
    expect(list.body.files.map((f) => f.id)).toEqual([id]);
  });

  it("bytes that do not hash to the sha256 given are refused, and the file and its bytes go", async () => {
    const a = await makeAccount();
    const made = await create(a.key, { name: "a.png", content_type: "image/png", size: 10 });
    await putPart(a.key, made.body.id, 1, bytesOf(10));
    const bad = await call<Err>("POST", `/v1/files/${made.body.id}/complete`, {
      key: a.key,
      body: { sha256: "0".repeat(64) },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("invalid_upload");
    expect((await call<Err>("GET", `/v1/files/${made.body.id}`, { key: a.key })).status).toBe(404);
    expect(await stored(a.id)).toEqual([]);
  });

  it("a size over the cap, a content type not allowed and bad bodies are refused with their codes before anything is stored", async () => {
    const a = await makeAccount();
    const big = await create(a.key, { name: "x.mp4", content_type: "video/mp4", size: 2 * 1024 ** 3 + 1 });
    expect([big.status, big.body.error?.code]).toEqual([413, "payload_too_large"]);
    const html = await create(a.key, { name: "x.html", content_type: "text/html", size: 10 });
    expect([html.status, html.body.error?.code]).toEqual([415, "unsupported_media_type"]);
    const slash = await create(a.key, { name: "../x.mp4", content_type: "video/mp4", size: 10 });
    expect([slash.status, slash.body.error?.code]).toEqual([400, "invalid_body"]);
    const empty = await create(a.key, { name: "x.mp4", content_type: "video/mp4", size: 0 });
    expect([empty.status, empty.body.error?.code]).toEqual([400, "invalid_body"]);
    const noAuth = await call<Err>("POST", "/v1/files", {
      body: { name: "x.mp4", content_type: "video/mp4", size: 1 },
    });
    expect(noAuth.status).toBe(401);
    expect(await stored(a.id)).toEqual([]);

    const made = await create(a.key, { name: "x.mp4", content_type: "video/mp4", size: 10 });
    const id = made.body.id;
    for (const n of ["0", "10001", "1e2", "x"]) {
      const r = await putPart(a.key, id, n, bytesOf(10));
      expect([n, r.status, r.body.error?.code]).toEqual([n, 400, "bad_request"]);
    }
    expect((await putPart(a.key, id, 2, bytesOf(10))).body.error?.code).toBe("payload_too_large");
    expect((await putPart(a.key, id, 1, bytesOf(11))).body.error?.code).toBe("payload_too_large");
    expect((await putPart(a.key, id, 1, bytesOf(9))).body.error?.code).toBe("invalid_upload");
    const parts = await call<FileParts>("GET", `/v1/files/${id}/parts`, { key: a.key });
    expect(parts.body.stored).toEqual([]);
    for (const bad of ["nope", "file_", "file_0000000000000000"]) {
      const r = await call<Err>("GET", `/v1/files/${bad}`, { key: a.key });
      expect([r.status, r.body.error.code]).toEqual([404, "file_not_found"]);
    }
  });

  it("another account's file id is 404 on every route, and a job naming it is refused at submit", async () => {
    const [a, b] = [await makeAccount(), await makeAccount()];
    const file = await upload(a.key, bytesOf(64));
    const uploading = (await create(a.key, { name: "y.mp4", content_type: "video/mp4", size: 10 })).body.id;
    for (const [method, path, body] of [
      ["GET", `/v1/files/${file.id}`, undefined],
      ["GET", `/v1/files/${file.id}/parts`, undefined],
      ["POST", `/v1/files/${uploading}/complete`, {}],
      ["DELETE", `/v1/files/${file.id}`, undefined],
    ] as const) {
      const r = await call<Err>(method, path, { key: b.key, ...(body ? { body } : {}) });
      expect([path, r.status, r.body.error.code]).toEqual([path, 404, "file_not_found"]);
    }
    expect((await putPart(b.key, uploading, 1, bytesOf(10))).status).toBe(404);
    expect((await call<{ files: FileView[] }>("GET", "/v1/files", { key: b.key })).body.files).toEqual([]);

    const model = await videoModel();
    const theirs = await submit(model, b.key, { prompt: "p", video: file.id });
    expect([theirs.status, (theirs.body as unknown as Err).error.code]).toEqual([404, "file_not_found"]);
    const notReady = await submit(model, a.key, { prompt: "p", video: uploading });
    expect([notReady.status, (notReady.body as unknown as Err).error.code]).toEqual([409, "file_not_ready"]);
    const notAnId = await submit(model, a.key, { prompt: "p", video: "/etc/passwd" });
    expect([notAnId.status, (notAnId.body as unknown as Err).error.code]).toEqual([400, "invalid_input"]);
    const batch = await call<{ jobs: { ok: boolean; error?: { code: string } }[] }>(
      "POST",
      `/v1/models/${model}/jobs/batch`,
      { key: b.key, body: { jobs: [{ input: { prompt: "p" } }, { input: { prompt: "p", video: file.id } }] } },
    );
    expect(batch.body.jobs.map((j) => j.error?.code ?? "ok")).toEqual(["ok", "file_not_found"]);
    // The file is still its owner's, whole.
    expect((await call<FileView>("GET", `/v1/files/${file.id}`, { key: a.key })).body.status).toBe("ready");
  });

  it("deleting a file, or its retention ending, removes its bytes from the bucket", async () => {
    const a = await makeAccount();
    const gone = await upload(a.key, bytesOf(100));
    expect(await stored(a.id)).toEqual([`inputs/${a.id}/${gone.id}`]);
    expect((await call("DELETE", `/v1/files/${gone.id}`, { key: a.key })).status).toBe(204);
    expect(await stored(a.id)).toEqual([]);
    expect((await call<Err>("GET", `/v1/files/${gone.id}`, { key: a.key })).status).toBe(404);
    expect((await call<Err>("DELETE", `/v1/files/${gone.id}`, { key: a.key })).status).toBe(404);

    const kept = await upload(a.key, bytesOf(100, 1));
    const half = (await create(a.key, { name: "h.mp4", content_type: "video/mp4", size: 10 })).body;
    expect(Date.parse(kept.expires_at) - Date.parse(kept.created_at)).toBe(7 * 86400 * 1000);
    const stub = env.ACCOUNT.get(env.ACCOUNT.idFromName(a.id));
    // The sweep the alarm runs, at a clock past retention.
    const swept = await runInDurableObject(stub, (actor: AccountActor) =>
      actor.sweepFiles(Date.parse(half.expires_at) + 1),
    );
    expect(swept).toBe(2);
    expect(await stored(a.id)).toEqual([]);
    expect((await call<Err>("GET", `/v1/files/${kept.id}`, { key: a.key })).status).toBe(404);
    expect((await call<Err>("GET", `/v1/files/${half.id}/parts`, { key: a.key })).status).toBe(404);
    expect(await runInDurableObject(stub, (_: AccountActor, state) => state.storage.getAlarm())).not.toBeNull();
  });
});

describe("input files of a job", () => {
  it("a submit records the file, the lease carries its size and sha256, and only the agent holding the lease downloads it", async () => {
    const a = await makeAccount();
    const model = await videoModel();
    const bytes = bytesOf(300);
    const file = await upload(a.key, bytes);
    const plain = await submit(model, a.key, { prompt: "no file" });
    expect(plain.status).toBe(202);
    const job = await submit(model, a.key, { prompt: "p", video: file.id });
    expect(job.status).toBe(202);

    const holder = await welcomed(model);
    const first = await leaseOne(holder.conn);
    expect(first.job_id).toBe(plain.body.id);
    expect(first).not.toHaveProperty("files");
    const lease = await leaseOne(holder.conn);
    expect(lease.job_id).toBe(job.body.id);
    expect(lease.input).toEqual({ prompt: "p", video: file.id });
    expect(lease.files).toEqual({
      video: { id: file.id, content_type: "video/mp4", size: 300, sha256: await sha256Of(bytes) },
    });

    const path = `/v1/agent/inputs/${lease.job_id}/${lease.epoch}/video`;
    const got = await exports.default.fetch(
      new Request(`http://edge.test${path}`, { headers: agentHeaders({ token: holder.t.token, id: holder.id }) }),
    );
    expect(got.status).toBe(200);
    expect(new Uint8Array(await got.arrayBuffer())).toEqual(bytes);

    const other = await welcomed(model);
    for (const [who, p, code] of [
      [other, path, "stale_lease"],
      [holder, `/v1/agent/inputs/${lease.job_id}/${lease.epoch + 1}/video`, "stale_lease"],
      [holder, `/v1/agent/inputs/${lease.job_id}/${lease.epoch}/prompt`, "file_not_found"],
      [holder, `/v1/agent/inputs/${lease.job_id}/x/video`, "stale_lease"],
    ] as const) {
      const r = await exports.default.fetch(
        new Request(`http://edge.test${p}`, { headers: agentHeaders({ token: who.t.token, id: who.id }) }),
      );
      expect([p, ((await r.json()) as Err).error.code]).toEqual([p, code]);
    }
    const user = await call<Err>("GET", path, { key: a.key });
    expect(user.status).toBe(401);

    // Deleted under the running job: the download says so, and the agent fails the attempt.
    expect((await call("DELETE", `/v1/files/${file.id}`, { key: a.key })).status).toBe(204);
    const gone = await exports.default.fetch(
      new Request(`http://edge.test${path}`, { headers: agentHeaders({ token: holder.t.token, id: holder.id }) }),
    );
    expect([gone.status, ((await gone.json()) as Err).error.code]).toEqual([404, "file_not_found"]);
    holder.conn.ws.close();
    other.conn.ws.close();
  });
});
