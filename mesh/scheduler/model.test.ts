/**
 * Model-based tests of SchedulerCore: fast-check drives the real core (on an in-memory
 * `node:sqlite` database) and a plain reference model (Maps) with the same random commands,
 * and after every command checks that the two agree and that the scheduler's invariants hold.
 * The model covers pull leases and push dispatch to parked agents alike.
 *
 * What agents send about their leases (heartbeats, progress, results) travels as messages in
 * flight: fast-check's scheduler decides when each arrives and in which order, so a result can
 * reach the core after its lease expired and the job went to another agent, a heartbeat after
 * the result it preceded, and messages from an agent that died after sending them.
 *
 * `FC_NUM_RUNS` sets the number of runs (`npm run fuzz:scheduler` runs 5000).
 */
import * as fc from "fast-check";
import { assert, describe, it } from "vitest";
import type { ModelConfig } from "../../shared/api.ts";
import { assertExhaustive } from "../../shared/errors.ts";
import { newJobId } from "../../shared/ids.ts";
import { canTransition, isTerminal, type JobStatus } from "../../shared/job.ts";
import type { TierConfig } from "../../shared/slo.ts";
import { nodeSql } from "../sql/node.ts";
import type { Sql } from "../sql/sql.ts";
import {
  DEFAULT_LEASE_TTL_MS,
  SchedulerCore,
  type Completion,
  type EnqueueItem,
  type Lease,
  type LeaseRef,
} from "./core.ts";
import type { JobRow } from "./store.ts";

const NUM_RUNS = Number(process.env.FC_NUM_RUNS ?? 200);
/** About 25 ms a run on a small machine, plus room for shrinking a failure (ms). */
const TIMEOUT_MS = 60_000 + NUM_RUNS * 50;
/** How long a parked request for work stands (ms); mirrors PARK_MS in core.ts. */
const PARK_MS = 15_000;
const T0 = Date.UTC(2026, 0, 1);
const ROUTE = { modelNumber: 0, shard: 0 };

/**
 * Tiers for the model run: `plus` and `bulk` share an SLO so that ties go to the tier name, and
 * `free` has a small admission multiple so that admission refusals happen within a run.
 */
const TIERS: TierConfig[] = [
  { name: "api", slo_s: 120, admission_k: 8, rate_limit_per_min: 60_000 },
  { name: "plus", slo_s: 300, admission_k: 4, rate_limit_per_min: 6_000 },
  { name: "bulk", slo_s: 300, admission_k: 4, rate_limit_per_min: 6_000 },
  { name: "free", slo_s: 1800, admission_k: 0.1, rate_limit_per_min: 60 },
];
const ACCOUNTS = ["acc_a", "acc_b", "acc_c"];
const AGENTS = ["agent_0", "agent_1", "agent_2"];

function modelConfig(over: Partial<ModelConfig>): ModelConfig {
  return {
    name: "demo",
    number: 0,
    updated_at: "2026-01-01T00:00:00.000Z",
    input_schema: { type: "object" },
    max_attempts: 3,
    run_timeout_s: 600,
    queue_ttl_s: 86_400,
    retention_s: 7 * 86_400,
    expected_runtime_s: 10,
    shards: 1,
    ...over,
  };
}

type Cmd =
  | { k: "enqueue"; account: number; tier: number; n: number }
  | { k: "duplicate"; pick: number; account: number; tier: number; deleted: boolean }
  | { k: "lease"; agent: number; capacity: number; park: boolean; maxNew: number }
  | { k: "heartbeat"; agent: number }
  | { k: "progress"; agent: number; pick: number; stale: boolean }
  | { k: "complete"; agent: number; pick: number; stale: boolean }
  | { k: "fail"; agent: number; pick: number; retryable: boolean; stale: boolean }
  | { k: "deliver"; n: number }
  | { k: "advance"; ms: number }
  | { k: "sweep" }
  | { k: "die"; agent: number }
  | { k: "cancel"; pick: number; owner: boolean }
  | { k: "release"; agent: number; reason: "worker_lost" | "drained" | "preempted" }
  | { k: "releaseLeases"; agent: number; pick: number; reason: "drained" | "preempted" }
  | { k: "undeliver"; agent: number; pick: number }
  | { k: "unpark"; agent: number }
  | { k: "remove"; pick: number; owner: boolean };

const arbAgent = fc.nat({ max: AGENTS.length - 1 });
/** Mostly a lease the agent holds; now and then any lease ever granted (a zombie's or an impostor's). */
const arbStale = fc.oneof({ weight: 3, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) });

