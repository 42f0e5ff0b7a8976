/**
 * The version manager of an agent that serves what the rollout says (`floodgate agent` without
 * `--runner`): it keeps what `agent.desired` named, the versions it knows and the pool's
 * replicas, asks {@link plan} what to do whenever any of them changes, and does it: fetches
 * versions into the cache (./fetch.ts), starts replicas on their GPUs, drains those no longer
 * wanted. Its `states()` go in the agent's hello and heartbeats; `changed` fires when one
 * changes, so the agent tells the edge at once. Created by gpu-agent/agent.ts.
 */
import { EventEmitter } from "node:events";
import type { Backoff } from "../../shared/backoff.ts";
import { backoffMs } from "../../shared/backoff.ts";
import type { VersionManifest } from "../../shared/repository.ts";
import type { VersionState } from "../../shared/wire.ts";
import type { RunnerLike } from "../runner/like.ts";
import type { RunnerPool } from "../pool.ts";
import type { Swarm } from "./swarm.ts";
import type { ByteBucket } from "./bucket.ts";
import { clearPins, evictCache, type EvictionMarks, purgeVersion, touchUse, writePins } from "./evict.ts";
import { type EdgeAccess, fetchVersion, type FetchOptions, type FetchProgress, VersionCache } from "./fetch.ts";
import { type DesiredModel, type KnownVersion, plan, type Plan, versionKey } from "./plan.ts";

/** One replica's runner to start: the version, its directory in the cache, and its GPUs. */
export interface ReplicaLaunch {
  model: string;
  version: string;
  /** `<cache>/versions/<model>/<version>`: its files and manifest.json. */
  dir: string;
  manifest: VersionManifest;
  /** GPU indices it gets (`CUDA_VISIBLE_DEVICES`); empty: the CPU. */
  gpus: readonly number[];
  /** The replica's id, for its log lines. */
  replica: number;
}

/** How an agent serving the rollout runs. */
export interface ServeOptions {
  /** The GPU indices the agent serves with. */
  gpus: readonly number[];
  /** Where versions and pieces are kept (`--cache-dir`). */
  cacheDir: string;
  /**
   * Starts one runner process for a replica and resolves once it can take jobs (its hello
   * names the version, and the version loaded); rejects with why it could not.
   */
  startRunner: (launch: ReplicaLaunch) => Promise<RunnerLike>;
  fetch?: Omit<FetchOptions, "onProgress" | "log" | "signal"> & { fetch?: typeof fetch };
  /** Waits before a version whose fetch failed for a reason that may pass is tried again (default 5 s doubling to 5 min). */
  retry?: Backoff;
  /** The swarms the agent takes part in (`--peer-addr`); absent: every piece from the origin. */
  swarm?: Swarm;
  /** `--max-download-mibps`. */
  download?: ByteBucket;
  /** Hears each version's transfer as it goes (the progress bar of `floodgate agent`). */
  onTransfer?: (model: string, version: string, p: FetchProgress) => void;
  /** The cache's marks (./evict.ts): evicted at start and after each fetch. Absent: never evicted. */
  eviction?: EvictionMarks;
}

interface Entry extends KnownVersion {
  dir?: string;
  manifest?: VersionManifest;
  /** Failed fetches in a row (for the retry's backoff). */
  failures: number;
}

const DEFAULT_RETRY: Backoff = { baseMs: 5_000, maxMs: 300_000 };
/** Passes of one reconcile at most (each acts on what the last one changed). */
const MAX_PASSES = 64;
const MiB = 1024 * 1024;

export class VersionManager extends EventEmitter<{ changed: [] }> {
  private readonly pool: RunnerPool;
  private readonly edge: EdgeAccess;
  private readonly opts: ServeOptions;
  private readonly cache: VersionCache;
  private readonly log: (line: string) => void;
  private desired: DesiredModel[] = [];
  private readonly known = new Map<string, Entry>();
  private readonly lastStable = new Map<string, string>();
  /** Failed fetches in a row of a version being tried again, for its next backoff. */
  private readonly failures = new Map<string, number>();
  private last: Plan | undefined;
  private lastReported = "";
  private readonly abort = new AbortController();
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;
  private planning = false;
  private again = false;
  private lastPins = "";
  private evicting: Promise<void> | undefined;
  private evictAgain = false;
  /** Whether `agent.desired` came yet (the eviction at start waits for it). */
  private toldOnce = false;
  /** Versions purged from the fleet still in this host's cache (pinned here or by another agent), by key. */
  private readonly purges = new Map<string, { model: string; version: string }>();
  private purging: Promise<void> | undefined;
  private purgeAgain = false;

