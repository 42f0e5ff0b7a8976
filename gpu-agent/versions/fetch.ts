/**
 * A model version into the agent's cache, from the edge (`GET /v1/agent/versions/{model}/{version}`
 * for its record, `GET /v1/agent/pieces/{sha256}?model=&version=` for its pieces). Called by the
 * version manager (./manager.ts) for every version `agent.desired` names.
 *
 * Nothing unverified is ever used: the record must carry the digest `agent.desired` named and
 * hash to it ({@link versionDigest}); each piece must hash to its name before it is kept (a bad
 * one is refused, said so in the log and in the result, and never written); each assembled file
 * must hash to its `sha256`. Everything is written under a temporary name and renamed into
 * place, so a crash leaves no half-written piece or version that could pass for a whole one,
 * and agents sharing a cache directory never see each other's partial work.
 *
 * Layout under the cache directory:
 * - `pieces/<sha256>`: verified pieces, shared by every version (a new version fetches only the
 *   pieces it does not share with one fetched before; an interrupted fetch resumes);
 * - `versions/<model>/<version>/`: the version's files and its `manifest.json` (written from the
 *   record), what the runner is started on;
 * - `versions/<model>/<version>.json`: the record, written before the directory is renamed into
 *   place: a version is complete when both exist and the record has the digest asked for. A
 *   complete version loads without a request to the edge.
 * - `versions/<model>/<version>.fetching.json`: the record while its pieces are fetched, so
 *   eviction keeps them (./evict.ts); `versions/<model>/<version>.used`: its mtime is when the
 *   version was last used.
 *
 * A version found complete is checked and marked used under its lock, the one eviction deletes
 * it under: an agent never takes a version being deleted.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join, relative, resolve, sep } from "node:path";
import { type Backoff, backoffMs } from "../../shared/backoff.ts";
import { PIECE_BYTES, piecesOf, VersionRecord, versionDigest } from "../../shared/repository.ts";
import { AGENT_ID_HEADER } from "../../shared/wire.ts";
import { type ByteBucket, paced } from "./bucket.ts";
import { touchUse } from "./evict.ts";
import { tryLock } from "./lock.ts";
import type { Swarm, SwarmStats } from "./swarm.ts";

/** How the agent reaches the edge's repository routes. */
export interface EdgeAccess {
  /** The edge's base URL, without a trailing slash. */
  baseUrl: string;
  token: string;
  /** The id the agent speaks as now. */
  agentId: () => string;
  /** `fetch` (tests may count or fail requests). */
  fetch?: typeof fetch;
}

/** A version complete in the cache. */
export interface CachedVersion {
  /** `<cache>/versions/<model>/<version>`: its files and manifest.json. */
  dir: string;
  record: VersionRecord;
}

export type FetchResult =
  | {
      ok: true;
      version: CachedVersion;
      /** What this call fetched (nothing when the version was in the cache, or another agent of the host fetched it). */
      fetched: { pieces: number; bytes: number };
      /** Where the pieces came from, when the fetch took part in the version's swarm. */
      swarm?: SwarmStats;
    }
  | {
      ok: false;
      message: string;
      /** True when trying again cannot help (a bad digest, piece or file): only another version will. */
      permanent: boolean;
    };

/** How far a fetch has got. */
export interface FetchProgress {
  pieces: number;
  totalPieces: number;
  bytes: number;
  totalBytes: number;
  /** With a swarm: bytes from the origin and from peers, and the peers known. */
  originBytes?: number;
  peerBytes?: number;
  peers?: number;
}

export interface FetchOptions {
  /** Pieces in flight at once (default 4). */
  concurrency?: number;
  /** Tries per request before the fetch fails, on network errors, 5xx and 429 (default 5). */
  tries?: number;
  /** Waits between tries (default 250 ms doubling to 8 s, jittered; a `Retry-After` is honoured). */
  backoff?: Backoff;
  onProgress?: (p: FetchProgress) => void;
  log?: (line: string) => void;
  signal?: AbortSignal;
  /** Take part in the version's swarm: pieces from peers first, the origin for the rest (./swarm.ts). */
  swarm?: Swarm;
  /** `--max-download-mibps`: what the origin sends passes through it too. */
  download?: ByteBucket;
  /** How often an agent waiting for another agent of the host to fetch a version looks again (ms, default 250). */
  lockPollMs?: number;
}