const arbCmd: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      k: fc.constant("enqueue" as const),
      account: fc.nat({ max: ACCOUNTS.length - 1 }),
      tier: fc.nat({ max: TIERS.length - 1 }),
      n: fc.integer({ min: 1, max: 3 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant("duplicate" as const),
      pick: fc.nat(),
      account: fc.nat({ max: ACCOUNTS.length - 1 }),
      tier: fc.nat({ max: TIERS.length - 1 }),
      // Prefer an id that was deleted (retention or remove), when there is one.
      deleted: fc.boolean(),
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      k: fc.constant("lease" as const),
      agent: arbAgent,
      capacity: fc.integer({ min: 0, max: 3 }),
      // A parked request (the agent actor's way) waits for the next enqueue or requeue.
      park: fc.boolean(),
      maxNew: fc.integer({ min: 0, max: 3 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("heartbeat" as const), agent: arbAgent }) },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant("progress" as const), agent: arbAgent, pick: fc.nat(), stale: arbStale }),
  },
  {
    weight: 4,
    arbitrary: fc.record({ k: fc.constant("complete" as const), agent: arbAgent, pick: fc.nat(), stale: arbStale }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant("fail" as const),
      agent: arbAgent,
      pick: fc.nat(),
      retryable: fc.boolean(),
      stale: arbStale,
    }),
  },
  // The scheduler picks which of the messages in flight arrive.
  { weight: 3, arbitrary: fc.record({ k: fc.constant("deliver" as const), n: fc.integer({ min: 1, max: 3 }) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      k: fc.constant("advance" as const),
      // Often short (parked requests stand 15 s), up to two lease lifetimes.
      ms: fc.oneof(fc.integer({ min: 0, max: 5_000 }), fc.integer({ min: 0, max: 2 * DEFAULT_LEASE_TTL_MS })),
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("sweep" as const) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("die" as const), agent: arbAgent }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("cancel" as const), pick: fc.nat(), owner: fc.boolean() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("release" as const),
      agent: arbAgent,
      reason: fc.constantFrom("worker_lost" as const, "drained" as const, "preempted" as const),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("releaseLeases" as const),
      agent: arbAgent,
      pick: fc.nat(),
      reason: fc.constantFrom("drained" as const, "preempted" as const),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant("undeliver" as const), agent: arbAgent, pick: fc.nat() }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("unpark" as const), agent: arbAgent }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("remove" as const), pick: fc.nat(), owner: fc.boolean() }) },
);

const arbConfig = fc.record({
  max_attempts: fc.integer({ min: 1, max: 3 }),
  queue_ttl_s: fc.constantFrom(60, 300, 3600),
  retention_s: fc.constantFrom(60, 600),
  expected_runtime_s: fc.constantFrom(1, 10, 60),
  run_timeout_s: fc.constantFrom(45, 600),
});

/** A job as the reference model holds it. */
interface MJob {
  id: string;
  account: string;
  tier: string;
  status: JobStatus;
  tag: number;
  enqueuedAt: number;
  epoch: number;
  agent: string | null;
  deadline: number | null;
  spent: number;
  finishedAt: number | null;
  /** Attempts recorded: grants, less those taken back as undelivered. */
  attempts: number;
  grantedAt: number | null;
  /** The outputs of the one result accepted, as stored. */
  outputs: string | null;
}

interface Grant {
  agent: number;
  job_id: string;
  epoch: number;
}

/** A message an agent sent about its leases, in flight until the scheduler delivers it. */
type Msg =
  | { k: "heartbeat"; agent: number; refs: LeaseRef[] }
  | { k: "progress"; agent: number; ref: LeaseRef }
  | { k: "result"; agent: number; ref: LeaseRef; result: "succeeded" | "retryable" | "fatal" }
  /** The agent actor's reconnect grace ran out after the agent's `life`-th death. */
  | { k: "lost"; agent: number; life: number };

function label(msg: Msg): string {
  const who = AGENTS[msg.agent]!;
  switch (msg.k) {
    case "heartbeat":
      return `heartbeat ${who} [${msg.refs.map((r) => `${r.job_id}@${r.epoch}`).join(" ")}]`;
    case "progress":
      return `progress ${who} ${msg.ref.job_id}@${msg.ref.epoch}`;
    case "result":
      return `${msg.result} ${who} ${msg.ref.job_id}@${msg.ref.epoch}`;
    case "lost":
      return `grace over ${who} (death ${msg.life})`;
    default:
      return assertExhaustive(msg);
  }
}

/**
 * The network between agents and the core: every message is a task of fast-check's scheduler,
 * which picks the next to arrive among those in flight.
 */
class Net {
  private readonly s: fc.Scheduler;
  private readonly arrived: Msg[] = [];

  constructor(s: fc.Scheduler) {
    this.s = s;
  }

  send(msg: Msg): void {
    void this.s.schedule(Promise.resolve(msg), label(msg)).then((m) => this.arrived.push(m));
  }

  inFlight(): number {
    return this.s.count();
  }

  /** Lets the scheduler deliver one message in flight; answers what arrived. */
  async next(): Promise<Msg[]> {
    await this.s.waitOne();
    await new Promise((resolve) => setImmediate(resolve));
    return this.arrived.splice(0);
  }
}

/** A lease as the checks compare it. */
interface LeaseShape {
  job_id: string;
  epoch: number;
  deadline: number;
  attempt: number;
}

function shape(l: Lease): LeaseShape {
  return { job_id: l.job_id, epoch: l.epoch, deadline: l.deadline, attempt: l.attempt };
}

/** The reference model: plain Maps and the rules of DESIGN.md, written out the simple way. */
class Model {
  now = T0;
  readonly config: ModelConfig;
  readonly jobs = new Map<string, MJob>();
  /** Every id ever accepted, with its account, for commands that pick an existing job. */
  readonly minted: { id: string; account: string }[] = [];
  /** Leases the last sweep ended without their holders asking. */
  readonly revoked: { agent: string; job_id: string; epoch: number }[] = [];
  readonly deleted = new Set<string>();
  /** The last epoch of each deleted job, as the core's tombstones keep it. */
  readonly tombstones = new Map<string, number>();
  readonly lastTag = new Map<string, number>();
  /** Each tier's virtual time: the largest tag it has served. */
  readonly vt = new Map<string, number>();
  /** What each agent believes it holds: job id → epoch. */
  readonly beliefs: Map<string, number>[] = AGENTS.map(() => new Map<string, number>());
  /** Every lease ever granted, for stale results. */
  readonly grants: Grant[] = [];
  /** Parked requests for work, in the order they were parked. */
  readonly waiting = new Map<number, { capacity: number; want: number; until: number }>();
  /** Leases pushed to parked agents and not yet taken. */
  readonly deliveries = new Map<number, LeaseShape[]>();
  /** Whether each agent's process runs; a dead one sends nothing until it connects again. */
  readonly alive: boolean[] = AGENTS.map(() => true);
  /** How many times each agent died. */
  readonly lives: number[] = AGENTS.map(() => 0);
  runtime: number | undefined;