  constructor(pool: RunnerPool, edge: EdgeAccess, opts: ServeOptions, log: (line: string) => void) {
    super();
    this.pool = pool;
    this.edge = edge;
    this.opts = opts;
    this.cache = new VersionCache(opts.cacheDir);
    this.log = log;
    pool.on("changed", () => this.reconcile());
    pool.on("failed", (replica, err) => {
      if (replica.model !== undefined && replica.version !== undefined) {
        this.fail(replica.model, replica.version, `its runner could not be restarted: ${err.message}`);
      }
    });
  }

  /** What `agent.desired` says now (the whole list: a model not in it has no rollout). */
  desire(models: readonly DesiredModel[]): void {
    this.desired = models.map((m) => ({ ...m }));
    this.log(
      `desired: ${models.map((m) => `${m.model}@${m.stable.version}${m.canary ? ` (canary ${m.canary.version} at ${m.canary.percent}%)` : ""}`).join(", ") || "nothing"}`,
    );
    this.reconcile();
    // At start, once the edge has said what to serve (and so what is pinned).
    if (!this.toldOnce) {
      this.toldOnce = true;
      this.evictSoon();
    }
  }

  /**
   * Versions an admin purged from the fleet (`agent.desired` `purged`): each is deleted from the
   * cache once no agent of the host pins it, tried again whenever this agent lets a version go.
   */
  purge(versions: readonly { model: string; version: string }[]): void {
    for (const v of versions) this.purges.set(versionKey(v.model, v.version), { model: v.model, version: v.version });
    this.purgeSoon();
  }

  private purgeSoon(): void {
    if (this.purges.size === 0 || this.closed) return;
    if (this.purging) {
      this.purgeAgain = true;
      return;
    }
    this.purging = (async () => {
      do {
        this.purgeAgain = false;
        this.pin();
        for (const [key, v] of this.purges) {
          try {
            const out = await purgeVersion(this.cache, v.model, v.version);
            if (out === "purged") this.log(`${key}: purged from the cache`);
            if (out !== "busy") this.purges.delete(key);
          } catch (err) {
            this.log(`${key}: could not purge it from the cache: ${(err as Error).message}`);
          }
        }
      } while (this.purgeAgain && !this.closed);
    })().finally(() => (this.purging = undefined));
  }

  /** The versions to report in `agent.hello` and `agent.heartbeat`. */
  states(): VersionState[] {
    return this.last?.states ?? [];
  }

  /**
   * The version a lease that names none runs on: the model's stable here if it serves, else
   * undefined (the pool then takes any version of the model it serves).
   */
  stableOf(model: string): string | undefined {
    const s = this.last?.stable.get(model);
    return s !== undefined && this.states().some((v) => v.model === model && v.version === s && v.state === "serving")
      ? s
      : undefined;
  }

