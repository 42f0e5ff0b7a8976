/**
 * Eviction of the host cache (./fetch.ts's layout) between a high and a low mark: when the cache
 * passes `--cache-high-gib`, or the disk it is on passes `--disk-high-pct` full, whole versions
 * are deleted, least recently used first, until the cache is under `--cache-low-gib` and the
 * disk under `--disk-low-pct`. A version goes with its assembled files, its record and the pieces
 * no version kept (or being fetched) uses; pieces no version uses at all (left by a fetch that
 * stopped) go first.
 *
 * Safe with several agents on one host sharing the cache:
 * - each agent pins what it serves or may serve soon (its desired stable and canary, the version
 *   it falls back on, what its replicas run) in `pins/<pid>.json`, written before it fetches or
 *   loads any of them; pins of a dead process are ignored and removed;
 * - a version is deleted only under its lock (`versions/<model>/<version>.lock`, ./lock.ts),
 *   with the pins read again once the lock is held; an agent finding a version complete in the
 *   cache checks it under the same lock, so it never takes a version being deleted, and a version
 *   it pinned before taking the lock is never deleted after;
 * - a version being fetched holds its lock, and its record is in `<version>.fetching.json`
 *   until it is assembled, so its pieces are kept;
 * - one agent evicts at a time (`evict.lock`); another finding it held skips its turn.
 *
 * Last use is the mtime of `versions/<model>/<version>.used`, touched when a version is found or
 * fetched for loading, when a replica starts on it and when an agent pins it (the record's mtime
 * before the first).
 *
 * A version an admin purged from the fleet (`agent.desired` `purged`) is deleted the same way,
 * whatever the marks, once no agent of the host pins it ({@link purgeVersion}).
 */