  constructor(config: ModelConfig) {
    this.config = config;
  }

  cost(): number {
    return this.runtime ?? this.config.expected_runtime_s;
  }

  finish(job: MJob, status: JobStatus): void {
    job.status = status;
    job.finishedAt = this.now;
    job.agent = null;
    job.deadline = null;
  }

  requeue(job: MJob, spend: boolean): void {
    if (spend) job.spent += 1;
    if (job.spent >= this.config.max_attempts) {
      this.finish(job, "failed");
      return;
    }
    job.status = "queued";
    job.agent = null;
    job.deadline = null;
  }

  queued(): number {
    let n = 0;
    for (const j of this.jobs.values()) if (j.status === "queued") n++;
    return n;
  }

  /** The job the next grant must take: each tier's (tag, id) head, then largest wait/SLO, SLO, name. */
  /** Per tier: whether its last grant won on its backlog went to its oldest job. */
  backlogTurn = new Map<string, boolean>();

  /**
   * The next pick: the tier whose oldest queued job has the largest wait/SLO; its head by tag
   * when the head's own wait/SLO is at least every other tier's oldest's, else alternately its
   * oldest job (by enqueue time, then id; out of tag order) and its head.
   */
  expectedPick(): { job: MJob; inTagOrder: boolean } | undefined {
    const ranks: { head: MJob; oldest: MJob; u: number; headU: number; slo: number; name: string }[] = [];
    const byId = (a: MJob, b: MJob): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    for (const t of TIERS) {
      const queued = [...this.jobs.values()].filter((j) => j.status === "queued" && j.tier === t.name);
      const head = [...queued].sort((a, b) => a.tag - b.tag || byId(a, b))[0];
      const oldest = [...queued].sort((a, b) => a.enqueuedAt - b.enqueuedAt || byId(a, b))[0];
      if (head && oldest) {
        ranks.push({
          head,
          oldest,
          u: Math.max(0, this.now - oldest.enqueuedAt) / 1000 / t.slo_s,
          headU: Math.max(0, this.now - head.enqueuedAt) / 1000 / t.slo_s,
          slo: t.slo_s,
          name: t.name,
        });
      }
    }
    ranks.sort((a, b) => b.u - a.u || a.slo - b.slo || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const best = ranks[0];
    if (!best) return undefined;
    if (best.oldest === best.head) return { job: best.head, inTagOrder: true };
    const rival = Math.max(-1, ...ranks.slice(1).map((r) => r.u));
    if (best.headU >= rival) return { job: best.head, inTagOrder: true };
    const toOldest = !(this.backlogTurn.get(best.name) ?? false);
    this.backlogTurn.set(best.name, toOldest);
    return toOldest ? { job: best.oldest, inTagOrder: false } : { job: best.head, inTagOrder: true };
  }

  /** Grants up to `n` leases to an agent, each the expected pick. */
  grant(agent: number, n: number): LeaseShape[] {
    const out: LeaseShape[] = [];
    while (out.length < n) {
      const pick = this.expectedPick();
      if (!pick) break;
      const job = pick.job;
      job.status = "running";
      job.epoch += 1;
      if (pick.inTagOrder) this.vt.set(job.tier, Math.max(this.vt.get(job.tier) ?? 0, job.tag));
      job.agent = AGENTS[agent]!;
      job.deadline = this.now + DEFAULT_LEASE_TTL_MS;
      job.attempts += 1;
      job.grantedAt = this.now;
      // Epochs are never reused: every earlier grant of this job had a smaller one.
      for (const g of this.grants) {
        if (g.job_id === job.id) assert.isBelow(g.epoch, job.epoch, `epoch reused by ${job.id}`);
      }
      this.grants.push({ agent, job_id: job.id, epoch: job.epoch });
      this.beliefs[agent]!.set(job.id, job.epoch);
      // The attempt a lease names counts spent attempts, never past max_attempts.
      const attempt = job.spent + 1;
      assert.isAtMost(attempt, this.config.max_attempts, `${job.id} granted past max_attempts`);
      out.push({ job_id: job.id, epoch: job.epoch, deadline: job.deadline, attempt });
    }
    return out;
  }

  park(agent: number, capacity: number, want: number): void {
    this.waiting.delete(agent);
    if (want > 0) this.waiting.set(agent, { capacity, want, until: this.now + PARK_MS });
  }

  /** Push: parked agents, oldest first, get queued work up to their credits. */
  dispatch(): void {
    // A snapshot: entries are deleted and set again (to the end) while walking.
    for (const [agent, w] of Array.from(this.waiting)) {
      if (this.queued() === 0) return;
      if (w.until < this.now) {
        this.waiting.delete(agent);
        continue;
      }
      // Credits hold for pushed leases too: never more than the capacity it parked with.
      const room = Math.max(0, w.capacity - this.heldBy(AGENTS[agent]!).length);
      const leases = this.grant(agent, Math.min(w.want, room));
      this.waiting.delete(agent);
      if (leases.length === 0) continue;
      if (w.want - leases.length > 0) this.waiting.set(agent, { ...w, want: w.want - leases.length });
      this.deliveries.set(agent, [...(this.deliveries.get(agent) ?? []), ...leases]);
    }
  }

  heldBy(agent: string): MJob[] {
    return [...this.jobs.values()].filter((j) => j.status === "running" && j.agent === agent);
  }

  /** Whether a ref names the lease an agent holds now. */
  holds(agent: string, ref: LeaseRef): MJob | undefined {
    const j = this.jobs.get(ref.job_id);
    return j && j.status === "running" && j.agent === agent && j.epoch === ref.epoch ? j : undefined;
  }

  /**
   * When the next sweep is due. `wokeAt`: a shard that woke up then (a restart) gives every
   * running lease a lease time from then, whatever its deadline was.
   */
  nextDeadline(wokeAt?: number): number | undefined {
    const times: number[] = [];
    for (const j of this.jobs.values()) {
      if (j.status === "running" && j.deadline !== null) {
        times.push(wokeAt === undefined ? j.deadline : Math.max(j.deadline, wokeAt + DEFAULT_LEASE_TTL_MS));
      }
      if (j.status === "queued") times.push(j.enqueuedAt + this.config.queue_ttl_s * 1000);
      if (j.finishedAt !== null) times.push(j.finishedAt + this.config.retention_s * 1000);
    }
    return times.length === 0 ? undefined : Math.min(...times);
  }

  /** A lease the agent believes it holds (`stale`: any lease ever granted, to anyone). */
  pickRef(agent: number, pick: number, stale: boolean): Grant | undefined {
    const candidates: Grant[] = stale
      ? this.grants
      : [...this.beliefs[agent]!].map(([job_id, epoch]) => ({ agent, job_id, epoch }));
    return candidates[pick % Math.max(1, candidates.length)];
  }

  pickJob(pick: number): { id: string; account: string } | undefined {
    return this.minted[pick % Math.max(1, this.minted.length)];
  }
}

interface Real {
  sql: Sql;
  core: SchedulerCore;
  /** Illegal status changes seen by the spy on `saveJob`. */
  violations: string[];
}

function realScheduler(config: ModelConfig): Real {
  const sql = nodeSql();
  const core = new SchedulerCore(sql);
  core.configure({ model: config, tiers: TIERS });
  const violations: string[] = [];
  const save = core.store.saveJob.bind(core.store);
  // Every status change is written through saveJob: check each against the transition table.
  core.store.saveJob = (j: JobRow): void => {
    const before = core.store.job(j.id);
    if (!before) violations.push(`${j.id}: saved but not stored`);
    else if (before.status !== j.status && !canTransition(before.status as JobStatus, j.status as JobStatus)) {
      violations.push(`${j.id}: ${before.status} → ${j.status}`);
    }
    save(j);
  };
  return { sql, core, violations };
}

function item(id: string, account: string, tier: string): EnqueueItem {
  return { id, account_id: account, tier, body: { model: "demo", input: { prompt: id } } };
}

/** Admission verdicts are per tier and account. */
function verdictKey(e: EnqueueItem): string {
  return `${e.tier}\n${e.account_id}`;
}

function enqueueAndCheck(m: Model, r: Real, items: EnqueueItem[]): void {
  const verdicts = new Map<string, boolean>();
  for (const entry of items) {
    const key = verdictKey(entry);
    if (!verdicts.has(key)) verdicts.set(key, r.core.admission(entry.tier, entry.account_id, m.now).refused);
  }
  assert.strictEqual(r.core.costS(), m.cost(), "cost of a job");
  const cost = m.cost();
  const out = r.core.enqueue(items, m.now);
  assert.lengthOf(out, items.length);
  let wrote = false;
  items.forEach((entry, i) => {
    const o = out[i]!;
    const held = m.jobs.get(entry.id);
    if (held) {
      assert.deepEqual(o, {
        ok: true,
        id: entry.id,
        status: held.status,
        tier: held.tier,
        created_at: held.enqueuedAt,
        existed: true,
      });
      return;
    }
    const wasDeleted = m.deleted.has(entry.id);
    if (wasDeleted && !o.ok) {
      // Refusing an id that was deleted is one way to keep it deleted.
      assert.isUndefined(r.core.store.job(entry.id));
      return;
    }
    if (verdicts.get(verdictKey(entry))) {
      assert.strictEqual(!o.ok && o.code, "overloaded");
      assert.isAtLeast((!o.ok && o.retry_after_s) || 0, 1, "retry_after_s");
      assert.isUndefined(r.core.store.job(entry.id));
      return;
    }
    assert.deepEqual(o, {
      ok: true,
      id: entry.id,
      status: "queued",
      tier: entry.tier,
      created_at: m.now,
      existed: false,
    });
    wrote = true;
    const key = `${entry.account_id}|${entry.tier}`;
    // Tags run on the tier's virtual time: the largest tag it has served.
    const tag = Math.max(m.vt.get(entry.tier) ?? 0, m.lastTag.get(key) ?? 0) + cost;
    m.lastTag.set(key, tag);
    // An id that comes back after deletion carries its last epoch on (a tombstone), so no
    // epoch is handed out twice; its attempts start afresh.
    const carried = wasDeleted ? (m.tombstones.get(entry.id) ?? 0) : 0;
    m.jobs.set(entry.id, {
      id: entry.id,
      account: entry.account_id,
      tier: entry.tier,
      status: "queued",
      tag,
      enqueuedAt: m.now,
      epoch: carried,
      agent: null,
      deadline: null,
      spent: 0,
      finishedAt: null,
      attempts: 0,
      grantedAt: null,
      outputs: null,
    });
    m.deleted.delete(entry.id);
    if (!m.minted.some((x) => x.id === entry.id)) m.minted.push({ id: entry.id, account: entry.account_id });
  });
  if (wrote) m.dispatch();
}

function sweepModel(m: Model): { requeued: number; expired: number; deleted: number } {
  let requeued = 0;
  let expired = 0;
  let deleted = 0;
  for (const j of m.jobs.values()) {
    if (j.status === "running" && j.deadline !== null && j.deadline <= m.now) {
      // Its holder is told: the lease ended without its asking.
      if (j.agent !== null) m.revoked.push({ agent: j.agent, job_id: j.id, epoch: j.epoch });
      m.requeue(j, true);
      requeued++;
    }
  }
  if (requeued > 0) m.dispatch();
  for (const j of m.jobs.values()) {
    if (j.status === "queued" && j.enqueuedAt <= m.now - m.config.queue_ttl_s * 1000) {
      m.finish(j, "expired");
      expired++;
    }
  }
  for (const j of m.jobs.values()) {
    if (j.finishedAt !== null && j.finishedAt <= m.now - m.config.retention_s * 1000) {
      m.jobs.delete(j.id);
      m.deleted.add(j.id);
      m.tombstones.set(j.id, j.epoch);
      deleted++;
    }
  }
  return { requeued, expired, deleted };
}

/** The agent's actor gives back every lease the agent holds. */
function releaseAll(m: Model, r: Real, agentIdx: number, reason: "worker_lost" | "drained" | "preempted"): void {
  const agent = AGENTS[agentIdx]!;
  const held = m.heldBy(agent);
  m.waiting.delete(agentIdx);
  m.beliefs[agentIdx]!.clear();
  for (const j of held) m.requeue(j, reason === "worker_lost");
  if (held.length > 0) m.dispatch();
  assert.strictEqual(r.core.release(agent, reason, m.now), held.length);
}

/** A message arrives: the core answers it as of now, whatever happened since it was sent. */
function receive(m: Model, r: Real, msg: Msg): void {
  const { core } = r;
  const agent = AGENTS[msg.agent]!;
  switch (msg.k) {
    case "heartbeat": {
      const out = core.renew(agent, msg.refs, m.now);
      const renewed: LeaseRef[] = [];
      const stale: LeaseRef[] = [];
      const beliefs = m.beliefs[msg.agent]!;
      let timedOut = 0;
      for (const ref of msg.refs) {
        const j = m.holds(agent, ref);
        if (j && m.now - j.grantedAt! >= m.config.run_timeout_s * 1000) {
          // Past the run timeout the lease is not extended: the job goes back (an attempt spent).
          m.requeue(j, true);
          timedOut++;
          stale.push(ref);
          if (beliefs.get(ref.job_id) === ref.epoch) beliefs.delete(ref.job_id);
        } else if (j) {
          j.deadline = m.now + DEFAULT_LEASE_TTL_MS;
          renewed.push(ref);
        } else {
          stale.push(ref);
          // The agent abandons a stale lease, unless it has been given the job again since.
          if (beliefs.get(ref.job_id) === ref.epoch) beliefs.delete(ref.job_id);
        }
      }
      if (timedOut > 0) m.dispatch();
      assert.deepEqual(out, { renewed, stale });
      return;
    }
    case "progress": {
      // Progress is fenced by the agent's own actor; what reaches the shard under a lease is an
      // upload's start, fenced by the same rule: only the holder, at the current epoch.
      const current = m.holds(agent, msg.ref) !== undefined;
      const out = core.uploadStarting(msg.ref, agent);
      assert.strictEqual(out, current, `upload start from ${agent} for ${msg.ref.job_id}@${msg.ref.epoch}`);
      return;
    }
    case "result": {
      const { ref } = msg;
      const outputs = [{ url: `r2://${ref.job_id}/${ref.epoch}/${agent}` }];
      const result: Completion =
        msg.result === "succeeded"
          ? { status: "succeeded", outputs }
          : msg.result === "retryable"
            ? { status: "failed", code: "oom", message: "CUDA out of memory" }
            : { status: "failed", code: "model_error", message: "the model failed" };
      const j = m.holds(agent, ref);
      const out = core.complete(ref, result, m.now, agent);
      if (!j) {
        // No stale commit: a result from an old epoch, or from an agent not holding the lease, is refused.
        assert.strictEqual(
          !out.ok && out.code,
          "conflict",
          `stale result from ${agent} for ${ref.job_id}@${ref.epoch} accepted`,
        );
        return;
      }
      if (msg.result === "succeeded") {
        const sample = (m.now - j.grantedAt!) / 1000;
        const prev = m.runtime ?? m.config.expected_runtime_s;
        m.runtime = prev + (sample - prev) * 0.1;
        m.finish(j, "succeeded");
        j.outputs = JSON.stringify(outputs);
      } else if (msg.result === "retryable") {
        m.requeue(j, true);
      } else {
        m.finish(j, "failed");
      }
      // The answer is the status the result left (a requeued job may be pushed on at once).
      assert.deepEqual(out, { ok: true, status: j.status });
      if (msg.result === "retryable") m.dispatch();
      return;
    }
    case "lost":
      // The actor's alarm: an agent that connected again since keeps its leases.
      if (!m.alive[msg.agent] && m.lives[msg.agent] === msg.life) releaseAll(m, r, msg.agent, "worker_lost");
      return;
    default:
      assertExhaustive(msg);
  }
}

function byJobId(a: { job_id: string }, b: { job_id: string }): number {
  return a.job_id < b.job_id ? -1 : 1;
}

function run(m: Model, r: Real, net: Net, cmd: Cmd): void {
  const { core } = r;
  switch (cmd.k) {
    case "enqueue": {
      const account = ACCOUNTS[cmd.account]!;
      const tier = TIERS[cmd.tier]!.name;
      const items = Array.from({ length: cmd.n }, () => item(newJobId(ROUTE, m.now), account, tier));
      enqueueAndCheck(m, r, items);
      return;
    }
    case "duplicate": {
      const gone = m.minted.filter((x) => m.deleted.has(x.id));
      const from = cmd.deleted && gone.length > 0 ? gone : m.minted;
      const known = from[cmd.pick % Math.max(1, from.length)];
      if (!known) return;
      enqueueAndCheck(m, r, [item(known.id, ACCOUNTS[cmd.account]!, TIERS[cmd.tier]!.name)]);
      return;
    }
    case "lease": {
      const agent = AGENTS[cmd.agent]!;
      // A dead agent asking for work has restarted and connected again, under the same id.
      m.alive[cmd.agent] = true;
      const room = Math.max(0, cmd.capacity - m.heldBy(agent).length);
      const want = cmd.park ? Math.min(room, cmd.maxNew) : room;
      const leases = core.lease({ id: agent, pool: "pool" }, cmd.capacity, m.now, cmd.park ? cmd.maxNew : undefined);
      // The pick: each grant is the tier head with the largest wait/SLO.
      const expected = m.grant(cmd.agent, want);
      assert.deepEqual(leases.map(shape), expected);
      if (cmd.park) m.park(cmd.agent, cmd.capacity, want - expected.length);
      // Credits: an agent never holds more than the capacity it asked with.
      assert.strictEqual(core.leasesHeld(agent), m.heldBy(agent).length);
      if (expected.length > 0) assert.isAtMost(m.heldBy(agent).length, cmd.capacity, "held beyond capacity");
      return;
    }
    case "heartbeat": {
      if (!m.alive[cmd.agent]) return;
      const refs: LeaseRef[] = [...m.beliefs[cmd.agent]!].map(([job_id, epoch]) => ({ job_id, epoch }));
      net.send({ k: "heartbeat", agent: cmd.agent, refs });
      return;
    }
    case "progress": {
      const g = m.alive[cmd.agent] ? m.pickRef(cmd.agent, cmd.pick, cmd.stale) : undefined;
      if (g) net.send({ k: "progress", agent: cmd.agent, ref: { job_id: g.job_id, epoch: g.epoch } });
      return;
    }
    case "complete":
    case "fail": {
      const g = m.alive[cmd.agent] ? m.pickRef(cmd.agent, cmd.pick, cmd.stale) : undefined;
      if (!g) return;
      // Once it has sent the result, the agent is done with the job.
      const beliefs = m.beliefs[cmd.agent]!;
      if (beliefs.get(g.job_id) === g.epoch) beliefs.delete(g.job_id);
      const result = cmd.k === "complete" ? "succeeded" : cmd.retryable ? "retryable" : "fatal";
      net.send({ k: "result", agent: cmd.agent, ref: { job_id: g.job_id, epoch: g.epoch }, result });
      return;
    }
    case "deliver":
      // Delivery awaits the scheduler: the command loop does it.
      return;
    case "advance": {
      m.now += cmd.ms;
      return;
    }
    case "sweep": {
      const expected = sweepModel(m);
      assert.deepEqual(core.sweep(m.now), expected);
      // Every holder of an expired lease is told, and only they.
      const told = [...core.takeRevocations()].flatMap(([agent, refs]) =>
        refs.map((x) => ({ agent, job_id: x.job_id, epoch: x.epoch, why: x.why })),
      );
      const want = m.revoked.splice(0).map((x) => ({ ...x, why: "stale" }));
      assert.deepEqual(told.sort(byJobId), want.sort(byJobId));
      return;
    }
    case "die": {
      // kill -9: what it knew is gone, its socket closes, and its actor stops offering it work.
      m.alive[cmd.agent] = false;
      m.lives[cmd.agent]! += 1;
      m.beliefs[cmd.agent]!.clear();
      m.waiting.delete(cmd.agent);
      core.unpark(AGENTS[cmd.agent]!);
      net.send({ k: "lost", agent: cmd.agent, life: m.lives[cmd.agent]! });
      return;
    }
    case "cancel": {
      const known = m.pickJob(cmd.pick);
      if (!known) return;
      const account = cmd.owner ? known.account : ACCOUNTS.find((a) => a !== known.account)!;
      const out = core.cancel(known.id, account, m.now);
      const j = m.jobs.get(known.id);
      if (!j || j.account !== account) {
        assert.strictEqual(!out.ok && out.code, "job_not_found");
        return;
      }
      // A running job's agent is told, naming the lease it held.
      const told =
        j.status === "running" && j.agent !== null
          ? new Map([[j.agent, [{ job_id: j.id, epoch: j.epoch, why: "cancelled" }]]])
          : new Map();
      if (!isTerminal(j.status)) {
        if (j.status === "running") j.epoch += 1;
        m.finish(j, "cancelled");
      }
      assert.deepEqual(out.ok && { id: out.job.id, status: out.job.status, epoch: out.job.epoch }, {
        id: j.id,
        status: j.status,
        epoch: j.epoch,
      });
      assert.deepEqual(core.takeRevocations(), told);
      return;
    }
    case "release":
      releaseAll(m, r, cmd.agent, cmd.reason);
      return;
    case "releaseLeases": {
      const g = m.pickRef(cmd.agent, cmd.pick, false);
      if (!g) return;
      const agent = AGENTS[cmd.agent]!;
      const j = m.holds(agent, g);
      m.beliefs[cmd.agent]!.delete(g.job_id);
      // An agent giving work back is going away: it waits parked no longer.
      m.waiting.delete(cmd.agent);
      if (j) {
        m.requeue(j, false);
        m.dispatch();
      }
      assert.strictEqual(
        core.releaseLeases(agent, [{ job_id: g.job_id, epoch: g.epoch }], cmd.reason, m.now),
        j ? 1 : 0,
      );
      return;
    }
    case "undeliver": {
      // A lease that never reached its agent goes back as if never granted: no attempt, no spend.
      const g = m.pickRef(cmd.agent, cmd.pick, false);
      const agent = AGENTS[cmd.agent]!;
      const refs = g ? [{ job_id: g.job_id, epoch: g.epoch }] : [];
      const j = g ? m.holds(agent, g) : undefined;
      m.waiting.delete(cmd.agent);
      if (g) m.beliefs[cmd.agent]!.delete(g.job_id);
      if (j) {
        j.status = "queued";
        j.agent = null;
        j.deadline = null;
        j.attempts -= 1;
        m.dispatch();
      }
      assert.strictEqual(core.undeliver(agent, refs, m.now), j ? 1 : 0);
      return;
    }
    case "unpark": {
      m.waiting.delete(cmd.agent);
      core.unpark(AGENTS[cmd.agent]!);
      return;
    }
    case "remove": {
      const known = m.pickJob(cmd.pick);
      if (!known) return;
      const account = cmd.owner ? known.account : ACCOUNTS.find((a) => a !== known.account)!;
      const out = core.remove(known.id, account, m.now);
      const j = m.jobs.get(known.id);
      if (!j || j.account !== account) {
        assert.strictEqual(!out.ok && out.code, "job_not_found");
      } else if (!isTerminal(j.status)) {
        assert.strictEqual(!out.ok && out.code, "job_not_finished");
      } else {
        assert.deepEqual(out, { ok: true });
        m.jobs.delete(j.id);
        m.deleted.add(j.id);
        m.tombstones.set(j.id, j.epoch);
      }
      return;
    }
    default:
      assertExhaustive(cmd);
  }
}

interface StoredState {
  id: string;
  account_id: string;
  tier: string;
  status: string;
  tag: number;
  enqueued_at: number;
  epoch: number;
  agent_id: string | null;
  lease_deadline: number | null;
  spent: number;
  finished_at: number | null;
  outputs: string | null;
  [k: string]: string | number | null;
}

function checkInvariants(m: Model, r: Real, lastEpoch: Map<string, number>, lastStatus: Map<string, JobStatus>): void {
  assert.deepEqual(r.violations, [], "illegal status transitions");
  // Push dispatch: the leases handed to parked agents are the model's, in pick order.
  const delivered = r.core.takeDeliveries();
  const got = Object.fromEntries([...delivered].map(([agent, ls]) => [agent, ls.map(shape)]));
  const want = Object.fromEntries([...m.deliveries].map(([agent, ls]) => [AGENTS[agent]!, ls]));
  assert.deepEqual(got, want, `leases pushed to parked agents: ${JSON.stringify(got)} vs ${JSON.stringify(want)}`);
  m.deliveries.clear();
  const rows = r.sql.all<StoredState>(
    `SELECT id, account_id, tier, status, tag, enqueued_at, epoch, agent_id, lease_deadline, spent, finished_at, outputs
     FROM jobs ORDER BY id`,
  );
  // No job lost: every accepted job is stored (queued, running or terminal) or was deleted on purpose.
  assert.lengthOf(rows, m.jobs.size, "stored jobs");
  for (const { id } of m.minted) assert.isTrue(m.jobs.has(id) !== m.deleted.has(id), `job ${id} lost`);
  for (const id of m.deleted) lastStatus.delete(id);
  for (const stored of rows) {
    const j = m.jobs.get(stored.id);
    assert.isDefined(j, `stored job ${stored.id} unknown to the model`);
    // A running lease's row keeps its grant's deadline; renewals move it in the shard's memory.
    const row = { ...stored, lease_deadline: r.core.leaseDeadline(stored.id) ?? null };
    assert.strictEqual(stored.lease_deadline !== null, stored.status === "running");
    assert.deepEqual(row, {
      id: j!.id,
      account_id: j!.account,
      tier: j!.tier,
      status: j!.status,
      tag: j!.tag,
      enqueued_at: j!.enqueuedAt,
      epoch: j!.epoch,
      agent_id: j!.agent,
      lease_deadline: j!.deadline,
      spent: j!.spent,
      finished_at: j!.finishedAt,
      // The outputs are those of the one result accepted: the lease holder's, at its epoch.
      outputs: j!.outputs,
    });
    // Epochs never decrease, not even across a deletion of the id.
    const prevEpoch = lastEpoch.get(row.id) ?? 0;
    assert.isAtLeast(row.epoch, prevEpoch, `epoch of ${row.id} fell`);
    lastEpoch.set(row.id, row.epoch);
    // A terminal status is final while the row lives (an id enqueued again after deletion is a
    // new job as far as its status goes).
    const prevStatus = lastStatus.get(row.id);
    if (prevStatus !== undefined && isTerminal(prevStatus)) assert.strictEqual(row.status, prevStatus);
    lastStatus.set(row.id, row.status as JobStatus);
    // A running job has exactly one holder; a job that is not running has none.
    assert.strictEqual(row.agent_id !== null, row.status === "running");
    assert.strictEqual(row.lease_deadline !== null, row.status === "running");
  }
  // No job leased to two agents at once: only one agent believes in the current epoch.
  for (const j of m.jobs.values()) {
    if (j.status !== "running") continue;
    const holders = AGENTS.filter((_, i) => m.beliefs[i]!.get(j.id) === j.epoch);
    assert.isAtMost(holders.length, 1, `${j.id} leased to ${holders.join(", ")}`);
    if (holders.length === 1) assert.strictEqual(holders[0], j.agent);
  }
  // The in-memory depth counters equal the real counts.
  const stats = r.core.stats(m.now);
  for (const t of TIERS) {
    const s = stats.find((x) => x.tier === t.name)!;
    const queued = rows.filter((x) => x.tier === t.name && x.status === "queued").length;
    const running = rows.filter((x) => x.tier === t.name && x.status === "running").length;
    assert.strictEqual(s.depth, queued, `depth of ${t.name}`);
    assert.strictEqual(s.running, running, `running of ${t.name}`);
  }
  assert.strictEqual(r.core.nextDeadline(), m.nextDeadline(), "nextDeadline");
}

describe("SchedulerCore against a reference model", () => {
  it(
    "random submits, duplicate submits, leases, parking, heartbeats, progress, results, clock, sweeps, cancels, releases, agent deaths and removals, with agents' messages delivered in any order, keep the core and the model in step",
    async () => {
      await fc.assert(
        fc.asyncProperty(
          arbConfig,
          fc.array(arbCmd, { maxLength: 60, size: "max" }),
          fc.scheduler(),
          async (over, cmds, scheduler) => {
            const config = modelConfig(over);
            const m = new Model(config);
            const r = realScheduler(config);
            const net = new Net(scheduler);
            const lastEpoch = new Map<string, number>();
            const lastStatus = new Map<string, JobStatus>();
            const deliver = async (n: number): Promise<void> => {
              for (let i = 0; i < n && net.inFlight() > 0; i++) {
                for (const msg of await net.next()) {
                  receive(m, r, msg);
                  checkInvariants(m, r, lastEpoch, lastStatus);
                }
              }
            };
            for (const cmd of cmds) {
              if (cmd.k === "deliver") await deliver(cmd.n);
              run(m, r, net, cmd);
              checkInvariants(m, r, lastEpoch, lastStatus);
            }
            // Whatever is still in flight arrives in the end.
            await deliver(Number.POSITIVE_INFINITY);
            // And a core rebuilt on the same database (actor restart) sees the same state.
            const rebuilt = new SchedulerCore(r.sql, m.now);
            assert.deepEqual(
              rebuilt.stats(m.now).map((s) => [s.tier, s.depth, s.running]),
              r.core.stats(m.now).map((s) => [s.tier, s.depth, s.running]),
            );
            assert.strictEqual(rebuilt.nextDeadline(), m.nextDeadline(m.now));
          },
        ),
        { numRuns: NUM_RUNS },
      );
    },
    TIMEOUT_MS,
  );

  it(
    "within a tier a light account's single job is leased before a heavy account's remaining backlog (within cost granularity)",
    () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 3, max: 40 }),
          fc.boolean(),
          fc.integer({ min: 0, max: 600_000 }),
          fc.integer({ min: 0, max: 40 }),
          fc.constantFrom(1, 10, 60),
          (heavyJobs, oneBatch, delayMs, servedWish, runtimeS) => {
            const config = modelConfig({ expected_runtime_s: runtimeS });
            const { core } = realScheduler(config);
            const agent = { id: "agent_0", pool: "pool" };
            const heavy = Array.from({ length: heavyJobs }, (_, i) =>
              item(newJobId(ROUTE, T0 + (oneBatch ? 0 : i)), "acc_heavy", "plus"),
            );
            // Admission is not what this property is about: every enqueue here bypasses it.
            if (oneBatch) core.enqueue(heavy, T0, false);
            else heavy.forEach((h, i) => core.enqueue([h], T0 + i, false));
            // While the light account is away, some of the heavy backlog is served, one job at a
            // time. These attempts end in a non-retryable failure, which leaves the measured cost
            // (and so every later tag's cost) exactly at expected_runtime_s.
            const served = Math.min(servedWish, heavyJobs - 1);
            let now = T0 + (oneBatch ? 0 : heavyJobs);
            for (let i = 0; i < served; i++) {
              now = Math.max(now, T0 + Math.floor(((i + 1) * delayMs) / (served + 1)));
              const l = core.lease(agent, 1, now)[0]!;
              const failed = { status: "failed", code: "model_error", message: "bad prompt" } as const;
              assert.deepEqual(core.complete({ job_id: l.job_id, epoch: l.epoch }, failed, now), {
                ok: true,
                status: "failed",
              });
            }
            now = Math.max(now, T0 + delayMs);
            assert.strictEqual(core.costS(), runtimeS);
            const light = item(newJobId(ROUTE, now), "acc_light", "plus");
            const [admitted] = core.enqueue([light], now, false);
            assert.isTrue(admitted?.ok && !admitted.existed);
            let heavyAhead = 0;
            for (;;) {
              const l = core.lease(agent, 1, now)[0];
              if (!l) assert.fail("the light job was never leased");
              if (l.job_id === light.id) break;
              core.complete({ job_id: l.job_id, epoch: l.epoch }, { status: "succeeded", outputs: [] }, now);
              heavyAhead++;
            }
            // At most the one heavy job whose fair tag ties with the light job's goes first.
            assert.isAtMost(
              heavyAhead,
              1,
              `heavy jobs leased before the light one (${heavyJobs - served} were waiting)`,
            );
          },
        ),
        { numRuns: NUM_RUNS },
      );
    },
    TIMEOUT_MS,
  );
});
