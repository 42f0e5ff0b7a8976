/**
 * An agent serving what `agent.desired` says, end to end inside the agent: the version manager,
 * the fetcher and the pool, against the fake edge (./../testing/edge.ts), with runners that run
 * in this process so a test controls when each job ends.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { LeaseGrant, VersionState } from "../../shared/wire.ts";
import { Agent } from "../agent.ts";
import type { RunnerLike } from "../runner/like.ts";
import { FakeEdge, makeVersion, type StoredVersion } from "../testing/edge.ts";
import { type EvictionMarks, pinPath } from "./evict.ts";
import { VersionCache } from "./fetch.ts";
import type { ReplicaLaunch } from "./manager.ts";

const JOB = (n: number): string => `job_${String(n).padStart(30, "0")}`;

function lease(n: number, version: string | null, model = "demo"): LeaseGrant {
  return { job_id: JOB(n), epoch: 1, deadline: Date.now() + 30_000, attempt: 1, model, version, input: {} };
}

function manifest(version: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    format: 1,
    model: "demo",
    version,
    runner: "demo",
    input_schema: { type: "object" },
    resources: { gpus: 0 },
    max_batch: 2,
    ...extra,
  };
}

/** Runners in this process: each job waits for its gate, and is recorded with where it ran. */
class Runners {
  readonly ran: { job: string; version: string; replica: number }[] = [];
  readonly started: ReplicaLaunch[] = [];
  readonly closed: number[] = [];
  private readonly gates = new Map<string, PromiseWithResolvers<void>>();
  /** Versions whose start fails (as a runner.load_failed would). */
  readonly failing = new Set<string>();
  /** When set, every job waits for its gate. */
  gated = false;

  gate(job: string): PromiseWithResolvers<void> {
    let g = this.gates.get(job);
    if (!g) {
      g = Promise.withResolvers<void>();
      this.gates.set(job, g);
    }
    return g;
  }

  start = async (launch: ReplicaLaunch): Promise<RunnerLike> => {
    this.started.push(launch);
    if (this.failing.has(launch.version))
      throw new Error(`its runner could not load it (model_error): broken on purpose`);
    let alive = true;
    const exited = Promise.withResolvers<{ reason: string }>();
    return {
      maxBatch: launch.manifest.max_batch,
      models: [{ model: launch.model, version: launch.version }],
      run: async (job) => {
        this.ran.push({ job: job.job_id, version: job.version, replica: launch.replica });
        if (this.gated) await this.gate(job.job_id).promise;
        return { frames: [], outputs: [] };
      },
      cancel: () => {},
      close: async () => {
        alive = false;
        this.closed.push(launch.replica);
        exited.resolve({ reason: "closed" });
      },
      get alive() {
        return alive;
      },
      exited: exited.promise,
    };
  };
}

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).toReversed()) await c();
});

async function world(
  gpus: number[] = [],
  heartbeatMs = 60_000,
  eviction?: EvictionMarks,
): Promise<{ edge: FakeEdge; agent: Agent; runners: Runners; logs: string[]; cache: string }> {
  const edge = await FakeEdge.start({ heartbeatMs });
  const cache = mkdtempSync(join(tmpdir(), "fg-serving-"));
  const runners = new Runners();
  const logs: string[] = [];
  const agent = new Agent({
    url: edge.url,
    token: "t".repeat(40),
    name: "test",
    agentId: "agt_0000000000000009",
    prefetch: 1,
    maxVramPct: 100,
    serve: {
      gpus,
      cacheDir: cache,
      startRunner: runners.start,
      fetch: { backoff: { baseMs: 1, maxMs: 5 }, tries: 2 },
      // Long enough for a 100 ms heartbeat to tell it.
      retry: { baseMs: 800, maxMs: 800 },
      ...(eviction ? { eviction } : {}),
    },
    encoder: {
      outputs: async () => [],
      preview: async () => ({ content_type: "image/png", data: new Uint8Array() }),
    },
    gpus: async () => [],
    log: (l) => logs.push(l),
  });
  cleanup.push(
    () => rmSync(cache, { recursive: true, force: true }),
    () => edge.close(),
    () => agent.close(),
  );
  await agent.start();
  return { edge, agent, runners, logs, cache };
}

/** The versions and slots of the last hello or heartbeat. */
function told(edge: FakeEdge): { versions: VersionState[]; slots: number | undefined } | undefined {
  const last = edge.received.findLast((m) => m.type === "agent.heartbeat" || m.type === "agent.hello");
  if (!last || (last.type !== "agent.heartbeat" && last.type !== "agent.hello")) return undefined;
  return { versions: last.versions, slots: last.slots };
}