import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { mkdir, readdir, readFile, rm, stat, statfs, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { piecesOf, VersionRecord } from "../../shared/repository.ts";
import type { VersionCache } from "./fetch.ts";
import { alive, tryLock } from "./lock.ts";

const GiB = 1024 ** 3;

/** The marks between which the cache is kept (`floodgate agent` flags). */
export interface EvictionMarks {
  /** Evict when the cache holds more than this many bytes (absent: no limit of its own). */
  highBytes?: number;
  /** …down to this many bytes. */
  lowBytes?: number;
  /** Evict when the disk holding the cache is fuller than this share (percent)… */
  diskHighPct: number;
  /** …down to this share. */
  diskLowPct: number;
}

/** The disk holding a directory: its size and the bytes still free to this process. */
export interface DiskUse {
  total: number;
  free: number;
}

export async function diskUse(path: string): Promise<DiskUse> {
  const s = await statfs(path);
  return { total: s.blocks * s.bsize, free: s.bavail * s.bsize };
}

export interface EvictOptions {
  /** How the disk's use is measured (tests stand in a disk of their own). */
  disk?: (path: string) => Promise<DiskUse>;
  log?: (line: string) => void;
}

export interface EvictResult {
  /** Versions deleted, `model@version`, in the order deleted. */
  evicted: string[];
  /** Pieces deleted. */
  pieces: number;
  /** Bytes freed. */
  bytes: number;
  /** The cache's size after. */
  cacheBytes: number;
}

/** `model/version`: how a version is named in a pin file. */
export function pinKey(model: string, version: string): string {
  return `${model}/${version}`;
}

function pinsDir(cache: VersionCache): string {
  return join(cache.root, "pins");
}

/** Where this process's pins are. */
export function pinPath(cache: VersionCache, pid = process.pid): string {
  return join(pinsDir(cache), `${pid}.json`);
}

/**
 * Pins versions for this process, replacing what it pinned before. Synchronous, so the pins are
 * on disk before the caller goes on to fetch or load any of them.
 */
export function writePins(cache: VersionCache, versions: Iterable<{ model: string; version: string }>): void {
  const path = pinPath(cache);
  mkdirSync(pinsDir(cache), { recursive: true });
  const tmp = `${path}.${Math.random().toString(36).slice(2)}.tmp`;
  const body = { pid: process.pid, versions: [...versions].map((v) => pinKey(v.model, v.version)).sort() };
  writeFileSync(tmp, JSON.stringify(body));
  renameSync(tmp, path);
}

/** Drops this process's pins (when its agent stops). */
export function clearPins(cache: VersionCache): void {
  rmSync(pinPath(cache), { force: true });
}

/** Every version pinned by a live process of the host; pin files of dead ones are removed. */
export async function readPins(cache: VersionCache): Promise<Set<string>> {
  const out = new Set<string>();
  let names: string[];
  try {
    names = await readdir(pinsDir(cache));
  } catch {
    return out;
  }
  for (const name of names) {
    const m = /^(\d+)\.json$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    const path = join(pinsDir(cache), name);
    if (!alive(pid)) {
      await rm(path, { force: true });
      continue;
    }
    try {
      const body = JSON.parse(await readFile(path, "utf8")) as { versions?: unknown };
      if (Array.isArray(body.versions)) for (const v of body.versions) if (typeof v === "string") out.add(v);
    } catch {
      // Replaced by a rename: never half-written. Unreadable: its owner writes it again.
    }
  }
  return out;
}

/** Marks a version in the cache used now (its place in the least-recently-used order); one not there is left alone. */
export async function touchUse(cache: VersionCache, model: string, version: string): Promise<void> {
  const path = cache.usedPath(model, version);
  const now = new Date();
  try {
    await utimes(path, now, now);
  } catch {
    if ((await mtime(cache.recordPath(model, version))) !== undefined) await writeFile(path, "").catch(() => undefined);
  }
}

interface Stored {
  model: string;
  version: string;
  record: VersionRecord;
  /** Bytes of its assembled files. */
  bytes: number;
  lastUse: number;
}

async function readRecord(path: string): Promise<VersionRecord | undefined> {
  try {
    const parsed = VersionRecord.safeParse(JSON.parse(await readFile(path, "utf8")));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

async function mtime(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).mtimeMs;
  } catch {
    return undefined;
  }
}

/** Bytes of the files under a directory. */
async function duBytes(dir: string): Promise<number> {
  let total = 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += await duBytes(p);
    else if (e.isFile()) total += (await stat(p).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

/** What the cache holds: its versions, the pieces of versions being fetched, and each piece's size. */
async function survey(cache: VersionCache): Promise<{
  versions: Stored[];
  fetching: Set<string>;
  pieces: Map<string, number>;
}> {
  const versions: Stored[] = [];
  const fetching = new Set<string>();
  const root = join(cache.root, "versions");
  for (const model of await readdir(root).catch(() => [] as string[])) {
    const names = await readdir(join(root, model)).catch(() => [] as string[]);
    for (const name of names) {
      if (name.endsWith(".fetching.json")) {
        const version = name.slice(0, -".fetching.json".length);
        const record = await readRecord(join(root, model, name));
        // Kept while its fetcher lives (holds the lock); left by a dead one, it goes.
        if (record && !(await lockFree(cache, model, version))) {
          for (const sha of piecesOf(record.files)) fetching.add(sha);
        }
        continue;
      }
      if (!name.endsWith(".json") || name.startsWith(".")) continue;
      const version = name.slice(0, -".json".length);
      const record = await readRecord(join(root, model, name));
      if (!record) continue;
      const lastUse =
        (await mtime(cache.usedPath(model, version))) ?? (await mtime(join(root, model, name))) ?? Date.now();
      versions.push({ model, version, record, bytes: await duBytes(cache.dir(model, version)), lastUse });
    }
  }
  const pieces = new Map<string, number>();
  for (const sha of await readdir(join(cache.root, "pieces")).catch(() => [] as string[])) {
    if (!/^[0-9a-f]{64}$/.test(sha)) continue;
    const s = await stat(cache.piece(sha)).catch(() => undefined);
    if (s) pieces.set(sha, s.size);
  }
  return { versions, fetching, pieces };
}

/** True when no live process holds the version's lock (checked by taking and releasing it). */
async function lockFree(cache: VersionCache, model: string, version: string): Promise<boolean> {
  const lock = await tryLock(cache.lockPath(model, version));
  if (!lock) return false;
  await lock.release();
  return true;
}

/**
 * Evicts the cache down to the low marks if it is past a high mark; answers what went. Expected
 * trouble (a version locked or pinned by another agent) skips that version; nothing is deleted
 * that a live agent pinned or is fetching.
 *
 * @example
 * await evictCache(new VersionCache(dir), { highBytes: 100 * GiB, lowBytes: 80 * GiB, diskHighPct: 90, diskLowPct: 80 });
 */
export async function evictCache(
  cache: VersionCache,
  marks: EvictionMarks,
  opts: EvictOptions = {},
): Promise<EvictResult> {
  const result: EvictResult = { evicted: [], pieces: 0, bytes: 0, cacheBytes: 0 };
  const disk = opts.disk ?? diskUse;
  const log = opts.log ?? (() => {});
  await mkdir(cache.root, { recursive: true });
  const turn = await tryLock(join(cache.root, "evict.lock"));
  if (!turn) return result;
  try {
    const s = await survey(cache);
    let cacheBytes = [...s.pieces.values()].reduce((a, b) => a + b, 0) + s.versions.reduce((a, v) => a + v.bytes, 0);
    result.cacheBytes = cacheBytes;
    let freed = 0;
    const startDisk = await disk(cache.root);
    const usedPct = (): number =>
      startDisk.total > 0 ? (100 * (startDisk.total - startDisk.free - freed)) / startDisk.total : 0;
    const over = (marks.highBytes !== undefined && cacheBytes > marks.highBytes) || usedPct() > marks.diskHighPct;
    if (!over) return result;
    const under = (): boolean =>
      (marks.lowBytes === undefined || cacheBytes <= marks.lowBytes) && usedPct() <= marks.diskLowPct;
    log(
      `the cache holds ${(cacheBytes / GiB).toFixed(2)} GiB, the disk is ${usedPct().toFixed(0)}% full: evicting least recently used versions`,
    );
    const dropPieces = async (shas: Iterable<string>): Promise<void> => {
      for (const sha of shas) {
        const size = s.pieces.get(sha);
        if (size === undefined) continue;
        await rm(cache.piece(sha), { force: true });
        s.pieces.delete(sha);
        cacheBytes -= size;
        freed += size;
        result.pieces += 1;
      }
    };
    const used = (kept: readonly Stored[]): Set<string> => {
      const out = new Set(s.fetching);
      for (const v of kept) for (const sha of piecesOf(v.record.files)) out.add(sha);
      return out;
    };
    // Pieces of no version, kept or being fetched, go first.
    {
      const inUse = used(s.versions);
      await dropPieces([...s.pieces.keys()].filter((sha) => !inUse.has(sha)));
    }
    let kept = [...s.versions];
    const order = [...s.versions].sort((a, b) => a.lastUse - b.lastUse);
    for (const v of order) {
      if (under()) break;
      const key = pinKey(v.model, v.version);
      const lock = await tryLock(cache.lockPath(v.model, v.version));
      // Being fetched or checked by an agent of the host: its to use.
      if (!lock) continue;
      try {
        if ((await readPins(cache)).has(key)) continue;
        // Its record first: from then on it is not complete for anyone.
        await rm(cache.recordPath(v.model, v.version), { force: true });
        await rm(cache.dir(v.model, v.version), { recursive: true, force: true });
        await rm(cache.usedPath(v.model, v.version), { force: true });
        cacheBytes -= v.bytes;
        freed += v.bytes;
        kept = kept.filter((k) => k !== v);
        // Versions whose fetch began since the survey keep their pieces too.
        const fresh = await survey(cache);
        for (const sha of fresh.fetching) s.fetching.add(sha);
        const inUse = used(kept);
        await dropPieces(piecesOf(v.record.files).filter((sha) => !inUse.has(sha)));
        result.evicted.push(`${v.model}@${v.version}`);
        log(`evicted ${v.model}@${v.version} (last used ${new Date(v.lastUse).toISOString()})`);
      } finally {
        await lock.release();
      }
    }
    result.bytes = freed;
    result.cacheBytes = cacheBytes;
    if (!under())
      log(
        `the cache still holds ${(cacheBytes / GiB).toFixed(2)} GiB with the disk ${usedPct().toFixed(0)}% full: what is left is pinned or in use`,
      );
    return result;
  } finally {
    await turn.release();
  }
}

/** What became of a purge on this host. */
export type PurgeOutcome = "purged" | "absent" | "busy";

/**
 * Deletes one version from the cache (an admin purged it from the fleet): its files, record and
 * last-use marker, and the pieces no other version in the cache (kept, or being fetched) uses.
 * `busy` when an agent of the host pins it or holds its lock: try again once that changes.
 *
 * @example
 * if ((await purgeVersion(cache, "demo", "1")) === "busy") later();
 */
export async function purgeVersion(cache: VersionCache, model: string, version: string): Promise<PurgeOutcome> {
  const there =
    (await mtime(cache.recordPath(model, version))) !== undefined ||
    (await mtime(cache.dir(model, version))) !== undefined;
  if (!there) return "absent";
  const lock = await tryLock(cache.lockPath(model, version));
  if (!lock) return "busy";
  try {
    if ((await readPins(cache)).has(pinKey(model, version))) return "busy";
    const record = await readRecord(cache.recordPath(model, version));
    await rm(cache.recordPath(model, version), { force: true });
    await rm(cache.dir(model, version), { recursive: true, force: true });
    await rm(cache.usedPath(model, version), { force: true });
    if (record) {
      const s = await survey(cache);
      const inUse = new Set(s.fetching);
      for (const v of s.versions) for (const sha of piecesOf(v.record.files)) inUse.add(sha);
      for (const sha of piecesOf(record.files)) if (!inUse.has(sha)) await rm(cache.piece(sha), { force: true });
    }
    return "purged";
  } finally {
    await lock.release();
  }
}