const DEFAULT_BACKOFF: Backoff = { baseMs: 250, maxMs: 8_000 };
/** Longest `Retry-After` honoured (ms). */
const MAX_RETRY_AFTER_MS = 30_000;

/** Where versions and pieces live under a cache directory. */
export class VersionCache {
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  piece(sha256: string): string {
    return join(this.root, "pieces", sha256);
  }

  dir(model: string, version: string): string {
    return join(this.root, "versions", model, version);
  }

  recordPath(model: string, version: string): string {
    return join(this.root, "versions", model, `${version}.json`);
  }

  /** The lock the agent fetching the version holds (./lock.ts). */
  lockPath(model: string, version: string): string {
    return join(this.root, "versions", model, `${version}.lock`);
  }

  /** The record of the version while its pieces are fetched. */
  fetchingPath(model: string, version: string): string {
    return join(this.root, "versions", model, `${version}.fetching.json`);
  }

  /** Its mtime is when the version was last used (./evict.ts). */
  usedPath(model: string, version: string): string {
    return join(this.root, "versions", model, `${version}.used`);
  }

  /** The version, if it is complete here with this digest. */
  async complete(model: string, version: string, digest: string): Promise<CachedVersion | undefined> {
    let raw: unknown;
    try {
      raw = JSON.parse(await readFile(this.recordPath(model, version), "utf8"));
    } catch {
      return undefined;
    }
    const parsed = VersionRecord.safeParse(raw);
    if (!parsed.success || parsed.data.digest !== digest) return undefined;
    const r = parsed.data;
    if ((await versionDigest({ manifest: r.manifest, piece_bytes: r.piece_bytes, files: r.files })) !== digest) {
      return undefined;
    }
    const dir = this.dir(model, version);
    if (!(await exists(join(dir, "manifest.json")))) return undefined;
    return { dir, record: r };
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** A name no other process or call picks: `.<base>.<pid>.<random>.tmp` beside the target. */
function tempBeside(target: string): string {
  return join(
    dirname(target),
    `.${target.slice(dirname(target).length + 1)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`,
  );
}

/** Writes a file under a temporary name and renames it into place. */
async function writeAtomic(target: string, data: string | Uint8Array): Promise<void> {
  await mkdir(dirname(target), { recursive: true });
  const tmp = tempBeside(target);
  try {
    await writeFile(tmp, data);
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** A failure of the fetch, carried out of nested calls. */
class FetchFailure extends Error {
  readonly permanent: boolean;
  constructor(message: string, permanent: boolean) {
    super(message);
    this.permanent = permanent;
  }
}

const MiB = 1024 * 1024;
const mib = (n: number): string => (n / MiB).toFixed(n < 10 * MiB ? 1 : 0);

/**
 * GETs `path` from the edge, retrying network errors, 5xx and 429 with jittered backoff; any
 * other answer than 2xx is a failure (permanent for 400–499, 429 aside).
 */
async function get(edge: EdgeAccess, path: string, what: string, opts: FetchOptions): Promise<Response> {
  const tries = opts.tries ?? 5;
  const doFetch = edge.fetch ?? fetch;
  let last = "";
  for (let attempt = 0; attempt < tries; attempt++) {
    let wait = backoffMs(attempt, opts.backoff ?? DEFAULT_BACKOFF);
    try {
      const res = await doFetch(edge.baseUrl + path, {
        headers: { authorization: `Bearer ${edge.token}`, [AGENT_ID_HEADER]: edge.agentId() },
        signal: opts.signal,
      });
      if (res.ok) return res;
      const body = await res.text().catch(() => "");
      let detail = body.slice(0, 200);
      try {
        const e = (JSON.parse(body) as { error?: { code?: unknown; message?: unknown } }).error;
        if (typeof e?.code === "string") detail = `${e.code}: ${String(e.message ?? "")}`;
      } catch {
        // Not the edge's JSON error: the start of the body says what it is.
      }
      last = `${what}: the edge answered ${res.status} (${detail})`;
      if (res.status !== 429 && res.status < 500) throw new FetchFailure(last, res.status !== 404);
      const after = Number(res.headers.get("retry-after"));
      if (Number.isFinite(after) && after > 0) wait = Math.max(wait, Math.min(after * 1000, MAX_RETRY_AFTER_MS));
    } catch (err) {
      if (err instanceof FetchFailure) throw err;
      if (opts.signal?.aborted) throw new FetchFailure(`${what}: stopped`, false);
      last = `${what}: ${(err as Error).message}`;
    }
    if (attempt + 1 < tries) {
      opts.log?.(`${last}; trying again in ${Math.round(wait)} ms`);
      await new Promise((res) => setTimeout(res, wait));
    }
  }
  throw new FetchFailure(`${last} (gave up after ${tries} tries)`, false);
}

/** Reads a body of at most `cap` bytes, hashing it as it comes. */
async function readCapped(
  res: Response,
  cap: number,
  bucket?: ByteBucket,
): Promise<{ bytes: Uint8Array; sha256: string } | undefined> {
  const length = Number(res.headers.get("content-length"));
  if (Number.isFinite(length) && length > cap) return undefined;
  const hash = createHash("sha256");
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (res.body) {
    for await (const chunk of paced(bucket, res.body)) {
      size += chunk.length;
      if (size > cap) return undefined;
      hash.update(chunk);
      chunks.push(chunk);
    }
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  return { bytes, sha256: hash.digest("hex") };
}

/** The version's record from the edge, checked: its name, `ready`, and its digest both named and recomputed. */
async function fetchRecord(
  edge: EdgeAccess,
  want: { model: string; version: string; digest: string },
  opts: FetchOptions,
): Promise<VersionRecord> {
  const name = `${want.model}@${want.version}`;
  const path = `/v1/agent/versions/${encodeURIComponent(want.model)}/${encodeURIComponent(want.version)}`;
  const res = await get(edge, path, `the record of ${name}`, opts);
  let raw: unknown;
  try {
    raw = await res.json();
  } catch {
    throw new FetchFailure(`the record of ${name} is not JSON`, true);
  }
  const parsed = VersionRecord.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new FetchFailure(`the record of ${name} is malformed (${issue?.path.join(".")}: ${issue?.message})`, true);
  }
  const r = parsed.data;
  if (r.manifest.model !== want.model || r.manifest.version !== want.version) {
    throw new FetchFailure(`the edge answered ${r.manifest.model}@${r.manifest.version} for ${name}`, true);
  }
  if (r.state !== "ready") throw new FetchFailure(`${name} is not ready on the edge (${r.state})`, false);
  if (r.digest !== want.digest) {
    throw new FetchFailure(`${name} has digest ${r.digest} on the edge, not ${want.digest} as desired: refused`, true);
  }
  const digest = await versionDigest({ manifest: r.manifest, piece_bytes: r.piece_bytes, files: r.files });
  if (digest !== want.digest) {
    throw new FetchFailure(`the record of ${name} hashes to ${digest}, not its digest ${want.digest}: refused`, true);
  }
  if (r.files.some((f) => f.path === "manifest.json")) {
    throw new FetchFailure(`${name} has a file named manifest.json, which its manifest takes`, true);
  }
  return r;
}

/**
 * Brings a version into the cache, or finds it there: answers its directory and record, or why
 * not. Expected failures are values; only a bug throws.
 *
 * @example
 * const got = await fetchVersion(edge, new VersionCache(".floodgate/agent"), { model: "demo", version: "1", digest });
 * if (!got.ok) report("failed", got.message);
 */
export async function fetchVersion(
  edge: EdgeAccess,
  cache: VersionCache,
  want: { model: string; version: string; digest: string },
  opts: FetchOptions = {},
): Promise<FetchResult> {
  const name = `${want.model}@${want.version}`;
  const log = opts.log ?? (() => {});
  try {
    // One agent of the host fetches; the others wait for the version to be complete.
    let waited = false;
    for (;;) {
      const lock = await tryLock(cache.lockPath(want.model, want.version));
      if (lock) {
        try {
          const cached = await cache.complete(want.model, want.version, want.digest);
          if (cached) {
            await touchUse(cache, want.model, want.version);
            opts.swarm?.session(edge, cached.record, log).seed();
            return { ok: true, version: cached, fetched: { pieces: 0, bytes: 0 } };
          }
          const got = await fetchLocked(edge, cache, want, opts);
          if (got.ok) await touchUse(cache, want.model, want.version);
          return got;
        } finally {
          await rm(cache.fetchingPath(want.model, want.version), { force: true });
          await lock.release();
        }
      }
      if (!waited) log(`${name}: another agent of this host holds it (fetching or evicting it); waiting`);
      waited = true;
      if (opts.signal?.aborted) throw new FetchFailure(`${name}: stopped`, false);
      await new Promise((res) => setTimeout(res, opts.lockPollMs ?? 250));
    }
  } catch (err) {
    if (err instanceof FetchFailure) return { ok: false, message: err.message, permanent: err.permanent };
    const e = err as NodeJS.ErrnoException;
    // The disk (full, unwritable): worth another try later.
    if (typeof e.code === "string") return { ok: false, message: `${name}: ${e.message}`, permanent: false };
    throw err;
  }
}

/** Fetches the version, holding the host's lock on it. */
async function fetchLocked(
  edge: EdgeAccess,
  cache: VersionCache,
  want: { model: string; version: string; digest: string },
  opts: FetchOptions,
): Promise<FetchResult> {
  const name = `${want.model}@${want.version}`;
  const log = opts.log ?? (() => {});
  {
    const record = await fetchRecord(edge, want, opts);
    // Its pieces are kept by eviction until it is assembled (removed by the caller's finally).
    await writeAtomic(cache.fetchingPath(want.model, want.version), JSON.stringify(record));
    const all = piecesOf(record.files);
    const missing: string[] = [];
    for (const sha of all) if (!(await exists(cache.piece(sha)))) missing.push(sha);
    const sizes = pieceSizes(record);
    const progress: FetchProgress = {
      pieces: all.length - missing.length,
      totalPieces: all.length,
      bytes: 0,
      totalBytes: missing.reduce((a, sha) => a + (sizes.get(sha) ?? 0), 0),
    };
    if (missing.length > 0)
      log(`${name}: fetching ${missing.length} of ${all.length} pieces (${mib(progress.totalBytes)} MiB)`);
    opts.onProgress?.({ ...progress });
    const query = `?model=${encodeURIComponent(want.model)}&version=${encodeURIComponent(want.version)}`;
    let fetchedBytes = 0;
    const originPiece = async (sha: string, signal?: AbortSignal): Promise<Uint8Array> => {
      const signals = [opts.signal, signal].filter((x): x is AbortSignal => x !== undefined);
      const res = await get(edge, `/v1/agent/pieces/${sha}${query}`, `piece ${sha} of ${name}`, {
        ...opts,
        ...(signals.length > 0 ? { signal: AbortSignal.any(signals) } : {}),
      });
      const body = await readCapped(res, PIECE_BYTES, opts.download);
      if (!body) throw refused(`piece ${sha} of ${name} is larger than a piece can be (${PIECE_BYTES} bytes)`);
      if (body.sha256 !== sha) throw refused(`piece ${sha} of ${name} from the edge hashes to ${body.sha256}`);
      return body.bytes;
    };
    const kept = (bytes: number): void => {
      fetchedBytes += bytes;
      progress.pieces += 1;
      progress.bytes += bytes;
      opts.onProgress?.({
        ...progress,
        ...(session
          ? { originBytes: session.stats.originBytes, peerBytes: session.stats.peerBytes, peers: session.stats.peers }
          : {}),
      });
    };
    const refused = (why: string): FetchFailure => {
      const message = `${why}: refused, not used`;
      log(message);
      return new FetchFailure(message, true);
    };
    const session = opts.swarm?.session(edge, record, log);
    if (session) {
      await session.fetch(
        {
          fromOrigin: originPiece,
          store: (sha, bytes) => writeAtomic(cache.piece(sha), bytes),
          held: (sha) => exists(cache.piece(sha)),
        },
        kept,
      );
    } else {
      // A few workers take the missing pieces in order; the first failure stops them all.
      const queue = [...missing];
      let failure: unknown;
      const worker = async (): Promise<void> => {
        while (failure === undefined && queue.length > 0) {
          const sha = queue.shift()!;
          try {
            const bytes = await originPiece(sha);
            await writeAtomic(cache.piece(sha), bytes);
            kept(bytes.length);
          } catch (err) {
            failure ??= err;
          }
        }
      };
      await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 4) }, worker));
      if (failure !== undefined) throw failure;
    }
    const dir = await assemble(cache, record);
    const from = session
      ? `; ${mib(session.stats.originBytes)} MiB from the origin, ${mib(session.stats.peerBytes)} MiB from peers${session.stats.corrupt > 0 ? `, ${session.stats.corrupt} corrupt piece(s) from peers discarded` : ""}`
      : "";
    log(
      `${name}: ready in ${dir} (${missing.length} piece(s) fetched, ${all.length - missing.length} from the cache${from})`,
    );
    return {
      ok: true,
      version: { dir, record },
      fetched: { pieces: missing.length, bytes: fetchedBytes },
      ...(session ? { swarm: { ...session.stats, badPeers: [...session.stats.badPeers] } } : {}),
    };
  }
}