const stateOf = (edge: FakeEdge, version: string): string | undefined =>
  told(edge)?.versions.find((v) => v.version === version)?.state;

const desired = (stable: StoredVersion, canary?: StoredVersion) => [
  {
    model: "demo",
    stable: { version: stable.record.manifest.version, digest: stable.record.digest },
    ...(canary
      ? { canary: { version: canary.record.manifest.version, digest: canary.record.digest, percent: 50 } }
      : {}),
  },
];

/** The one piece of a version's file. */
const pieceOf = (v: StoredVersion, path: string): string => v.record.files.find((f) => f.path === path)!.pieces[0]!;

const results = (edge: FakeEdge) => edge.of("job.results").flatMap((m) => m.results);

describe("an agent serving the rollout", () => {
  it("without a runner it asks for no work until agent.desired names a version, then fetches it and says it serves at once, with its slots", async () => {
    const { edge, agent, runners } = await world();
    const v1 = edge.add(await makeVersion(manifest("1"), { "weights.bin": "w1" }));
    await edge.until("the hello", () => edge.of("agent.hello")[0]);
    expect(edge.of("agent.hello")[0]).toMatchObject({ versions: [], slots: 1 });
    expect(agent.credits()).toBe(0);
    expect(edge.of("work.request")).toEqual([]);
    edge.desire(desired(v1));
    // Told long before the periodic heartbeat (60 s here).
    await edge.until("demo@1 serving", () => (stateOf(edge, "1") === "serving" ? true : undefined));
    expect(told(edge)?.slots).toBe(2);
    expect(runners.started).toMatchObject([{ model: "demo", version: "1", gpus: [] }]);
    expect(edge.of("agent.heartbeat").some((h) => h.versions.some((v) => v.state === "loading"))).toBe(true);
    expect(agent.credits()).toBe(3);
  });

  it("a lease runs on a replica of the version it names: stable and canary side by side", async () => {
    const { edge, runners } = await world();
    const s = edge.add(await makeVersion(manifest("s"), { "w.bin": "s" }));
    const c = edge.add(await makeVersion(manifest("c"), { "w.bin": "c" }));
    edge.desire(desired(s, c));
    await edge.until("both serving", () =>
      stateOf(edge, "s") === "serving" && stateOf(edge, "c") === "serving" ? true : undefined,
    );
    edge.lease([lease(1, "c"), lease(2, "s"), lease(3, null)]);
    await edge.until("3 results", () => (results(edge).length === 3 ? true : undefined));
    const replicaOf = Object.fromEntries(runners.started.map((l) => [l.replica, l.version]));
    expect(runners.ran.map((r) => [r.job, r.version, replicaOf[r.replica]])).toEqual([
      [JOB(1), "c", "c"],
      [JOB(2), "s", "s"],
      [JOB(3), "s", "s"],
    ]);
  });

  it("a switch loses no job: the old version finishes what it runs, new leases run on the new one, and the old one's runner stops", async () => {
    const { edge, runners } = await world();
    const v1 = edge.add(await makeVersion(manifest("1"), { "w.bin": "one" }));
    const v2 = edge.add(await makeVersion(manifest("2"), { "w.bin": "two" }));
    edge.desire(desired(v1));
    await edge.until("v1 serving", () => (stateOf(edge, "1") === "serving" ? true : undefined));
    runners.gated = true;
    edge.lease([lease(1, "1"), lease(2, "1")]);
    await edge.until("both running on v1", () => (runners.ran.length === 2 ? true : undefined));
    edge.desire(desired(v2));
    await edge.until("v2 serving", () => (stateOf(edge, "2") === "serving" ? true : undefined));
    // The old version is no longer reported, but its jobs run on.
    expect(told(edge)?.versions).toEqual([{ model: "demo", version: "2", state: "serving" }]);
    expect(runners.closed).toEqual([]);
    edge.lease([lease(3, "2")]);
    await edge.until("job 3 running", () => (runners.ran.length === 3 ? true : undefined));
    runners.gate(JOB(1)).resolve();
    runners.gate(JOB(2)).resolve();
    runners.gate(JOB(3)).resolve();
    await edge.until("3 results", () => (results(edge).length === 3 ? true : undefined));
    expect(results(edge).map((r) => r.status)).toEqual(["succeeded", "succeeded", "succeeded"]);
    expect(runners.ran.map((r) => r.version)).toEqual(["1", "1", "2"]);
    // v1's runner stopped once its jobs ended.
    const v1Replica = runners.started.find((l) => l.version === "1")?.replica;
    await edge.until("v1's runner closed", () => (runners.closed.includes(v1Replica ?? -1) ? true : undefined));
    expect(edge.of("job.release")).toEqual([]);
  });

  it("with the cache past its mark, the version served stays and the one switched away from is evicted once its runner stops", async () => {
    const marks = { highBytes: 1, lowBytes: 0, diskHighPct: 100, diskLowPct: 99 };
    const { edge, runners, cache: dir } = await world([], 60_000, marks);
    const cache = new VersionCache(dir);
    const v1 = edge.add(await makeVersion(manifest("1"), { "w.bin": "one" }));
    const v2 = edge.add(await makeVersion(manifest("2"), { "w.bin": "two" }));
    edge.desire(desired(v1));
    await edge.until("v1 serving", () => (stateOf(edge, "1") === "serving" ? true : undefined));
    // Evicted after its fetch, had it not been pinned.
    expect(existsSync(cache.recordPath("demo", "1"))).toBe(true);
    expect(JSON.parse(readFileSync(pinPath(cache), "utf8")).versions).toEqual(["demo/1"]);
    edge.desire(desired(v2));
    await edge.until("v2 serving", () => (stateOf(edge, "2") === "serving" ? true : undefined));
    const v1Replica = runners.started.find((l) => l.version === "1")?.replica;
    await edge.until("v1's runner closed", () => (runners.closed.includes(v1Replica ?? -1) ? true : undefined));
    await edge.until("v1 evicted", () =>
      !existsSync(cache.recordPath("demo", "1")) && !existsSync(cache.dir("demo", "1")) ? true : undefined,
    );
    expect(existsSync(cache.piece(v1.record.files[0]!.pieces[0]!))).toBe(false);
    expect(existsSync(join(cache.dir("demo", "2"), "w.bin"))).toBe(true);
    expect(JSON.parse(readFileSync(pinPath(cache), "utf8")).versions).toEqual(["demo/2"]);
  });

  it("a version purged from the fleet is deleted from the cache once its runner stops, with the pieces no other version uses", async () => {
    const { edge, runners, cache: dir } = await world();
    const cache = new VersionCache(dir);
    const shared = "shared weights ".repeat(100);
    const v1 = edge.add(await makeVersion(manifest("1"), { "w.bin": "one", "s.bin": shared }));
    const v2 = edge.add(await makeVersion(manifest("2"), { "w.bin": "two", "s.bin": shared }));
    edge.desire(desired(v1));
    await edge.until("v1 serving", () => (stateOf(edge, "1") === "serving" ? true : undefined));
    // Purged while it still serves here: it waits for its runner to stop.
    edge.desire(desired(v2), [{ model: "demo", version: "1" }]);
    await edge.until("v2 serving", () => (stateOf(edge, "2") === "serving" ? true : undefined));
    const v1Replica = runners.started.find((l) => l.version === "1")?.replica;
    await edge.until("v1's runner closed", () => (runners.closed.includes(v1Replica ?? -1) ? true : undefined));
    await edge.until("v1 purged", () =>
      !existsSync(cache.recordPath("demo", "1")) && !existsSync(cache.dir("demo", "1")) ? true : undefined,
    );
    expect(existsSync(cache.piece(pieceOf(v1, "w.bin")))).toBe(false);
    // The piece v2 shares stays, and v2 whole.
    expect(existsSync(cache.piece(pieceOf(v1, "s.bin")))).toBe(true);
    expect(readFileSync(join(cache.dir("demo", "2"), "s.bin"), "utf8")).toBe(shared);
  });

  it("a version that fails to load is reported failed with why, and the old one keeps serving", async () => {
    const { edge, runners } = await world();
    const v1 = edge.add(await makeVersion(manifest("1"), { "w.bin": "one" }));
    const v2 = edge.add(await makeVersion(manifest("2"), { "w.bin": "two" }));
    runners.failing.add("2");
    edge.desire(desired(v1));
    await edge.until("v1 serving", () => (stateOf(edge, "1") === "serving" ? true : undefined));
    edge.desire(desired(v2));
    await edge.until("v2 failed", () => (stateOf(edge, "2") === "failed" ? true : undefined));
    expect(told(edge)?.versions).toEqual([
      { model: "demo", version: "1", state: "serving" },
      {
        model: "demo",
        version: "2",
        state: "failed",
        message: "its runner could not load it (model_error): broken on purpose",
      },
    ]);
    edge.lease([lease(1, null)]);
    await edge.until("a result", () => (results(edge).length === 1 ? true : undefined));
    expect(runners.ran).toMatchObject([{ job: JOB(1), version: "1" }]);
  });

  it("a corrupted piece in the store is refused: the version is reported failed naming the piece, and never started", async () => {
    const { edge, runners, logs } = await world();
    const v1 = edge.add(await makeVersion(manifest("1"), { "a.bin": "aaaa", "b.bin": "bbbb" }));
    const bad = v1.record.files[1]!.pieces[0]!;
    edge.corrupt.add(bad);
    edge.desire(desired(v1));
    await edge.until("v1 failed", () => (stateOf(edge, "1") === "failed" ? true : undefined));
    const state = told(edge)?.versions[0];
    expect(state?.message).toContain(`piece ${bad} of demo@1 from the edge hashes to`);
    expect(state?.message).toContain("refused");
    expect(logs.some((l) => l.includes(bad) && l.includes("refused"))).toBe(true);
    expect(runners.started).toEqual([]);
  });

  it("an edge that cannot answer leaves the version loading, saying why, and it is fetched again later", async () => {
    // Progress and retries are told by the periodic heartbeats (only a change of state by one at once).
    const { edge } = await world([], 100);
    const v1 = edge.add(await makeVersion(manifest("1"), { "w.bin": "one" }));
    edge.failNext.set("/v1/agent/pieces/", { status: 503, times: 2 });
    edge.desire(desired(v1));
    await edge.until("a retry said", () =>
      edge.of("agent.heartbeat").find((h) => h.versions.some((v) => v.message?.includes("trying again in"))),
    );
    expect(edge.of("agent.heartbeat").some((h) => h.versions.some((v) => v.state === "failed"))).toBe(false);
    await edge.until("v1 serving", () => (stateOf(edge, "1") === "serving" ? true : undefined));
  });

  it("a lease of a version no replica here serves goes back at once, without spending an attempt", async () => {
    const { edge } = await world();
    const v1 = edge.add(await makeVersion(manifest("1"), { "w.bin": "one" }));
    edge.desire(desired(v1));
    await edge.until("v1 serving", () => (stateOf(edge, "1") === "serving" ? true : undefined));
    edge.lease([lease(7, "0.9")]);
    const released = await edge.until("a release", () => edge.of("job.release")[0]);
    expect(released).toMatchObject({ leases: [{ job_id: JOB(7), epoch: 1 }], reason: "preempted" });
  });

  it("a canary that does not fit beside the stable is not loaded, and the stable keeps all its GPUs", async () => {
    const { edge, runners } = await world([0]);
    const s = edge.add(await makeVersion(manifest("s", { resources: { gpus: 1 } }), { "w.bin": "s" }));
    const c = edge.add(await makeVersion(manifest("c", { resources: { gpus: 1 } }), { "w.bin": "c" }));
    edge.desire(desired(s, c));
    // Once the canary's manifest is known (fetched), it is not reported: it runs nowhere here.
    await edge.until("s serving alone", () =>
      JSON.stringify(told(edge)?.versions) === JSON.stringify([{ model: "demo", version: "s", state: "serving" }])
        ? true
        : undefined,
    );
    expect(runners.started.map((l) => [l.version, l.gpus])).toEqual([["s", [0]]]);
  });
});

