/**
 * Outputs end to end inside workerd: what the edge records (only what it stored and hashed for
 * the lease that completes, and what the model requires), how it serves files (never as a page
 * of its own origin), the caps it enforces before storing, and that no byte of a job outlives
 * its attempt's end (unfinished uploads) or its deletion (everything). The bucket is listed to
 * prove it.
 */
import { env, exports } from "cloudflare:workers";
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { SchedulerActor } from "../../mesh/index.ts";
import { parseJobId, schedulerName } from "../../shared/ids.ts";
import { INLINE_PREVIEW_BYTES } from "../../shared/events.ts";
import { DEMO_MODEL_CONFIG } from "../../shared/models.ts";
import { uploadsPrefix, type UploadMarker } from "../../shared/outputs.ts";
import { CLOSE, type LeaseGrant, type OutputRecord, type ToAgent } from "../../shared/wire.ts";
import {
  completeUpload,
  failed,
  leaseOne,
  putPart,
  sha256Of,
  startUpload,
  succeeded,
  uploadOutput,
  welcomed,
  type Conn,
} from "./agent-helpers.ts";
import { call, makeAccount, makeModel, submit } from "./helpers.ts";
import { events, readSse } from "./sse.ts";

const MiB = 1024 * 1024;
type JobRefused = Extract<ToAgent, { type: "job.refused" }>;
const enc = new TextEncoder();

interface Held {
  model: string;
  acct: { id: string; key: string };
  jobId: string;
  conn: Conn;
  agent: { token: string; id: string };
  lease: LeaseGrant;
  ref: { job_id: string; epoch: number };
}

