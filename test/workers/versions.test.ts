/**
 * The model repository in workerd: pushes, pieces in the real local R2 bucket, commits, and what
 * agents may read. Each test pushes under a model name of its own.
 */
import { env, exports } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { sha256Hex } from "../../shared/keys.ts";
import {
  PIECE_BYTES,
  versionDigest,
  type VersionFile,
  type VersionPush,
  type VersionRecord,
} from "../../shared/repository.ts";
import { pieceKey, type Remote, type VersionsActor } from "../../mesh/index.ts";
import { agentId, token } from "./agent-helpers.ts";
import { ADMIN, call, unique } from "./helpers.ts";

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

async function sha(bytes: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** A file of a version, cut into pieces of `PIECE_BYTES`, and the pieces' bytes by sha256. */
async function file(path: string, bytes: Uint8Array): Promise<{ file: VersionFile; pieces: Map<string, Uint8Array> }> {
  const pieces = new Map<string, Uint8Array>();
  const names: string[] = [];
  for (let at = 0; at < bytes.length; at += PIECE_BYTES) {
    const piece = bytes.subarray(at, at + PIECE_BYTES);
    const name = await sha(piece);
    pieces.set(name, piece);
    names.push(name);
  }
  return { file: { path, size: bytes.length, sha256: await sha(bytes), pieces: names }, pieces };
}

interface Version {
  model: string;
  push: VersionPush;
  pieces: Map<string, Uint8Array>;
}

/** A version of a fresh model (or `model`) with these files. */
async function version(
  files: Record<string, string | Uint8Array>,
  opts: { model?: string; version?: string } = {},
): Promise<Version> {
  const model = opts.model ?? unique("repo");
  const pieces = new Map<string, Uint8Array>();
  const list: VersionFile[] = [];
  for (const [path, content] of Object.entries(files)) {
    const f = await file(path, typeof content === "string" ? enc(content) : content);
    list.push(f.file);
    for (const [k, v] of f.pieces) pieces.set(k, v);
  }
  const push: VersionPush = {
    manifest: {
      format: 1,
      model,
      version: opts.version ?? "2026-12-06.1",
      runner: "demo",
      input_schema: { type: "object" },
      resources: { gpus: 0, vram_gib: 0 },
      max_batch: 2,
      expected_runtime_s: 3,
      config: {},
    },
    piece_bytes: PIECE_BYTES,
    files: list,
  };
  return { model, push, pieces };
}

type PushAnswer = { version: VersionRecord; missing: string[] };
type Refusal = { error: { code: string; message: string } };

const pushIt = (v: Version) =>
  call<PushAnswer & Refusal>("POST", `/v1/admin/models/${v.model}/versions`, { key: ADMIN, body: v.push });
const commit = (v: Version) =>
  call<VersionRecord & Refusal>("POST", `/v1/admin/models/${v.model}/versions/${v.push.manifest.version}/commit`, {
    key: ADMIN,
  });

async function putPiece(name: string, bytes: Uint8Array, key = ADMIN) {
  const res = await exports.default.fetch(
    new Request(`http://edge.test/v1/admin/pieces/${name}`, {
      method: "PUT",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/octet-stream" },
      body: bytes,
    }),
  );
  return { status: res.status, body: (await res.json()) as { sha256: string; size: number } & Refusal };
}

/** Pushes (again, if it was), stores every piece and commits: a ready version. */
async function ready(v: Version): Promise<VersionRecord> {
  expect([200, 201]).toContain((await pushIt(v)).status);
  for (const [name, bytes] of v.pieces) expect((await putPiece(name, bytes)).status).toBeLessThan(300);
  const c = await commit(v);
  expect(c.status).toBe(200);
  return c.body;
}

async function agentGet(path: string, tok: string): Promise<Response> {
  return await exports.default.fetch(
    new Request(`http://edge.test${path}`, {
      headers: { authorization: `Bearer ${tok}`, "x-floodgate-agent": agentId() },
    }),
  );
}

async function code(res: Response): Promise<string> {
  return `${res.status} ${((await res.json()) as Refusal).error.code}`;
}

/** The tables inside a model's versions actor (none for one that never wrote). */
async function tablesOf(model: string): Promise<string[]> {
  const stub = env.VERSIONS.get(env.VERSIONS.idFromName(model));
  return await runInDurableObject(stub, (_i, state) =>
    state.storage.sql
      .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '_cf_%'")
      .toArray()
      .map((t) => t.name),
  );
}

describe("pushing a version", () => {
  it("a push answers the pieces the store lacks; the commit is refused while any is missing, then makes the version ready", async () => {
    const shared = "shared bytes";
    const v = await version({ "a.txt": shared, "dir/b.txt": "other bytes", "dir/c.txt": shared, "empty.bin": "" });
    const first = await pushIt(v);
    expect(first.status).toBe(201);
    expect(first.body.version).toMatchObject({ state: "pending", digest: await versionDigest(v.push), bytes: 35 });
    expect(first.body.missing.sort()).toEqual([...v.pieces.keys()].sort());
    expect(first.body.missing).toHaveLength(2);

    const [one, two] = [...v.pieces];
    expect((await putPiece(one![0], one![1])).status).toBe(201);
    const early = await commit(v);
    expect(early.status).toBe(409);
    expect(early.body.error.code).toBe("pieces_missing");
    expect(early.body.error.message).toMatch(/^1 of version 2026-12-06\.1's 2 pieces are not in the store/);

    const again = await pushIt(v);
    expect(again.status).toBe(200);
    expect(again.body.missing).toEqual([two![0]]);
    expect((await putPiece(two![0], two![1])).body).toEqual({ sha256: two![0], size: two![1].length });

    const done = await commit(v);
    expect(done.status).toBe(200);
    expect(done.body).toMatchObject({ state: "ready", files: v.push.files, manifest: v.push.manifest });
    expect(
      await versionDigest({ manifest: done.body.manifest, piece_bytes: done.body.piece_bytes, files: done.body.files }),
    ).toBe(done.body.digest);
    // Committing a ready version again answers it as it is.
    expect((await commit(v)).body).toEqual(done.body);
  });

  it("the same push of a ready version again is 200 with nothing missing, and the record is unchanged", async () => {
    const v = await version({ "w.bin": "weights" });
    const record = await ready(v);
    const again = await pushIt(v);
    expect(again.status).toBe(200);
    expect(again.body).toEqual({ version: record, missing: [] });
  });

  it("the same model and version with another digest is 409 version_conflict, pending or ready", async () => {
    const v = await version({ "w.bin": "weights" });
    expect((await pushIt(v)).status).toBe(201);
    const other = await version({ "w.bin": "other weights" }, { model: v.model });
    const pending = await pushIt(other);
    expect(pending.status).toBe(409);
    expect(pending.body.error.code).toBe("version_conflict");
    expect(pending.body.error.message).toMatch(/exists \(pending, digest [0-9a-f]{64}\) with other content/);
    await ready(await version({ "w.bin": "weights" }, { model: v.model, version: "2" }));
    const onReady = await pushIt(await version({ "w.bin": "changed" }, { model: v.model, version: "2" }));
    expect(`${onReady.status} ${onReady.body.error.code}`).toBe("409 version_conflict");
  });

  it("a piece another model's version stored is not asked for again: the store is content-addressed", async () => {
    const a = await version({ "w.bin": "the same big checkpoint" });
    await ready(a);
    const b = await version({ "w.bin": "the same big checkpoint", "extra.txt": "new" });
    const answer = await pushIt(b);
    expect(answer.body.missing).toEqual([await sha(enc("new"))]);
  });

  it("created_by is the admin key's fingerprint; the key is neither answered nor stored", async () => {
    const v = await version({ "w.bin": "x" });
    const r = await pushIt(v);
    expect(r.body.version.created_by).toBe(`admin:${(await sha256Hex(ADMIN)).slice(0, 8)}`);
    expect(JSON.stringify(r.body)).not.toContain(ADMIN);
    const stored = await runInDurableObject(env.VERSIONS.get(env.VERSIONS.idFromName(v.model)), (_i, state) =>
      JSON.stringify(state.storage.sql.exec("SELECT * FROM versions").toArray()),
    );
    expect(stored).toContain(r.body.version.created_by);
    expect(stored).not.toContain(ADMIN);
  });

  it("a manifest naming another model than the path is 400 invalid_body naming the field", async () => {
    const v = await version({ "w.bin": "x" });
    const r = await call<Refusal>("POST", `/v1/admin/models/${unique("other")}/versions`, { key: ADMIN, body: v.push });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ code: "invalid_body" });
    expect(r.body.error.message).toMatch(/^body\.manifest\.model: /);
  });

  it("a file list that puts another size on a stored piece is refused at the push, and writes nothing", async () => {
    const bytes = enc("hello");
    const name = await sha(bytes);
    expect((await putPiece(name, bytes)).status).toBeLessThan(300);
    const v = await version({});
    v.push.files = [{ path: "w.bin", size: 6, sha256: "0".repeat(64), pieces: [name] }];
    const r = await pushIt(v);
    expect(r.status).toBe(400);
    expect(r.body.error.message).toMatch(/stored with 5 bytes, but the version's file list puts 6 bytes there/);
    expect(await tablesOf(v.model)).toEqual([]);
  });

  it("lists a model's versions newest first without file lists, and every model's at /v1/admin/versions", async () => {
    const v1 = await version({ "w.bin": "one" }, { version: "1" });
    await ready(v1);
    const v2 = await version({ "w.bin": "two", "x.bin": "three" }, { model: v1.model, version: "2" });
    await pushIt(v2);
    const list = await call<{ versions: Record<string, unknown>[] }>("GET", `/v1/admin/models/${v1.model}/versions`, {
      key: ADMIN,
    });
    expect(list.body.versions.map((x) => [x.version, x.state, x.pieces, x.bytes])).toEqual([
      ["2", "pending", 2, 8],
      ["1", "ready", 1, 3],
    ]);
    expect(Object.keys(list.body.versions[0] ?? {}).sort()).toEqual(
      ["bytes", "created_at", "created_by", "digest", "model", "pieces", "state", "version"].sort(),
    );
    const all = await call<{ versions: { model: string }[] }>("GET", "/v1/admin/versions", { key: ADMIN });
    expect(all.body.versions.filter((x) => x.model === v1.model)).toHaveLength(2);
    const read = await call<VersionRecord>("GET", `/v1/admin/models/${v1.model}/versions/2`, { key: ADMIN });
    expect(read.body).toMatchObject({ state: "pending", files: v2.push.files });
  });
});

describe("pieces", () => {
  it("a piece is stored while hashed; bytes that do not hash to its name are 400 invalid_upload and nothing is kept", async () => {
    const bytes = enc(`piece ${crypto.randomUUID()}`);
    const name = await sha(bytes);
    const wrong = await putPiece(name, enc("something else entirely"));
    expect(wrong.status).toBe(400);
    expect(wrong.body.error.code).toBe("invalid_upload");
    expect(wrong.body.error.message).toMatch(/^the bytes hash to [0-9a-f]{64}, not /);
    expect(await env.WEIGHTS.head(pieceKey(name))).toBeNull();

    const right = await putPiece(name, bytes);
    expect(right).toEqual({ status: 201, body: { sha256: name, size: bytes.length } });
    const stored = await env.WEIGHTS.get(pieceKey(name));
    expect(new Uint8Array((await stored?.arrayBuffer()) ?? new ArrayBuffer(0))).toEqual(bytes);
    expect((await putPiece(name, bytes)).status).toBe(200);
  });

  it("a full 8 MiB piece is stored; one byte more is 413 payload_too_large", async () => {
    const bytes = new Uint8Array(PIECE_BYTES).fill(7);
    const name = await sha(bytes);
    expect((await putPiece(name, bytes)).body).toEqual({ sha256: name, size: PIECE_BYTES });
    const over = new Uint8Array(PIECE_BYTES + 1).fill(7);
    const refused = await putPiece(await sha(over), over);
    expect(`${refused.status} ${refused.body.error.code}`).toBe("413 payload_too_large");
    expect(await env.WEIGHTS.head(pieceKey(await sha(over)))).toBeNull();
  });

  it("a piece name that is not a sha256 is 400 invalid_query; a user of no admin key is refused", async () => {
    expect((await putPiece("xyz", enc("x"))).status).toBe(400);
    const bytes = enc("x");
    expect((await putPiece(await sha(bytes), bytes, "not-the-admin-key")).status).toBe(401);
  });
});

describe("what agents may read", () => {
  it("an agent whose token names the model reads a ready version and its pieces; any other token gets 404", async () => {
    const v = await version({ "w.bin": "agent weights", "cfg.json": "{}" });
    const record = await ready(v);
    const mine = (await token([v.model])).token;
    const theirs = (await token([unique("elsewhere")])).token;
    const [name, bytes] = [...v.pieces][0]!;
    const path = `/v1/agent/versions/${v.model}/${v.push.manifest.version}`;
    const piecePath = `/v1/agent/pieces/${name}?model=${v.model}&version=${v.push.manifest.version}`;

    const got = await agentGet(path, mine);
    expect(got.status).toBe(200);
    expect(await got.json()).toEqual(record);
    const piece = await agentGet(piecePath, mine);
    expect(piece.status).toBe(200);
    expect(piece.headers.get("content-type")).toBe("application/octet-stream");
    expect(piece.headers.get("content-length")).toBe(String(bytes.length));
    expect(new Uint8Array(await piece.arrayBuffer())).toEqual(bytes);

    expect(await code(await agentGet(path, theirs))).toBe("404 version_not_found");
    expect(await code(await agentGet(piecePath, theirs))).toBe("404 not_found");
  });

  it("a piece not in the named version, or of a version not yet ready, is 404", async () => {
    const a = await version({ "w.bin": "version a" });
    await ready(a);
    const b = await version({ "w.bin": "version b" }, { model: a.model, version: "b" });
    await pushIt(b);
    for (const [name, bytes] of b.pieces) await putPiece(name, bytes);
    const tok = (await token([a.model])).token;
    const [bPiece] = [...b.pieces.keys()];
    // b's piece is stored, but named under a's version; and b is not committed.
    expect(
      await code(await agentGet(`/v1/agent/pieces/${bPiece}?model=${a.model}&version=${a.push.manifest.version}`, tok)),
    ).toBe("404 not_found");
    expect(await code(await agentGet(`/v1/agent/pieces/${bPiece}?model=${a.model}&version=b`, tok))).toBe(
      "404 not_found",
    );
    expect(await code(await agentGet(`/v1/agent/versions/${a.model}/b`, tok))).toBe("404 version_not_found");
    expect((await agentGet(`/v1/agent/pieces/${bPiece}`, tok)).status).toBe(400);
  });

  it("other actors read a ready version by record() and a piece by hasPiece(), pending ones not at all", async () => {
    const v = await version({ "w.bin": "rpc" });
    await pushIt(v);
    const stub = env.VERSIONS.get(env.VERSIONS.idFromName(v.model)) as unknown as Remote<VersionsActor>;
    const [name] = [...v.pieces.keys()];
    expect(await stub.record(v.push.manifest.version)).toBeNull();
    expect(await stub.hasPiece(v.push.manifest.version, name!)).toBe(false);
    const record = await ready(v);
    expect(await stub.record(v.push.manifest.version)).toEqual(record);
    expect(await stub.hasPiece(v.push.manifest.version, name!)).toBe(true);
  });
});

describe("nothing is written for an unknown model, version or piece", () => {
  it("reads, commits and agent fetches naming what does not exist answer 404 and leave the model's actor without tables", async () => {
    const model = unique("ghost");
    const tok = (await token([model])).token;
    const piece = "ab".repeat(32);
    const answers = [
      `${(await call("GET", `/v1/admin/models/${model}/versions`, { key: ADMIN })).status}`,
      await code(
        await exports.default.fetch(
          new Request(`http://edge.test/v1/admin/models/${model}/versions/1`, {
            headers: { authorization: `Bearer ${ADMIN}` },
          }),
        ),
      ),
      `${(await call("POST", `/v1/admin/models/${model}/versions/1/commit`, { key: ADMIN })).status}`,
      await code(await agentGet(`/v1/agent/versions/${model}/1`, tok)),
      await code(await agentGet(`/v1/agent/pieces/${piece}?model=${model}&version=1`, tok)),
    ];
    expect(answers).toEqual(["200", "404 version_not_found", "404", "404 version_not_found", "404 not_found"]);
    expect(await tablesOf(model)).toEqual([]);
  });
});
