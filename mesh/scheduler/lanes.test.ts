/**
 * A property test of the lanes a rollout makes: fast-check drives the real SchedulerCore (on
 * `node:sqlite`) with random submits (pinned or not), rollouts (a stable version, maybe a
 * canary with some share), stale rollouts, agents serving different versions asking for work
 * (pulled or parked), results, failures, lost agents and restarts, and a plain reference of
 * each job's lane. After every command: a pinned job never leaves its version's lane; a routed
 * job waits only in the current canary's lane; every lease respects its agent's reach and names
 * the version the rules say; an agent that got less than it asked for left nothing it could
 * take; and the in-memory lane counts equal the rows.
 *
 * `FC_NUM_RUNS` sets the number of runs.
 */
import * as fc from "fast-check";
import { assert, describe, it } from "vitest";
import type { ModelConfig } from "../../shared/api.ts";
import { assertExhaustive } from "../../shared/errors.ts";
import { newJobId } from "../../shared/ids.ts";
import { DEFAULT_TIERS } from "../../shared/slo.ts";
import { nodeSql } from "../sql/node.ts";
import type { Sql } from "../sql/sql.ts";
import { SchedulerCore, type AgentRef, type Lease } from "./core.ts";
import { idFraction, type LaneDesired } from "./versions.ts";

const NUM_RUNS = Number(process.env.FC_NUM_RUNS ?? 200);
const TIMEOUT_MS = 60_000 + NUM_RUNS * 50;
const T0 = Date.UTC(2026, 5, 1);
const VERSIONS = ["v1", "v2", "v3"] as const;
const TIERS = ["api", "free"] as const;
/** Agents and the versions each serves: one per version, one serving two, one naming none. */
const AGENTS: readonly AgentRef[] = [
  { id: "a_v1", pool: "p", versions: ["v1"] },
  { id: "a_v2", pool: "p", versions: ["v2"] },
  { id: "a_v3", pool: "p", versions: ["v3"] },
  { id: "a_v1v2", pool: "p", versions: ["v2", "v1"] },
  { id: "a_any", pool: "p", versions: [] },
];

const MODEL: ModelConfig = {
  name: "demo",
  number: 0,
  updated_at: "2026-01-01T00:00:00.000Z",
  input_schema: { type: "object" },
  max_attempts: 5,
  run_timeout_s: 600,
  queue_ttl_s: 86_400,
  retention_s: 86_400,
  expected_runtime_s: 10,
  shards: 1,
};

type Cmd =
  | { k: "enqueue"; pin: number; tier: number; n: number }
  | { k: "rollout"; stable: number; canary: number; percent: number }
  | { k: "stale" }
  | { k: "lease"; agent: number; want: number; park: boolean }
  | { k: "end"; pick: number; ok: boolean }
  | { k: "lost"; agent: number }
  | { k: "restart" };