/** A fresh model (with `overrides`), an account's job on it, and an agent holding its lease. */
async function held(overrides: Record<string, unknown> = {}): Promise<Held> {
  const model = await makeModel(overrides);
  const acct = await makeAccount();
  const { body: job } = await submit(model, acct.key);
  const { conn, id, t } = await welcomed(model);
  const lease = await leaseOne(conn);
  expect(lease.job_id).toBe(job.id);
  return {
    model,
    acct,
    jobId: job.id,
    conn,
    agent: { token: t.token, id },
    lease,
    ref: { job_id: job.id, epoch: lease.epoch },
  };
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface View {
  status: string;
  outputs: (Record<string, unknown> & { url?: string })[] | null;
  error: { code: string; message: string } | null;
  attempts: { epoch: number; outcome: string; reason: string | null }[];
}

async function view(h: { jobId: string; acct: { key: string } }): Promise<View> {
  return (await call<View>("GET", `/v1/jobs/${h.jobId}`, { key: h.acct.key })).body;
}

/** Waits until the job's status is one of `statuses`. */
async function settled(h: { jobId: string; acct: { key: string } }, ...statuses: string[]): Promise<View> {
  return await until(`job ${statuses.join("|")}`, async () => {
    const v = await view(h);
    return statuses.includes(v.status) ? v : undefined;
  });
}

function complete(h: Held, outputs: OutputRecord[], ref = h.ref): void {
  h.conn.send(succeeded(ref, outputs));
}

/** Every key under the job's prefixes in the bucket. */
async function keysOf(jobId: string): Promise<string[]> {
  const out: string[] = [];
  for (const prefix of [`outputs/${jobId}/`, `uploads/${jobId}/`]) {
    out.push(...(await env.OUTPUTS.list({ prefix })).objects.map((o) => o.key));
  }
  return out.sort();
}

/** Waits until nothing is left under the job in the bucket. */
async function emptied(jobId: string): Promise<void> {
  await until(`nothing left under ${jobId}`, async () => ((await keysOf(jobId)).length === 0 ? true : undefined));
}

/** The R2 multipart upload behind each marker of an attempt. */
async function openUploads(jobId: string, epoch: number): Promise<{ key: string; uploadId: string }[]> {
  const listed = await env.OUTPUTS.list({ prefix: uploadsPrefix(jobId, epoch), include: ["customMetadata"] });
  return listed.objects.map((o) => {
    const m = o.customMetadata as unknown as UploadMarker;
    return { key: m.key, uploadId: m.upload_id };
  });
}

/** Whether R2 still takes parts for a multipart upload (false once it is aborted or completed). */
async function stillOpen(u: { key: string; uploadId: string }): Promise<boolean> {
  try {
    await env.OUTPUTS.resumeMultipartUpload(u.key, u.uploadId).uploadPart(1, new Uint8Array(4));
    return true;
  } catch {
    return false;
  }
}

/** A record that looks like the edge's but names bytes it never stored. */
function forged(h: Held, name = "image.png"): OutputRecord {
  return {
    name,
    key: `outputs/${h.jobId}/${h.lease.epoch}/${name}`,
    content_type: "image/png",
    size: 1234,
    sha256: "a".repeat(64),
    receipt: "A".repeat(43),
  };
}

/**
 * Leaves what a cleanup that never ran would leave under a job: a stray file and an open
 * multipart upload with its marker, under an epoch of its own.
 */
async function strays(jobId: string): Promise<{ key: string; uploadId: string }> {
  await env.OUTPUTS.put(`outputs/${jobId}/99/stray.json`, "{}");
  const key = `outputs/${jobId}/99/open.json`;
  const upload = await env.OUTPUTS.createMultipartUpload(key);
  await upload.uploadPart(1, new Uint8Array(4));
  const marker: UploadMarker = { upload_id: upload.uploadId, key, size: "4" };
  await env.OUTPUTS.put(`uploads/${jobId}/99/open.json`, null, { customMetadata: { ...marker } });
  return { key, uploadId: upload.uploadId };
}

describe("outputs the edge checks", () => {
  it("a success naming an object never uploaded ends the attempt as invalid_output and is retried; the job never succeeds with a broken URL", async () => {
    const h = await held({ max_attempts: 2 });
    complete(h, [forged(h)]);
    const refused = (await h.conn.next("job.refused")) as JobRefused;
    expect(refused).toMatchObject({ ...h.ref, code: "invalid_output" });
    expect(refused.message).toContain("receipt");
    const requeued = await settled(h, "queued");
    expect(requeued.outputs).toBeNull();
    expect(requeued.attempts).toEqual([expect.objectContaining({ outcome: "failed", reason: "invalid_output" })]);
    // The next attempt fails the same way, and max_attempts ends the job.
    const again = await leaseOne(h.conn);
    complete(h, [forged(h)], { job_id: h.jobId, epoch: again.epoch });
    await h.conn.next("job.refused");
    const ended = await settled(h, "failed");
    expect(ended).toMatchObject({ outputs: null, error: { code: "invalid_output" } });
    h.conn.ws.close(1000, "done");
  });

  it("an upload whose sha256 is not what was stored is refused with invalid_upload, and nothing of it is kept", async () => {
    const h = await held();
    const bytes = enc.encode("the real bytes");
    const started = await startUpload(h.agent, h.ref, {
      name: "a.txt",
      content_type: "text/plain",
      size: bytes.length,
    });
    expect(started.status).toBe(201);
    const part = await putPart(h.agent, started.body, 1, bytes);
    const wrong = await sha256Of(enc.encode("other bytes"));
    const done = await completeUpload(
      h.agent,
      started.body,
      [{ part_number: 1, etag: part.etag ?? "" }],
      bytes.length,
      wrong,
    );
    expect(done.status).toBe(400);
    expect(done.body.error?.code).toBe("invalid_upload");
    expect(await keysOf(h.jobId)).toEqual([]);
    // The name is free again: the same output, announced right, is taken.
    const record = await uploadOutput(h.agent, h.ref, "a.txt", "text/plain", bytes);
    expect(record).toMatchObject({ size: bytes.length, sha256: await sha256Of(bytes) });
    h.conn.ws.close(1000, "done");
  });

  it("a success with no outputs, or without a required one, fails the attempt on a model that requires them", async () => {
    // The built-in models' section: animation.gif, last.png and params.json are required.
    const h = await held({ max_attempts: 1, outputs: DEMO_MODEL_CONFIG.outputs });
    complete(h, []);
    expect(await h.conn.next("job.refused")).toMatchObject({ ...h.ref, code: "invalid_output" });
    expect(await settled(h, "failed")).toMatchObject({ outputs: null, error: { code: "invalid_output" } });
    h.conn.ws.close(1000, "done");

    const partial = await held({ max_attempts: 1, outputs: DEMO_MODEL_CONFIG.outputs });
    const gif = await uploadOutput(partial.agent, partial.ref, "animation.gif", "image/gif", enc.encode("GIF89a"));
    const params = await uploadOutput(partial.agent, partial.ref, "params.json", "application/json", enc.encode("{}"));
    complete(partial, [gif, params]);
    const refused = (await partial.conn.next("job.refused")) as JobRefused;
    expect(refused.message).toContain("last.png");
    expect(await settled(partial, "failed")).toMatchObject({ error: { code: "invalid_output" } });
    partial.conn.ws.close(1000, "done");

    const least = await held({ max_attempts: 1, outputs: { min: 1 } });
    complete(least, []);
    expect(await least.conn.next("job.refused")).toMatchObject({ code: "invalid_output" });
    least.conn.ws.close(1000, "done");
  });

  it("a size other than the bytes uploaded is refused with invalid_upload, and a part past the announced size with payload_too_large", async () => {
    const h = await held();
    const bytes = enc.encode("twelve bytes");
    const size = bytes.length;
    const start = async (name: string, announced = size) =>
      (await startUpload(h.agent, h.ref, { name, content_type: "text/plain", size: announced })).body;
    // Completing with another size than the start announced.
    const a = await start("a.txt");
    const partA = await putPart(h.agent, a, 1, bytes);
    const doneA = await completeUpload(
      h.agent,
      a,
      [{ part_number: 1, etag: partA.etag ?? "" }],
      size + 1,
      await sha256Of(bytes),
    );
    expect(doneA).toMatchObject({ status: 400, body: { error: { code: "invalid_upload" } } });
    // A part shorter than the announced size implies.
    const b = await start("b.txt", size + 5);
    expect(await putPart(h.agent, b, 1, bytes)).toMatchObject({ status: 400, code: "invalid_upload" });
    // A part longer, or a part past the last one: refused before storage.
    const c = await start("c.txt", size - 2);
    expect(await putPart(h.agent, c, 1, bytes)).toMatchObject({ status: 413, code: "payload_too_large" });
    expect(await putPart(h.agent, c, 2, bytes.subarray(0, 1))).toMatchObject({
      status: 413,
      code: "payload_too_large",
    });
    expect((await env.OUTPUTS.list({ prefix: `outputs/${h.jobId}/` })).objects).toEqual([]);
    h.conn.ws.close(1000, "done");
  });

  it("a success naming another tenant's output, another job's or an earlier attempt's is refused, and its owner gets no URL to it", async () => {
    // Two tenants, two models, two agents of their own pools.
    const mine = await held({ max_attempts: 3 });
    const theirs = await held();
    const secret = enc.encode("account B's file");
    const theirRecord = await uploadOutput(theirs.agent, theirs.ref, "image.png", "image/png", secret);
    complete(mine, [theirRecord]);
    expect(await mine.conn.next("job.refused")).toMatchObject({ ...mine.ref, code: "invalid_output" });
    // The record rewritten to this job's key keeps the other key's receipt: refused too.
    const again = await leaseOne(mine.conn);
    const ref2 = { job_id: mine.jobId, epoch: again.epoch };
    const earlier = await uploadOutput(mine.agent, ref2, "image.png", "image/png", enc.encode("attempt 2"));
    const rekeyed = { ...theirRecord, key: `outputs/${mine.jobId}/${again.epoch}/image.png` };
    complete(mine, [rekeyed], ref2);
    expect(await mine.conn.next("job.refused")).toMatchObject({ ...ref2, code: "invalid_output" });
    // A genuine record of this job's earlier attempt names that attempt's key: refused.
    const third = await leaseOne(mine.conn);
    const ref3 = { job_id: mine.jobId, epoch: third.epoch };
    complete(mine, [earlier], ref3);
    expect(await mine.conn.next("job.refused")).toMatchObject({ ...ref3, code: "invalid_output" });
    const ended = await settled(mine, "failed");
    expect(ended.outputs).toBeNull();
    expect(JSON.stringify(ended)).not.toContain(theirs.jobId);
    // Account B's file is untouched.
    complete(theirs, [theirRecord]);
    const ok = await settled(theirs, "succeeded");
    const file = await exports.default.fetch(new Request(ok.outputs?.[0]?.url ?? ""));
    expect(new Uint8Array(await file.arrayBuffer())).toEqual(secret);
    mine.conn.ws.close(1000, "done");
    theirs.conn.ws.close(1000, "done");
  });

  it("two outputs with one name, or a second upload of a name in one attempt, are refused", async () => {
    const h = await held({ max_attempts: 1 });
    const record = await uploadOutput(h.agent, h.ref, "a.txt", "text/plain", enc.encode("a"));
    const second = await startUpload(h.agent, h.ref, { name: "a.txt", content_type: "text/plain", size: 1 });
    expect(second).toMatchObject({ status: 409, body: { error: { code: "conflict" } } });
    complete(h, [record, record]);
    expect(await h.conn.next("job.refused")).toMatchObject({ code: "invalid_output" });
    h.conn.ws.close(1000, "done");
  });
});

describe("outputs served safely", () => {
  it("html and svg outputs are served as attachments, images inline, every answer with nosniff and a sandboxing CSP", async () => {
    const h = await held({ outputs: { content_types: ["text/html", "image/svg+xml", "image/png"] } });
    const records = [
      await uploadOutput(h.agent, h.ref, "page.html", "text/html", enc.encode("<script>alert(1)</script>")),
      await uploadOutput(h.agent, h.ref, "logo.svg", "image/svg+xml", enc.encode("<svg onload='alert(1)'/>")),
      await uploadOutput(h.agent, h.ref, "pic.png", "image/png", new Uint8Array([137, 80, 78, 71])),
    ];
    complete(h, records);
    const done = await settled(h, "succeeded");
    const answers = new Map<string, Headers>();
    for (const o of done.outputs ?? []) {
      const res = await exports.default.fetch(new Request(o.url ?? ""));
      await res.body?.cancel();
      expect(res.status).toBe(200);
      answers.set(String(o.name), res.headers);
    }
    for (const headers of answers.values()) {
      expect(headers.get("x-content-type-options")).toBe("nosniff");
      expect(headers.get("content-security-policy")).toBe("default-src 'none'; sandbox");
    }
    expect(answers.get("page.html")?.get("content-disposition")).toBe('attachment; filename="page.html"');
    expect(answers.get("logo.svg")?.get("content-disposition")).toBe('attachment; filename="logo.svg"');
    expect(answers.get("pic.png")?.get("content-disposition")).toBe('inline; filename="pic.png"');
    // Refusals from the file routes carry them too.
    const bad = await exports.default.fetch(new Request(`http://edge.test/v1/files/${records[0]?.key}?exp=1&sig=x`));
    expect(bad.status).toBe(403);
    expect(bad.headers.get("x-content-type-options")).toBe("nosniff");
    expect(bad.headers.get("content-security-policy")).toBe("default-src 'none'; sandbox");
    h.conn.ws.close(1000, "done");
  });

  it("a preview's signed URL is answered as an inline image with nosniff and the sandboxing CSP; a preview of any other type closes its agent's connection", async () => {
    const h = await held();
    const reading = readSse(await events(h.jobId, h.acct.key), (e) => e.event === "preview" && "url" in e.data);
    const frame = { v: 2, type: "job.preview", trace: "t", ...h.ref, content_type: "image/png" } as const;
    // Sent until the job actor's watch reaches the agent's actor (previews before it go nowhere).
    const seen = new AbortController();
    const sending = (async () => {
      while (!seen.signal.aborted) {
        h.conn.send({ ...frame, data: new Uint8Array(INLINE_PREVIEW_BYTES + 1) });
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const shown = await reading.finally(() => seen.abort());
    await sending;
    const url = String(shown.at(-1)?.data.url);
    const res = await exports.default.fetch(new Request(url));
    expect(res.status).toBe(200);
    expect((await res.arrayBuffer()).byteLength).toBe(INLINE_PREVIEW_BYTES + 1);
    expect(Object.fromEntries(res.headers)).toMatchObject({
      "content-type": "image/png",
      "content-disposition": `inline; filename="${h.jobId}-preview"`,
      "x-content-type-options": "nosniff",
      "content-security-policy": "default-src 'none'; sandbox",
    });
    h.conn.send({ ...frame, content_type: "text/html" as "image/png", data: enc.encode("<script>alert(1)</script>") });
    expect((await h.conn.closed).code).toBe(CLOSE.malformed);
  });

  it("without an allow-list of its own a model's outputs may not be html or svg: 415 at upload start, nothing stored", async () => {
    const h = await held();
    for (const content_type of ["text/html", "image/svg+xml", "application/xhtml+xml", "Text/HTML; charset=utf-8"]) {
      const r = await startUpload(h.agent, h.ref, { name: "x.out", content_type, size: 10 });
      expect(r).toMatchObject({ status: 415, body: { error: { code: "unsupported_media_type" } } });
    }
    expect(await keysOf(h.jobId)).toEqual([]);
    h.conn.ws.close(1000, "done");
  });

  it("an upload over the model's per-output or per-attempt cap is refused before anything is stored", async () => {
    const h = await held({ outputs: { max_bytes: 1000, max_job_bytes: 1500 } });
    const start = (name: string, size: number) =>
      startUpload(h.agent, h.ref, { name, content_type: "application/json", size });
    expect(await start("big.json", 1001)).toMatchObject({
      status: 413,
      body: { error: { code: "payload_too_large" } },
    });
    expect(await keysOf(h.jobId)).toEqual([]);
    expect((await start("a.json", 1000)).status).toBe(201);
    expect(await start("b.json", 501)).toMatchObject({ status: 413, body: { error: { code: "payload_too_large" } } });
    expect((await start("c.json", 500)).status).toBe(201);
    // Only the two taken uploads left markers, and no byte is stored yet.
    expect(await keysOf(h.jobId)).toEqual([
      `uploads/${h.jobId}/${h.lease.epoch}/a.json`,
      `uploads/${h.jobId}/${h.lease.epoch}/c.json`,
    ]);
    h.conn.ws.close(1000, "done");
  });

  it("a large output goes up in parts of the size the start answered, each checked against the announced size", async () => {
    const h = await held();
    const bytes = new Uint8Array(5 * MiB + 3).map((_, i) => i % 251);
    const started = await startUpload(h.agent, h.ref, {
      name: "big.bin.json",
      content_type: "application/json",
      size: bytes.length,
      part_bytes: 5 * MiB,
    });
    expect(started.body.part_bytes).toBe(5 * MiB);
    const p1 = await putPart(h.agent, started.body, 1, bytes.subarray(0, 5 * MiB));
    const p2 = await putPart(h.agent, started.body, 2, bytes.subarray(5 * MiB));
    const done = await completeUpload(
      h.agent,
      started.body,
      [
        { part_number: 1, etag: p1.etag ?? "" },
        { part_number: 2, etag: p2.etag ?? "" },
      ],
      bytes.length,
      await sha256Of(bytes),
    );
    expect(done).toMatchObject({ status: 200, body: { size: bytes.length, sha256: await sha256Of(bytes) } });
    h.conn.ws.close(1000, "done");
  });
});

describe("bytes gone", () => {
  it("an upload left unfinished is aborted when its attempt ends, and a failed attempt's files are deleted", async () => {
    const h = await held({ max_attempts: 2 });
    await uploadOutput(h.agent, h.ref, "done.txt", "text/plain", enc.encode("finished"));
    const started = await startUpload(h.agent, h.ref, { name: "open.txt", content_type: "text/plain", size: 4 });
    await putPart(h.agent, started.body, 1, new Uint8Array(4));
    const [open] = (await openUploads(h.jobId, h.lease.epoch)).filter((u) => u.key.endsWith("open.txt"));
    if (!open) throw new Error("no marker for the open upload");
    expect(await stillOpen(open)).toBe(true);
    h.conn.send(failed(h.ref, "oom", "x"));
    await settled(h, "queued");
    await emptied(h.jobId);
    expect(await stillOpen(open)).toBe(false);
    h.conn.ws.close(1000, "done");
  });

  it("a successful attempt keeps its outputs while the uploads it left unfinished are aborted", async () => {
    const h = await held();
    const record = await uploadOutput(h.agent, h.ref, "done.txt", "text/plain", enc.encode("finished"));
    const started = await startUpload(h.agent, h.ref, { name: "open.txt", content_type: "text/plain", size: 4 });
    await putPart(h.agent, started.body, 1, new Uint8Array(4));
    const [open] = (await openUploads(h.jobId, h.lease.epoch)).filter((u) => u.key.endsWith("open.txt"));
    if (!open) throw new Error("no marker for the open upload");
    complete(h, [record]);
    await settled(h, "succeeded");
    await until("the markers gone", async () =>
      (await keysOf(h.jobId)).every((k) => k.startsWith("outputs/")) ? true : undefined,
    );
    expect(await keysOf(h.jobId)).toEqual([record.key]);
    expect(await stillOpen(open)).toBe(false);
    h.conn.ws.close(1000, "done");
  });

  it("DELETE of a cancelled job with uploads leaves no object under it, finished or not", async () => {
    const h = await held();
    await uploadOutput(h.agent, h.ref, "done.txt", "text/plain", enc.encode("finished"));
    const started = await startUpload(h.agent, h.ref, { name: "open.txt", content_type: "text/plain", size: 4 });
    await putPart(h.agent, started.body, 1, new Uint8Array(4));
    const open = await strays(h.jobId);
    expect((await call("POST", `/v1/jobs/${h.jobId}/cancel`, { key: h.acct.key })).status).toBe(200);
    expect((await call("DELETE", `/v1/jobs/${h.jobId}`, { key: h.acct.key })).status).toBe(204);
    await emptied(h.jobId);
    expect(await stillOpen(open)).toBe(false);
    h.conn.ws.close(1000, "done");
  });

  it("DELETE of a failed job with uploads leaves no object under it", async () => {
    const h = await held({ max_attempts: 1 });
    await uploadOutput(h.agent, h.ref, "done.txt", "text/plain", enc.encode("finished"));
    const open = await strays(h.jobId);
    h.conn.send(failed(h.ref, "model_error", "x"));
    await settled(h, "failed");
    expect((await call("DELETE", `/v1/jobs/${h.jobId}`, { key: h.acct.key })).status).toBe(204);
    await emptied(h.jobId);
    expect(await stillOpen(open)).toBe(false);
    h.conn.ws.close(1000, "done");
  });

  it("retention removes every object under a job the same way", async () => {
    const h = await held({ retention_s: 60 });
    const record = await uploadOutput(h.agent, h.ref, "done.txt", "text/plain", enc.encode("finished"));
    complete(h, [record]);
    await settled(h, "succeeded");
    const open = await strays(h.jobId);
    const route = parseJobId(h.jobId);
    if (!route) throw new Error("bad job id");
    const stub = env.SCHEDULER.get(env.SCHEDULER.idFromName(schedulerName(route)));
    // As if the retention time had gone by since the job finished.
    await runInDurableObject<SchedulerActor, void>(stub, (_i, state) => {
      state.storage.sql.exec("UPDATE jobs SET finished_at = ? WHERE id = ?", Date.now() - 61_000, h.jobId);
    });
    await evictDurableObject(stub);
    await stub.stats();
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect((await call("GET", `/v1/jobs/${h.jobId}`, { key: h.acct.key })).status).toBe(404);
    await emptied(h.jobId);
    expect(await stillOpen(open)).toBe(false);
    h.conn.ws.close(1000, "done");
  });
});

describe("signed URLs and deleted jobs", () => {
  it("the Host a request names never sets the origin of signed URLs, for reads, lists or event streams", async () => {
    const h = await held();
    const record = await uploadOutput(h.agent, h.ref, "pic.png", "image/png", new Uint8Array([137, 80, 78, 71]));
    complete(h, [record]);
    await settled(h, "succeeded");
    const evil = { authorization: `Bearer ${h.acct.key}`, host: "evil.example" };
    const read = await exports.default.fetch(new Request(`http://evil.example/v1/jobs/${h.jobId}`, { headers: evil }));
    const one = (await read.json()) as View;
    expect(one.outputs?.[0]?.url).toMatch(/^http:\/\/edge\.test\/v1\/files\/outputs\//);
    const list = await exports.default.fetch(new Request("http://evil.example/v1/jobs?limit=5", { headers: evil }));
    const listed = ((await list.json()) as { jobs: View[] }).jobs.find((j) => j.outputs !== null);
    expect(listed?.outputs?.[0]?.url).toMatch(/^http:\/\/edge\.test\//);
    // Two subscribers from two hosts: each stream's URLs start with the public origin.
    for (const host of ["evil.example", "other.example"]) {
      const res = await exports.default.fetch(
        new Request(`http://${host}/v1/jobs/${h.jobId}/events`, { headers: { ...evil, host } }),
      );
      const text = await res.text();
      const done = /event: succeeded\ndata: (.*)\n/.exec(text)?.[1];
      const urls = (JSON.parse(done ?? "{}") as { outputs?: { url: string }[] }).outputs?.map((o) => o.url);
      expect(urls).toEqual([expect.stringMatching(/^http:\/\/edge\.test\/v1\/files\//)]);
    }
    h.conn.ws.close(1000, "done");
  });

  it("a deleted job's Idempotency-Key is answered 409 idempotency_conflict, the job stays deleted, and /openapi.json says so", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const key = { "idempotency-key": `idem-${Date.now()}` };
    const first = await submit(model, acct.key, { prompt: "once" }, key);
    expect(first.status).toBe(202);
    expect((await call("POST", `/v1/jobs/${first.body.id}/cancel`, { key: acct.key })).status).toBe(200);
    expect((await call("DELETE", `/v1/jobs/${first.body.id}`, { key: acct.key })).status).toBe(204);
    const again = await submit(model, acct.key, { prompt: "once" }, key);
    expect(again).toMatchObject({ status: 409, body: { error: { code: "idempotency_conflict" } } });
    expect((await call("GET", `/v1/jobs/${first.body.id}`, { key: acct.key })).status).toBe(404);
    const batch = await call<{ jobs: { ok: boolean; error?: { code: string } }[] }>(
      "POST",
      `/v1/models/${model}/jobs/batch`,
      { key: acct.key, body: { jobs: [{ input: { prompt: "once" }, idempotency_key: key["idempotency-key"] }] } },
    );
    expect(batch.body.jobs).toEqual([{ ok: false, error: expect.objectContaining({ code: "idempotency_conflict" }) }]);
    // A new key makes a new job.
    const fresh = await submit(
      model,
      acct.key,
      { prompt: "once" },
      { "idempotency-key": `${key["idempotency-key"]}-2` },
    );
    expect(fresh.status).toBe(202);
    expect(fresh.body.id).not.toBe(first.body.id);
    // The API's own description says so.
    const doc = await call<{
      paths: Record<string, { post?: { responses: Record<string, { description: string }> } }>;
    }>("GET", "/openapi.json");
    expect(doc.body.paths["/v1/models/{model}/jobs"]?.post?.responses["409"]?.description).toMatch(/deleted/);
  });
});