  /** Stops fetching and starting; the pool's runners are the agent's to close. */
  close(): void {
    this.closed = true;
    clearPins(this.cache);
    this.abort.abort();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  /** Plans and acts until the plan asks for nothing more; reentrant calls fold into one more pass. */
  private reconcile(): void {
    if (this.closed) return;
    if (this.planning) {
      this.again = true;
      return;
    }
    this.planning = true;
    try {
      // Each pass acts on what the last one changed; a plan that kept asking for more would be a
      // bug, not a reason to spin.
      for (let passes = 0; ; passes++) {
        this.again = false;
        this.pass();
        if (!this.again || this.closed) break;
        if (passes >= MAX_PASSES) {
          this.log(`the version plan did not settle after ${MAX_PASSES} passes: ${JSON.stringify(this.last?.actions)}`);
          break;
        }
      }
    } finally {
      this.planning = false;
    }
  }

  /**
   * Pins what this agent serves or may serve soon, before it fetches or loads any of it, so no
   * agent of the host evicts it (./evict.ts). True when it let go of a version.
   */
  private pin(): boolean {
    const pinned = new Map<string, { model: string; version: string }>();
    const add = (model: string, version: string): void =>
      void pinned.set(versionKey(model, version), { model, version });
    for (const d of this.desired) for (const w of [d.stable, d.canary]) if (w) add(d.model, w.version);
    for (const [model, version] of this.lastStable) add(model, version);
    for (const e of this.known.values()) add(e.model, e.version);
    for (const r of this.pool.replicas) if (r.model !== undefined && r.version !== undefined) add(r.model, r.version);
    const keys = [...pinned.keys()].sort();
    const text = keys.join("\n");
    if (text === this.lastPins) return false;
    const dropped = this.lastPins !== "" && this.lastPins.split("\n").some((k) => !pinned.has(k));
    try {
      writePins(this.cache, pinned.values());
      this.lastPins = text;
      // What is pinned is in use: the least recently used order sees it so after a restart too.
      for (const v of pinned.values()) void touchUse(this.cache, v.model, v.version);
    } catch (err) {
      this.log(`could not write the cache's pins: ${(err as Error).message}`);
    }
    return dropped;
  }

  /**
   * Evicts the cache past its high mark (at start once told what to serve, after a fetch, when a
   * version is let go of);
   * one run at a time, one more if asked while it runs.
   */
  private evictSoon(): void {
    const marks = this.opts.eviction;
    if (!marks || this.closed) return;
    if (this.evicting) {
      this.evictAgain = true;
      return;
    }
    this.evicting = (async () => {
      do {
        this.evictAgain = false;
        this.pin();
        try {
          await evictCache(this.cache, marks, { log: (l) => this.log(l) });
        } catch (err) {
          this.log(`evicting the cache failed: ${(err as Error).message}`);
        }
      } while (this.evictAgain && !this.closed);
    })().finally(() => (this.evicting = undefined));
  }

  private pass(): void {
    // A version let go of may be purged or evicted now.
    if (this.pin()) {
      this.purgeSoon();
      this.evictSoon();
    }
    const replicas = this.pool.replicas.flatMap((r) =>
      r.model !== undefined && r.version !== undefined && r.state !== "stopped"
        ? [{ id: r.id, model: r.model, version: r.version, gpus: r.gpus, state: r.state }]
        : [],
    );
    const p = plan({
      gpus: this.opts.gpus,
      desired: this.desired,
      known: [...this.known.values()],
      replicas,
      lastStable: this.lastStable,
    });
    this.last = p;
    for (const a of p.actions) {
      switch (a.kind) {
        case "fetch":
          this.fetch(a.model, a.version, a.digest);
          break;
        case "start":
          this.start(a.model, a.version, a.gpus);
          break;
        case "drain": {
          const r = this.pool.replicas.find((x) => x.id === a.replica);
          if (r) {
            this.log(`draining ${r.name}: ${a.reason}`);
            this.pool.drain(r);
          }
          break;
        }
      }
    }
    if (p.actions.length > 0) this.again = true;
    // The stable that serves here is the one to fall back on if a later version fails.
    for (const d of this.desired) {
      if (p.states.some((s) => s.model === d.model && s.version === d.stable.version && s.state === "serving")) {
        this.lastStable.set(d.model, d.stable.version);
      }
    }
    this.forget();
    const reported = JSON.stringify(p.states.map((s) => [s.model, s.version, s.state]));
    if (reported !== this.lastReported) {
      this.lastReported = reported;
      for (const s of p.states) this.log(`${s.model}@${s.version}: ${s.state}${s.message ? ` (${s.message})` : ""}`);
      this.emit("changed");
    }
  }

  /** Versions neither desired, nor the fallback, nor running anywhere in the pool are dropped (their cache stays). */
  private forget(): void {
    const named = new Set(
      this.desired.flatMap((d) => [d.stable, d.canary].flatMap((w) => (w ? [versionKey(d.model, w.version)] : []))),
    );
    for (const [model, version] of this.lastStable) named.add(versionKey(model, version));
    for (const r of this.pool.replicas) if (r.model && r.version) named.add(versionKey(r.model, r.version));
    for (const key of this.known.keys()) if (!named.has(key)) this.known.delete(key);
  }

  /**
   * A version failed. For good (a bad digest, piece or file; a runner that could not load it):
   * `failed`, until `agent.desired` names it anew. Otherwise (the edge unreachable, the disk
   * full) it is still `loading`, and fetched again after a backoff.
   */
  private fail(model: string, version: string, message: string, permanent = true): void {
    const key = versionKey(model, version);
    const e = this.known.get(key);
    if (!e) return;
    e.failures += 1;
    if (permanent) {
      e.phase = "failed";
      e.message = message;
      this.log(`${key} failed: ${message}`);
    } else {
      const wait = backoffMs(e.failures - 1, this.opts.retry ?? DEFAULT_RETRY);
      e.phase = "fetching";
      e.message = `${message}; trying again in ${Math.ceil(wait / 1000)} s`;
      this.log(`${key}: ${e.message}`);
      const t = setTimeout(() => {
        this.timers.delete(t);
        // Tried again only while it is still this entry (still desired, not replaced).
        if (this.known.get(key) === e) {
          this.known.delete(key);
          this.failures.set(key, e.failures);
          this.reconcile();
        }
      }, wait);
      t.unref();
      this.timers.add(t);
    }
    this.reconcile();
  }

  private fetch(model: string, version: string, digest: string): void {
    const key = versionKey(model, version);
    const failures = this.failures.get(key) ?? 0;
    this.failures.delete(key);
    const entry: Entry = { model, version, digest, phase: "fetching", message: "fetching its record", failures };
    this.known.set(key, entry);
    void fetchVersion(
      this.edge,
      this.cache,
      { model, version, digest },
      {
        ...this.opts.fetch,
        ...(this.opts.swarm ? { swarm: this.opts.swarm } : {}),
        ...(this.opts.download ? { download: this.opts.download } : {}),
        signal: this.abort.signal,
        log: (l) => this.log(l),
        onProgress: (p) => {
          this.opts.onTransfer?.(model, version, p);
          // Shown in the next periodic heartbeat; not worth one of its own.
          entry.message = `fetching: ${p.pieces} of ${p.totalPieces} pieces (${(p.bytes / MiB).toFixed(1)} of ${(p.totalBytes / MiB).toFixed(1)} MiB)`;
        },
      },
    ).then(
      (got) => {
        if (this.closed || this.known.get(key) !== entry) return;
        if (!got.ok) {
          this.fail(model, version, got.message, got.permanent);
          return;
        }
        entry.phase = "ready";
        entry.message = undefined;
        entry.dir = got.version.dir;
        entry.manifest = got.version.record.manifest;
        entry.gpus = got.version.record.manifest.resources.gpus;
        entry.failures = 0;
        this.reconcile();
        if (got.fetched.pieces > 0) this.evictSoon();
      },
      (err: unknown) => {
        if (this.known.get(key) === entry) this.fail(model, version, `fetch failed: ${String(err)}`, false);
      },
    );
  }

  private start(model: string, version: string, gpus: number[]): void {
    const key = versionKey(model, version);
    const e = this.known.get(key);
    if (!e?.dir || !e.manifest) return;
    const { dir, manifest } = e;
    void touchUse(this.cache, model, version);
    const added = this.pool.add({
      model,
      version,
      gpus,
      start: async (replica) => {
        try {
          return await this.opts.startRunner({ model, version, dir, manifest, gpus, replica: replica.id });
        } catch (err) {
          // Failed before the pool lets its GPUs go, so they are not handed to it again.
          if (this.known.get(key) === e) this.fail(model, version, err instanceof Error ? err.message : String(err));
          throw err;
        }
      },
    });
    added.then(
      (r) => {
        if (r.state === "serving")
          this.log(`${r.name} serves on ${gpus.length > 0 ? `GPU ${gpus.join(",")}` : "the CPU"}`);
      },
      () => {},
    );
  }
}