describe("an agent started with --runner", () => {
  it("ignores agent.desired and goes on serving its runner", async () => {
    const edge = await FakeEdge.start();
    const ran: string[] = [];
    const agent = new Agent({
      url: edge.url,
      token: "t".repeat(40),
      name: "fixed",
      agentId: "agt_000000000000000a",
      prefetch: 0,
      maxVramPct: 100,
      startRunner: async () => ({
        maxBatch: 1,
        models: [{ model: "demo", version: "0.1.0" }],
        run: async (job) => {
          ran.push(`${job.job_id}@${job.version}`);
          return { frames: [], outputs: [] };
        },
        cancel: () => {},
        close: async () => {},
        alive: true,
        exited: new Promise(() => {}),
      }),
      encoder: {
        outputs: async () => [],
        preview: async () => ({ content_type: "image/png", data: new Uint8Array() }),
      },
      gpus: async () => [],
      log: () => {},
    });
    cleanup.push(
      () => edge.close(),
      () => agent.close(),
    );
    const seen = new Promise((res) => agent.once("desired", res));
    await agent.start();
    await edge.until("the hello", () => edge.of("agent.hello")[0]);
    edge.desire([{ model: "demo", stable: { version: "9", digest: "a".repeat(64) } }]);
    await seen;
    edge.lease([lease(1, null)]);
    await edge.until("a result", () => (results(edge).length === 1 ? true : undefined));
    expect(ran).toEqual([`${JOB(1)}@0.1.0`]);
    expect(edge.requests).toEqual([]);
    expect(edge.of("agent.hello")[0]?.versions).toEqual([{ model: "demo", version: "0.1.0", state: "serving" }]);
  });
});