/** The size of each piece, from the files that use it (for progress). */
function pieceSizes(record: VersionRecord): Map<string, number> {
  const out = new Map<string, number>();
  for (const f of record.files) {
    f.pieces.forEach((sha, i) =>
      out.set(sha, Math.max(0, Math.min(record.piece_bytes, f.size - i * record.piece_bytes))),
    );
  }
  return out;
}

/**
 * Writes the version's files from its pieces, and manifest.json from its record, into a
 * temporary directory, checks each file's size and sha256, writes the record, and renames the
 * directory into place.
 */
async function assemble(cache: VersionCache, record: VersionRecord): Promise<string> {
  const { model, version } = record.manifest;
  const name = `${model}@${version}`;
  const final = cache.dir(model, version);
  await mkdir(dirname(final), { recursive: true });
  const tmp = tempBeside(final);
  try {
    await mkdir(tmp);
    for (const f of record.files) {
      const dest = resolve(tmp, f.path);
      // The path's shape is checked by the schema; this keeps a file inside the version anyway.
      if (relative(tmp, dest).startsWith(`..${sep}`) || dest === tmp) {
        throw new FetchFailure(`${name}: file ${f.path} would be outside the version`, true);
      }
      await mkdir(dirname(dest), { recursive: true });
      const out = await open(dest, "w");
      const hash = createHash("sha256");
      let size = 0;
      try {
        for (const sha of f.pieces) {
          for await (const chunk of createReadStream(cache.piece(sha))) {
            const bytes = chunk as Buffer;
            hash.update(bytes);
            size += bytes.length;
            await out.write(bytes);
          }
        }
      } finally {
        await out.close();
      }
      const sha256 = hash.digest("hex");
      if (size !== f.size || sha256 !== f.sha256) {
        throw new FetchFailure(
          `${name}: file ${f.path} assembled to ${size} bytes with sha256 ${sha256}, not ${f.size} bytes with ${f.sha256}: refused`,
          true,
        );
      }
    }
    await writeFile(join(tmp, "manifest.json"), `${JSON.stringify(record.manifest, null, 2)}\n`);
    // A stale or partial directory of this name goes first: the record is only written for a
    // directory about to be complete.
    await rm(final, { recursive: true, force: true });
    await writeAtomic(cache.recordPath(model, version), `${JSON.stringify(record)}\n`);
    try {
      await rename(tmp, final);
    } catch (err) {
      // Another agent sharing this cache finished the same version first.
      if (!(await cache.complete(model, version, record.digest))) throw err;
      await rm(tmp, { recursive: true, force: true });
    }
    return final;
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}