const arbCmd: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      k: fc.constant("enqueue" as const),
      // 0–2: pinned to that version; 3–5: unpinned.
      pin: fc.nat({ max: 5 }),
      tier: fc.nat({ max: TIERS.length - 1 }),
      n: fc.integer({ min: 1, max: 4 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant("rollout" as const),
      stable: fc.nat({ max: 2 }),
      // 0–2: that version as the canary (none when it is the stable one); 3: no canary.
      canary: fc.nat({ max: 3 }),
      percent: fc.constantFrom(0, 30, 100),
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("stale" as const) }) },
  {
    weight: 5,
    arbitrary: fc.record({
      k: fc.constant("lease" as const),
      agent: fc.nat({ max: AGENTS.length - 1 }),
      want: fc.integer({ min: 1, max: 4 }),
      park: fc.boolean(),
    }),
  },
  { weight: 4, arbitrary: fc.record({ k: fc.constant("end" as const), pick: fc.nat(), ok: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("lost" as const), agent: fc.nat({ max: AGENTS.length - 1 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("restart" as const) }) },
);

/** A job as the reference holds it. */
interface RefJob {
  pin: string | null;
  lane: string | null;
  routed: boolean;
  status: "queued" | "running" | "done";
  agent: string | null;
  epoch: number;
}

interface World {
  sql: Sql;
  core: SchedulerCore;
  now: number;
  desired: LaneDesired | undefined;
  jobs: Map<string, RefJob>;
  /** Parked agents and how many more jobs each still waits for. */
  waiting: Map<string, number>;
}

function reachLanes(agent: AgentRef, desired: LaneDesired | undefined): (string | null)[] {
  const versions = agent.versions ?? [];
  const unpinned = versions.length === 0 || versions.some((v) => v !== desired?.canary?.version);
  return [...versions, ...(unpinned ? [null] : [])];
}

function expectedVersion(lane: string | null, agent: AgentRef, desired: LaneDesired | undefined): string | null {
  if (lane !== null) return lane;
  const versions = agent.versions ?? [];
  if (desired && versions.includes(desired.stable)) return desired.stable;
  return versions.find((v) => v !== desired?.canary?.version) ?? null;
}

/** A routed job whose lane is no longer the canary's goes back to the unpinned lane. */
function unroute(j: RefJob, desired: LaneDesired | undefined): void {
  if (j.routed && j.lane !== desired?.canary?.version) {
    j.lane = null;
    j.routed = false;
  }
}

/** Leases pushed to parked agents since the last look: checked, and their waits shortened. */
function takePushed(w: World): void {
  for (const [agentId, leases] of w.core.takeDeliveries()) {
    checkLeases(
      w,
      AGENTS.find((a) => a.id === agentId)!,
      leases,
    );
    const left = (w.waiting.get(agentId) ?? 0) - leases.length;
    assert.isAtLeast(left, 0, `${agentId} was pushed more than it waited for`);
    if (left > 0) w.waiting.set(agentId, left);
    else w.waiting.delete(agentId);
  }
}

function checkLeases(w: World, agent: AgentRef, leases: readonly Lease[]): void {
  const lanes = reachLanes(agent, w.desired);
  for (const l of leases) {
    const j = w.jobs.get(l.job_id);
    assert.isDefined(j, `leased an unknown job ${l.job_id}`);
    assert.strictEqual(j!.status, "queued", `${l.job_id} leased while ${j!.status}`);
    assert.include(lanes, j!.lane, `${agent.id} took ${l.job_id} from lane ${j!.lane}`);
    assert.strictEqual(l.version, expectedVersion(j!.lane, agent, w.desired), `version named by ${l.job_id}`);
    j!.status = "running";
    j!.agent = agent.id;
    j!.epoch = l.epoch;
  }
}

function run(w: World, cmd: Cmd): void {
  switch (cmd.k) {
    case "enqueue": {
      const pin = cmd.pin < VERSIONS.length ? (VERSIONS[cmd.pin] as string) : null;
      const items = Array.from({ length: cmd.n }, () => {
        w.now += 1;
        return {
          id: newJobId({ modelNumber: 0, shard: 0 }, w.now),
          account_id: `acc_${cmd.n}`,
          tier: TIERS[cmd.tier] as string,
          body: { model: "demo", input: {}, ...(pin === null ? {} : { version: pin }) },
        };
      });
      const out = w.core.enqueue(items, w.now, false);
      items.forEach((item, i) => {
        assert.isTrue(out[i]?.ok, "enqueue");
        const c = w.desired?.canary;
        const routed = pin === null && c !== undefined && idFraction(item.id) * 100 < c.percent;
        const lane = pin ?? (routed && c ? c.version : null);
        w.jobs.set(item.id, { pin, lane, routed, status: "queued", agent: null, epoch: 0 });
      });
      takePushed(w);
      return;
    }
    case "rollout":
    case "stale": {
      const revision = (w.desired?.revision ?? 0) + (cmd.k === "rollout" ? 1 : -1);
      let desired: LaneDesired;
      if (cmd.k === "stale") {
        // An older snapshot, whatever it says, changes nothing.
        desired = { stable: "v3", canary: { version: "v1", percent: 100 }, revision };
      } else {
        const stable = VERSIONS[cmd.stable] as string;
        const canary = cmd.canary < VERSIONS.length && cmd.canary !== cmd.stable ? VERSIONS[cmd.canary] : undefined;
        desired = { stable, ...(canary ? { canary: { version: canary, percent: cmd.percent } } : {}), revision };
      }
      w.now += 1;
      const changed = w.core.configure({ ...w.core.configured!, desired }, w.now);
      if (cmd.k === "stale") {
        assert.isFalse(changed, "a stale rollout was taken");
        return;
      }
      w.desired = desired;
      for (const j of w.jobs.values()) if (j.status === "queued") unroute(j, desired);
      takePushed(w);
      return;
    }
    case "lease": {
      const agent = AGENTS[cmd.agent]!;
      const room = 100 - held(w, agent.id);
      const asked = cmd.park ? Math.min(cmd.want, room) : room;
      const leases = w.core.lease(agent, 100, w.now, cmd.park ? cmd.want : undefined);
      checkLeases(w, agent, leases);
      if (cmd.park) {
        if (asked > leases.length) w.waiting.set(agent.id, asked - leases.length);
        else w.waiting.delete(agent.id);
      }
      if (leases.length < asked) {
        // Less than asked: nothing it may take is left queued.
        const lanes = reachLanes(agent, w.desired);
        const left = [...w.jobs].filter(([, j]) => j.status === "queued" && lanes.includes(j.lane));
        assert.deepEqual(
          left.map(([id]) => id),
          [],
          `${agent.id} got ${leases.length} of ${asked}`,
        );
      }
      return;
    }
    case "end": {
      const running = [...w.jobs].filter(([, j]) => j.status === "running");
      const picked = running[cmd.pick % Math.max(1, running.length)];
      if (!picked) return;
      const [id, j] = picked;
      w.now += 1;
      const result = cmd.ok
        ? { status: "succeeded" as const, outputs: [] }
        : { status: "failed" as const, code: "oom" as const, message: "x" };
      const out = w.core.complete({ job_id: id, epoch: j.epoch }, result, w.now, j.agent ?? undefined);
      assert.isTrue(out.ok, "complete");
      if (cmd.ok || (out.ok && out.status === "failed")) {
        j.status = "done";
      } else {
        j.status = "queued";
        j.agent = null;
        unroute(j, w.desired);
      }
      takePushed(w);
      return;
    }
    case "lost": {
      const agent = AGENTS[cmd.agent]!;
      w.now += 1;
      w.core.release(agent.id, "worker_lost", w.now);
      w.waiting.delete(agent.id);
      for (const j of w.jobs.values()) {
        if (j.status !== "running" || j.agent !== agent.id) continue;
        j.agent = null;
        j.status = "queued";
        unroute(j, w.desired);
      }
      // Attempts spent past max_attempts fail the job: the rows say which.
      for (const [id, j] of w.jobs) {
        const row = w.sql.all<{ status: string }>("SELECT status FROM jobs WHERE id = ?", id)[0];
        if (j.status === "queued" && row?.status === "failed") j.status = "done";
      }
      takePushed(w);
      return;
    }
    case "restart": {
      // Leases go with the old process's memory only as far as the scheduler keeps them: the
      // rows stay, and a rebuilt core counts its lanes from them.
      w.core = new SchedulerCore(w.sql, w.now);
      w.waiting.clear();
      return;
    }
    default:
      assertExhaustive(cmd);
  }
}

function held(w: World, agentId: string): number {
  return [...w.jobs.values()].filter((j) => j.status === "running" && j.agent === agentId).length;
}

function laneCounts(core: SchedulerCore): string[] {
  return core.queues
    .laneCounts()
    .map((c) => `${c.tier}|${c.lane}|${c.n}`)
    .sort();
}

function check(w: World): void {
  const rows = w.sql.all<{ id: string; version: string | null; routed: number; status: string }>(
    "SELECT id, version, routed, status FROM jobs",
  );
  assert.lengthOf(rows, w.jobs.size);
  for (const r of rows) {
    const j = w.jobs.get(r.id)!;
    assert.deepEqual({ lane: r.version, routed: r.routed === 1 }, { lane: j.lane, routed: j.routed }, r.id);
    // A job its owner pinned never leaves its version's lane.
    if (j.pin !== null) assert.strictEqual(r.version, j.pin, `pinned ${r.id} moved`);
    // A routed job waits only in the current canary's lane.
    if (r.status === "queued" && r.routed === 1) assert.strictEqual(r.version, w.desired?.canary?.version);
  }
  const counted = laneCounts(w.core);
  const stored = w.sql
    .all<{ tier: string; version: string | null; n: number }>(
      "SELECT tier, version, count(*) AS n FROM jobs WHERE status = 'queued' GROUP BY tier, version",
    )
    .map((c) => `${c.tier}|${c.version}|${c.n}`)
    .sort();
  assert.deepEqual(counted, stored, "lane counts in memory");
  // No parked agent waits while a job it may take is queued (re-laned jobs are pushed too).
  for (const [agentId, want] of w.waiting) {
    if (want <= 0) continue;
    const lanes = reachLanes(
      AGENTS.find((a) => a.id === agentId)!,
      w.desired,
    );
    const takeable = [...w.jobs].filter(([, j]) => j.status === "queued" && lanes.includes(j.lane));
    assert.deepEqual(
      takeable.map(([id]) => id),
      [],
      `${agentId} waits for ${want} while jobs it may take are queued`,
    );
  }
}

describe("lanes under rollouts", () => {
  it(
    "pinned jobs stay in their lanes, routed jobs follow the canary, leases respect each agent's reach, and the lane counts match the rows",
    () => {
      fc.assert(
        fc.property(fc.array(arbCmd, { maxLength: 80, size: "max" }), (cmds) => {
          const sql = nodeSql();
          const core = new SchedulerCore(sql, T0);
          core.configure({ model: MODEL, tiers: DEFAULT_TIERS.filter((t) => TIERS.includes(t.name as never)) }, T0);
          const w: World = { sql, core, now: T0, desired: undefined, jobs: new Map(), waiting: new Map() };
          for (const cmd of cmds) {
            run(w, cmd);
            check(w);
          }
          // A shard that wakes up on the same rows counts the same lanes.
          assert.deepEqual(laneCounts(new SchedulerCore(sql, w.now)), laneCounts(w.core));
        }),
        { numRuns: NUM_RUNS },
      );
    },
    TIMEOUT_MS,
  );
});
