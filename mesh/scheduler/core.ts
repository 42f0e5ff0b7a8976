/**
 * The scheduler of one model shard, free of any runtime: jobs into their queues, leases out to
 * agents with epochs, results and renewals fenced by those epochs, expiry and requeue, and what
 * the actor must tell others once an event is committed (leases to push, leases it took back,
 * watched jobs that changed, files to clean up). The SchedulerActor is a thin shell that feeds
 * it the clock and persists through {@link SchedulerStore}; plain-Node tests and benchmarks
 * drive the very same code on `node:sqlite`.
 *
 * Its parts: the queues and the pick (queues.ts), the leases out (leases.ts, in memory: a
 * renewal writes nothing), the row's JSON (rows.ts), the job view (view.ts).
 *
 * Ownership (DESIGN.md, "Who owns what"): only this module grants leases and bumps epochs.
 * Every result names the epoch of its lease; a result from another epoch is stale.
 */
import { customerView, type AdminJobView, type ModelConfig, type QueueStats } from "../../shared/api.ts";
import type { ShardLoad } from "../../shared/capacity.ts";
import type { InputFileRef } from "../../shared/files.ts";
import { fail, type Failure } from "../../shared/errors.ts";
import { canTransition, isTerminal, RETRY, type FailureReason, type JobStatus } from "../../shared/job.ts";
import type { TierConfig } from "../../shared/slo.ts";
import type { LeaseGrant } from "../../shared/wire.ts";
import { jobEventOf, type WebhookEvent, type WebhookPayload } from "../../shared/webhooks.ts";
import type { JobHook, OutboundMessage } from "../webhooks/logic.ts";
import { migrate, type Sql } from "../sql/sql.ts";
import { LeaseTable, type HeldLease, type LeaseRef } from "./leases.ts";
import { BACKLOG_SHED, Queues, type Admission } from "./queues.ts";
import { attemptsOf, bodyOf, setAttempts, setOutputs, type JobBody, type StoredAttempt } from "./rows.ts";
import { MIGRATIONS, SchedulerStore, USAGE_HOUR_MS, type JobRow, type UsageDelta, type UsageRow } from "./store.ts";
import { laneAtEnqueue, leaseVersion, leavesLane, reachOf, type LaneDesired } from "./versions.ts";
import { renderJob } from "./view.ts";

export { BACKLOG_SHED } from "./queues.ts";
export type { JobBody } from "./rows.ts";
export type { LeaseRef } from "./leases.ts";
export type { LaneDesired } from "./versions.ts";

/** Lease lifetime unless renewed (ms). */
export const DEFAULT_LEASE_TTL_MS = 30_000;
/** An agent not seen for this long no longer counts as serving the model (ms). */
const AGENT_SEEN_MS = 2 * DEFAULT_LEASE_TTL_MS;
/** How long a parked agent's request for work stands without a heartbeat (ms). */
const PARK_MS = 15_000;
/** How long a deleted job's last epoch is remembered: past the 24 h idempotency window (ms). */
const TOMBSTONE_MS = 48 * 3600 * 1000;
/** Rows one sweep handles per kind, so an alarm stays short; the next alarm takes the rest. */
const SWEEP_BATCH = 500;
/** Notes (file work, watched changes) held for the actor at most; older ones drop. */
const MAX_PENDING = 10_000;
/** Jobs watched at once (job actors with subscribers). */
const MAX_WATCHED = 10_000;
/** A shard reports its per-version figures at most this often (ms). */
export const FIGURES_MS = 2_000;

/** What the scheduler needs to know of its model and the tiers. */
export interface SchedulerConfig {
  model: ModelConfig;
  tiers: TierConfig[];
  /** The model's rollout, when it has one: the versions its unpinned jobs run on. */
  desired?: LaneDesired | undefined;
}

/** Attempts of one version that ended (ran to a result), and how many of them failed. */
export interface VersionFigures {
  version: string;
  jobs: number;
  failed: number;
}

export interface EnqueueItem {
  id: string;
  account_id: string;
  tier: string;
  body: JobBody;
  /** Whom the job's status changes are told; absent for a job that tells nobody. */
  hooks?: JobHook[] | undefined;
}

export type EnqueueOutcome =
  | { ok: true; id: string; status: JobStatus; tier: string; created_at: number; existed: boolean }
  | Failure;

/** Who asks for work. */
export interface AgentRef {
  id: string;
  pool: string;
  /** The versions of this shard's model the agent serves; the lease names the one to run. */
  versions?: string[];
  /** Its machine may be taken back at short notice: parked steady agents are offered work first. */
  preemptible?: boolean;
}

/**
 * A job handed to an agent: the wire's lease, and whether a job actor watches the job for
 * subscribers (then the agent's actor passes the attempt's progress, previews and logs on from
 * its first message; not sent to the agent).
 */
export type Lease = LeaseGrant & { watched?: true };

/** How an attempt ended, as its agent reported it (after the edge checked its outputs). */
export type Completion = (
  | { status: "succeeded"; outputs: Record<string, unknown>[] }
  | { status: "failed"; code: FailureReason; message: string }
) &
  AttemptRun;

/** What the agent says of an attempt's run, for usage (shared/wire.ts, `job.results`). */
export interface AttemptRun {
  /** The runner's time on the job (ms); capped by the edge's span from grant to result. */
  executing_ms?: number | undefined;
  /** GPUs of the replica that ran it (0 on a CPU runner). */
  gpus?: number | undefined;
}

export type CompleteOutcome = { ok: true; status: JobStatus } | Failure;

/** An attempt that ended and may have left files: unfinished uploads are aborted; unless `kept`, files deleted. */
export interface EndedAttempt {
  job_id: string;
  epoch: number;
  kept: boolean;
}

/** A lease the shard ended without its holder asking: the holder must stop. */
export interface Revocation extends LeaseRef {
  /** `cancelled`: by the job's owner; `stale`: its deadline passed unrenewed. */
  why: "cancelled" | "stale";
}

/** Counters the benchmarks read. */
export interface SchedulerCounters {
  /** Calls that wrote storage: each is one durable commit in the actor. */
  commits: number;
  enqueued: number;
  leased: number;
  /** Results agents reported, retried or final. */
  completed: number;
  /** Jobs that ended succeeded, and failed for good (after their retries). */
  succeeded: number;
  failed: number;
  /** Jobs admission control refused (`overloaded`) at submit. */
  refused: number;
}

/** A parked request for work. */
interface Waiting {
  agent: AgentRef;
  capacity: number;
  want: number;
  until: number;
}

export class SchedulerCore {
  readonly store: SchedulerStore;
  readonly counters: SchedulerCounters = {
    commits: 0,
    enqueued: 0,
    leased: 0,
    completed: 0,
    succeeded: 0,
    failed: 0,
    refused: 0,
  };
  readonly queues: Queues;
  private readonly leases = new LeaseTable();
  private config: SchedulerConfig | undefined;
  private lastAgentSeen = 0;
  private readonly waiting = new Map<string, Waiting>();
  private deliveries = new Map<string, Lease[]>();
  private revocations = new Map<string, Revocation[]>();
  private readonly watched = new Set<string>();
  private changed = new Set<string>();
  private jobsGone: string[] = [];
  private attemptsEnded: EndedAttempt[] = [];
  /** Status changes of jobs with webhooks in this event, for {@link takeWebhookMessages}. */
  private hooked: { id: string; type: WebhookEvent }[] = [];
  /** The earliest deadline an event added since the actor last asked (ms). */
  private earliestAdded: number | undefined;
  /** Attempts ended per version since the last report (see {@link takeFigures}). */
  private figures = new Map<string, { jobs: number; failed: number }>();
  /** When figures were last taken for a report (ms). */
  private figuresTakenAt = 0;
  /** Usage this event added, by bucket, written by {@link flushUsage} (one UPSERT a bucket). */
  private usage = new Map<string, UsageDelta>();
  /** GPUs per version as its last result reported them: what a lost attempt of it counts. */
  private readonly gpusOf = new Map<string, number>();
  leaseTtlMs = DEFAULT_LEASE_TTL_MS;
  /** Until when a pool is growing for this model while it has no agent (ms; in memory, renewed by the pools' alarm). */
  scalingUntil = 0;

  /** `now`: when the shard woke up; leases it finds get a lease time from then. */
  constructor(sql: Sql, now = Date.now()) {
    this.store = new SchedulerStore(sql);
    migrate(sql, MIGRATIONS);
    const stored = this.store.getMeta("config");
    if (stored !== undefined) this.config = JSON.parse(stored) as SchedulerConfig;
    this.queues = new Queues(this.store);
    for (const r of this.store.runningLeases()) {
      this.leases.set(r.id, {
        agent: r.agent_id,
        epoch: r.epoch,
        deadline: Math.max(r.lease_deadline ?? 0, now + this.leaseTtlMs),
        grantedAt: r.granted_at ?? now,
        // An upload may have started under it before the shard went to sleep.
        files: true,
      });
    }
  }

  get configured(): SchedulerConfig | undefined {
    return this.config;
  }

  /**
   * Stores the model's and tiers' configuration when it is newer than what is held. When the
   * model's desired versions change, routed jobs whose lane is no longer the canary's go back to
   * the unpinned lane ({@link relane}).
   */
  configure(config: SchedulerConfig, now = Date.now()): boolean {
    const held = this.config;
    // An older snapshot (a Worker's stale cache) never overwrites a newer model config or
    // rollout, but tiers travel with it and are taken as given.
    const desired = (config.desired?.revision ?? 0) > (held?.desired?.revision ?? 0) ? config.desired : held?.desired;
    const same =
      held !== undefined &&
      held.model.updated_at === config.model.updated_at &&
      desired === held.desired &&
      JSON.stringify(held.tiers) === JSON.stringify(config.tiers);
    if (same) return false;
    const model = held !== undefined && held.model.updated_at > config.model.updated_at ? held.model : config.model;
    this.config = { model, tiers: config.tiers, ...(desired === undefined ? {} : { desired }) };
    this.store.setMeta("config", JSON.stringify(this.config));
    if (desired !== held?.desired) this.relane(now);
    return true;
  }

  /**
   * Routed jobs whose lane is no longer the canary's go back to the unpinned lane: one UPDATE per
   * tier and lane holding queued jobs, keeping their enqueue times and tags; jobs their owners
   * pinned never move. Parked agents are then offered what they may now take (the moved jobs,
   * and the unpinned lane for an agent whose version stopped being the canary).
   */
  private relane(now: number): number {
    const config = this.need();
    let moved = 0;
    for (const t of this.queues.tiersInPlay(config.tiers)) {
      for (const lane of this.queues.lanesOf(t.name)) {
        if (lane === null || !leavesLane(lane, config.desired)) continue;
        const n = this.store.relane(t.name, lane);
        this.queues.moveLane(t.name, lane, null, n);
        moved += n;
      }
    }
    this.dispatch(now);
    return moved;
  }

  private need(): SchedulerConfig {
    if (!this.config) throw new Error("scheduler used before it was configured");
    return this.config;
  }

  /** Expected service seconds of one job: measured run times, else the configured estimate. */
  costS(): number {
    return this.queues.costS(this.need().model.expected_runtime_s);
  }

  /** Whether an account's new submits to a tier are admitted now (see {@link Queues.admission}). */
  admission(tierName: string, accountId: string, now: number): Admission {
    const tier = this.config?.tiers.find((t) => t.name === tierName);
    if (!tier) return { waitS: 0, refused: false, retryAfterS: 0, backlogged: false };
    return this.queues.admission(tier, accountId, now, this.costS());
  }

  /**
   * Makes jobs durable in their tier's queue. Idempotent by job id: an id already held answers
   * with the job as it is. One call is one commit however many jobs it carries.
   */
  enqueue(items: readonly EnqueueItem[], now: number, admit = true): EnqueueOutcome[] {
    const config = this.need();
    const cost = this.costS();
    /** Admission verdicts by tier and account, so a batch asks once for each. */
    const verdicts = new Map<string, Admission>();
    let wrote = false;
    const out = items.map((item): EnqueueOutcome => {
      const { job: held, tombstone } = this.store.claimed(item.id);
      if (held) {
        const status = held.status as JobStatus;
        return { ok: true, id: held.id, status, tier: held.tier, created_at: held.created_at, existed: true };
      }
      // An id that comes back after its job was deleted is an Idempotency-Key reused: the
      // account still maps the key to that job. Deleted stays deleted (and no epoch repeats).
      if (tombstone !== undefined) {
        return fail(
          "idempotency_conflict",
          `the job this Idempotency-Key created (${item.id}) was deleted; submit with a new key`,
        );
      }
      const tier = config.tiers.find((t) => t.name === item.tier);
      if (!tier) return fail("bad_request", `unknown tier ${item.tier}`);
      if (admit) {
        const key = `${item.tier}\n${item.account_id}`;
        const v = verdicts.get(key) ?? this.admission(item.tier, item.account_id, now);
        verdicts.set(key, v);
        if (v.refused) {
          this.counters.refused++;
          const k = `${v.backlogged ? `${BACKLOG_SHED} × ` : ""}${tier.admission_k}`;
          const mine = v.backlogged ? ", and this account already has jobs queued in it" : "";
          return fail(
            "overloaded",
            `tier ${item.tier} is over capacity for this account: its projected wait of ${Math.round(v.waitS)} s passes ${k} × its ${tier.slo_s} s SLO${mine}; retry later`,
            v.retryAfterS,
          );
        }
      }
      const { lane, routed } = laneAtEnqueue(item.id, item.body.version, config.desired);
      this.store.insertJob({
        id: item.id,
        account_id: item.account_id,
        tier: item.tier,
        tag: this.queues.nextTag(item.account_id, item.tier, cost),
        enqueued_at: now,
        body: JSON.stringify({ ...item.body, model: config.model.name }),
        version: lane,
        routed: routed ? 1 : 0,
        hooks: item.hooks && item.hooks.length > 0 ? JSON.stringify(item.hooks) : null,
      });
      this.queues.countQueued(item.tier, lane, item.account_id, 1);
      this.counters.enqueued++;
      this.addDeadline(now + config.model.queue_ttl_s * 1000);
      wrote = true;
      return { ok: true, id: item.id, status: "queued", tier: item.tier, created_at: now, existed: false };
    });
    if (wrote) {
      this.queues.saveTags();
      this.counters.commits++;
      this.dispatch(now);
    }
    return out;
  }

  /**
   * Grants up to `capacity − held` leases to an agent (its free slots plus prefetch), at most
   * `maxNew` now; with `maxNew`, what is short waits parked and is pushed as jobs arrive.
   */
  lease(agent: AgentRef, capacity: number, now: number, maxNew = Number.POSITIVE_INFINITY): Lease[] {
    this.lastAgentSeen = now;
    const room = Math.max(0, Math.floor(capacity) - this.leases.count(agent.id));
    const want = Math.min(room, Math.max(0, Math.floor(maxNew)));
    const leases = want === 0 ? [] : this.pick(agent, want, now);
    if (leases.length > 0) this.counters.commits++;
    if (Number.isFinite(maxNew)) this.park(agent, capacity, want - leases.length, now);
    return leases;
  }

  /**
   * An agent said hello on a connection opened at `connectedAt`, naming the leases of this
   * shard it still runs: those still its own are renewed (the rest are stale), and those it
   * holds here but did not name go back to their queues ({@link releaseUnlisted}).
   */
  rejoin(agentId: string, listed: readonly LeaseRef[], connectedAt: number, now: number) {
    const out = this.renew(agentId, listed, now);
    this.releaseUnlisted(agentId, listed, connectedAt, now);
    return out;
  }

  /**
   * An agent's heartbeat on this shard: its leases here renewed (in memory), and with credits,
   * up to that many new leases, the rest of its room waiting parked.
   */
  heartbeat(agent: AgentRef, refs: readonly LeaseRef[], capacity: number, credits: number, now: number) {
    const out = this.renew(agent.id, refs, now);
    // No room (a full or draining agent): nothing waits parked for it.
    if (credits <= 0) this.unpark(agent.id);
    return { ...out, leases: credits > 0 ? this.lease(agent, capacity, now, credits) : [] };
  }

  /**
   * An agent's results and its room for more, in one event and one commit: each result ends
   * its attempt (fenced by epoch and holder), then up to `credits` new leases are granted and
   * the rest of its room waits parked. The agent's next job is in the answer to its last.
   */
  settle(
    agent: AgentRef,
    results: readonly (LeaseRef & { result: Completion })[],
    capacity: number,
    credits: number,
    now: number,
  ): { outcomes: CompleteOutcome[]; leases: Lease[] } {
    const commits = this.counters.commits;
    const outcomes = results.map((r) => this.complete(r, r.result, now, agent.id));
    const leases = this.lease(agent, capacity, now, credits);
    // One event, one commit, however many results and leases it carried.
    if (this.counters.commits > commits) this.counters.commits = commits + 1;
    return { outcomes, leases };
  }

  /**
   * An agent waiting for work: enqueue and requeue grant it leases straight away (push), so a
   * job does not wait for the agent's next request. Kept in memory; agents re-park on every
   * heartbeat, so a restart loses nothing for long.
   */
  park(agent: AgentRef, capacity: number, want: number, now: number): void {
    this.waiting.delete(agent.id);
    if (want > 0) this.waiting.set(agent.id, { agent, capacity, want, until: now + PARK_MS });
  }

  /** Forgets that an agent waits for work (its socket closed). */
  unpark(agentId: string): void {
    this.waiting.delete(agentId);
  }

  /**
   * Grants queued work to parked agents: steady agents before preemptible ones, oldest parked
   * first within each. The pick hands out the most urgent jobs first, so the jobs closest to
   * their SLO land on agents that will not be reclaimed under them whenever one has room.
   */
  private dispatch(now: number): void {
    // A copy: entries are deleted and re-set while we go, which would revisit them.
    const parked = Array.from(this.waiting);
    const steadyFirst = parked.some(([, w]) => w.agent.preemptible === true)
      ? [...parked.filter(([, w]) => w.agent.preemptible !== true), ...parked.filter(([, w]) => w.agent.preemptible)]
      : parked;
    for (const [id, w] of steadyFirst) {
      if (this.queues.queuedTotal() === 0) return;
      if (w.until < now) {
        this.waiting.delete(id);
        continue;
      }
      // Nothing it may serve (the queued jobs are in lanes of versions it lacks): it keeps waiting.
      if (!this.queues.hasWorkFor(reachOf(w.agent.versions, this.config?.desired))) continue;
      const room = Math.max(0, w.capacity - this.leases.count(id));
      const leases = this.pick(w.agent, Math.min(w.want, room), now);
      if (leases.length === 0) continue;
      this.waiting.delete(id);
      if (w.want > leases.length) this.waiting.set(id, { ...w, want: w.want - leases.length });
      this.deliveries.set(id, [...(this.deliveries.get(id) ?? []), ...leases]);
    }
  }

  /** Picks and grants up to `want` jobs for an agent. */
  private pick(agent: AgentRef, want: number, now: number): Lease[] {
    const config = this.need();
    const leases: Lease[] = [];
    const reach = reachOf(agent.versions, config.desired);
    this.queues.pick(this.queues.tiersInPlay(config.tiers), reach, want, now, (job) => {
      leases.push(this.grant(job, agent, now));
    });
    return leases;
  }

  /** Leases a job to an agent: a new epoch, an attempt recorded, the lease in the table. */
  private grant(job: JobRow, agent: AgentRef, now: number): Lease {
    const body = bodyOf(job);
    const version = leaseVersion(job.version, agent.versions, this.config?.desired);
    this.transition(job, "running");
    job.phase = "assigned";
    job.epoch += 1;
    job.agent_id = agent.id;
    job.lease_deadline = now + this.leaseTtlMs;
    job.started_at ??= now;
    const attempts = attemptsOf(job);
    attempts.push({
      n: attempts.length + 1,
      agent: agent.id,
      pool: agent.pool,
      version,
      epoch: job.epoch,
      started_at: now,
      ended_at: null,
      outcome: "running",
      reason: null,
    });
    setAttempts(job, attempts);
    this.store.saveJob(job);
    this.leases.set(job.id, {
      agent: agent.id,
      epoch: job.epoch,
      deadline: job.lease_deadline,
      grantedAt: now,
      files: false,
    });
    this.addDeadline(job.lease_deadline);
    this.counters.leased++;
    return {
      job_id: job.id,
      epoch: job.epoch,
      deadline: job.lease_deadline,
      // Attempts that count against max_attempts, this one included: a grant drained, preempted
      // or never delivered did not spend one, so a queued job (spent < max_attempts) never
      // sees an attempt past max_attempts.
      attempt: job.spent + 1,
      model: body.model,
      version,
      input: body.input,
      ...(body.files === undefined ? {} : { files: body.files }),
      ...(this.watched.has(job.id) ? { watched: true as const } : {}),
    };
  }

  private transition(job: JobRow, to: JobStatus): void {
    const from = job.status as JobStatus;
    if (!canTransition(from, to)) throw new Error(`job ${job.id}: illegal transition ${from} → ${to}`);
    job.status = to;
    if (this.watched.has(job.id)) this.note(this.changed, job.id);
    if (job.hooks !== null) {
      const type = jobEventOf(to);
      if (type !== undefined && this.hooked.length < MAX_PENDING) this.hooked.push({ id: job.id, type });
    }
  }

  private note(set: Set<string>, id: string): void {
    if (set.size < MAX_PENDING) set.add(id);
  }

  /**
   * Extends the leases an agent still holds at the epoch it names, in memory; the rest come back
   * as `stale` (requeued, cancelled or leased to another) and the agent abandons them. A lease
   * whose attempt has run for the model's `run_timeout_s` is not extended: its job goes back to
   * its queue (`run_timeout`, spending an attempt) and the lease comes back as `stale`, so a
   * runner hung inside a job cannot hold it forever by heartbeating. Writes only for those.
   */
  renew(agentId: string, refs: readonly LeaseRef[], now: number): { renewed: LeaseRef[]; stale: LeaseRef[] } {
    this.lastAgentSeen = now;
    const renewed: LeaseRef[] = [];
    const stale: LeaseRef[] = [];
    const runTimeoutMs = (this.config?.model.run_timeout_s ?? Infinity) * 1000;
    let timedOut = 0;
    for (const ref of refs) {
      const held = this.leases.current(ref, agentId);
      if (!held) {
        stale.push(ref);
      } else if (now - held.grantedAt >= runTimeoutMs) {
        const job = this.store.job(ref.job_id);
        if (job)
          this.requeue(
            job,
            now,
            "run_timeout",
            true,
            `the attempt ran longer than run_timeout_s (${runTimeoutMs / 1000} s)`,
          );
        stale.push(ref);
        timedOut++;
      } else {
        held.deadline = now + this.leaseTtlMs;
        renewed.push(ref);
      }
    }
    if (timedOut > 0) {
      this.flushUsage();
      this.counters.commits++;
      this.dispatch(now);
    }
    return { renewed, stale };
  }

  /**
   * Ends an attempt as its agent reports it. Refused as stale unless the job is running under
   * exactly that epoch and (when the caller says who it is) that agent holds it, so a zombie
   * agent can never overwrite its successor's work. Whether a failure is retried is decided
   * by its reason (shared/job.ts, RETRY), not by the agent.
   */
  complete(ref: LeaseRef, result: Completion, now: number, agentId?: string): CompleteOutcome {
    const job = this.leases.current(ref, agentId) ? this.store.job(ref.job_id) : undefined;
    if (!job) return fail("conflict", `stale result for ${ref.job_id} at epoch ${ref.epoch}`);
    this.lastAgentSeen = now;
    this.counters.completed++;
    this.counters.commits++;
    const run: AttemptRun = { executing_ms: result.executing_ms, gpus: result.gpus };
    if (result.status === "succeeded") {
      this.queues.failuresInRow = 0;
      this.endAttempt(job, now, "succeeded", null, run, bytesOf(result.outputs));
      this.finish(job, "succeeded", now);
      setOutputs(job, result.outputs);
      this.store.saveJob(job);
      this.flushUsage();
      return { ok: true, status: "succeeded" };
    }
    this.queues.failuresInRow++;
    if (RETRY[result.code] !== "final") {
      const status = this.requeue(job, now, result.code, RETRY[result.code] === "spend", result.message, run);
      this.flushUsage();
      this.dispatch(now);
      return { ok: true, status };
    }
    this.endAttempt(job, now, "failed", result.code, run);
    this.finish(job, "failed", now, result.code, result.message);
    this.store.saveJob(job);
    this.flushUsage();
    return { ok: true, status: "failed" };
  }

  /**
   * Ends the job's running attempt with `outcome`, and its lease with it. Its executing time is
   * what its agent reported (`run`), capped by the edge's span from grant to now, else that span;
   * its usage is noted (see {@link noteAttemptUsage}).
   */
  private endAttempt(
    job: JobRow,
    now: number,
    outcome: StoredAttempt["outcome"],
    reason: string | null,
    run: AttemptRun = {},
    outputBytes = 0,
  ): void {
    const attempts = attemptsOf(job);
    const last = attempts.at(-1);
    if (last && last.ended_at === null) {
      last.ended_at = now;
      last.outcome = outcome;
      last.reason = reason;
      const span = Math.max(0, now - last.started_at);
      last.executing_ms = Math.min(run.executing_ms ?? span, span);
      if (run.gpus !== undefined) {
        last.gpus = run.gpus;
        if (last.version !== null) this.gpusOf.set(last.version, run.gpus);
      } else {
        last.gpus = (last.version === null ? undefined : this.gpusOf.get(last.version)) ?? 1;
      }
      this.noteAttemptUsage(job, last, outputBytes, now);
      if (outcome === "succeeded") {
        this.queues.noteRuntime((now - last.started_at) / 1000, this.need().model.expected_runtime_s);
      }
      // What a version's attempts came to, for its canary analysis: ran to a result, and failed
      // (a lost agent, a cancel or a give-back says nothing of the version).
      if (last.version !== null && (outcome === "succeeded" || (outcome === "failed" && reason !== "cancelled"))) {
        this.noteFigure(last.version, outcome === "failed");
      }
    }
    setAttempts(job, attempts);
    this.endLease(job, outcome === "succeeded");
  }

  /**
   * What an ended attempt adds to its account's usage: an attempt that ran to a result, timed out
   * or was cancelled is billed (`gpu_ms` = executing × max(1, gpus)); one lost with its agent
   * (`worker_lost`) is kept apart in `lost_gpu_ms`, not billed; one given back unspent (drained,
   * preempted) adds nothing. The lease's fencing ends each attempt once, so none counts twice.
   */
  private noteAttemptUsage(job: JobRow, a: StoredAttempt, outputBytes: number, now: number): void {
    if (a.outcome === "requeued") return;
    const gpuMs = (a.executing_ms ?? 0) * Math.max(1, a.gpus ?? 1);
    const base = { account_id: job.account_id, version: a.version ?? "", at: now, attempts: 1 };
    if (a.reason === "worker_lost") this.addUsage({ ...base, lost_gpu_ms: gpuMs });
    else this.addUsage({ ...base, gpu_ms: gpuMs, executing_ms: a.executing_ms ?? 0, output_bytes: outputBytes });
  }

  /** Adds to this event's usage, merged per bucket until {@link flushUsage}. */
  private addUsage(d: UsageDelta): void {
    const hour = Math.floor(d.at / USAGE_HOUR_MS) * USAGE_HOUR_MS;
    const key = `${d.account_id}\n${d.version}\n${hour}`;
    const held = this.usage.get(key);
    if (!held) {
      this.usage.set(key, { ...d, at: hour });
      return;
    }
    for (const k of USAGE_FIELDS) held[k] = (held[k] ?? 0) + (d[k] ?? 0);
  }

  /** Writes this event's usage: one UPSERT per bucket, in the event's own commit. */
  private flushUsage(): void {
    if (this.usage.size === 0) return;
    for (const d of this.usage.values()) this.store.addUsage(d);
    this.usage.clear();
  }

  /** An account's usage buckets whose hours overlap [from, to) (ms), oldest first. */
  usageFor(accountId: string, from: number, to: number): UsageRow[] {
    return this.store.usageFor(accountId, Math.floor(from / USAGE_HOUR_MS) * USAGE_HOUR_MS, to);
  }

  /** The job's lease is over: out of the table, and its files noted when it may have left some. */
  private endLease(job: JobRow, kept: boolean): HeldLease | undefined {
    const held = this.leases.end(job.id);
    if (held?.files && this.attemptsEnded.length < MAX_PENDING) {
      this.attemptsEnded.push({ job_id: job.id, epoch: held.epoch, kept });
    }
    return held;
  }

  private finish(job: JobRow, to: JobStatus, now: number, code?: string, message?: string): void {
    const wasRunning = job.status === "running";
    const wasQueued = job.status === "queued";
    this.transition(job, to);
    if (to === "succeeded") this.counters.succeeded++;
    if (to === "failed") this.counters.failed++;
    job.phase = "done";
    job.finished_at = now;
    job.agent_id = null;
    job.lease_deadline = null;
    if (code !== undefined) {
      job.error_code = code;
      job.error_message = message ?? code;
    }
    if (wasRunning) this.queues.countRunning(job.tier, -1);
    if (wasQueued) this.queues.countQueued(job.tier, job.version, job.account_id, -1);
    if (to === "succeeded" || to === "failed" || to === "cancelled" || to === "expired") {
      const version = attemptsOf(job).at(-1)?.version ?? job.version ?? "";
      this.addUsage({ account_id: job.account_id, version, at: now, [to]: 1 });
    }
    this.addDeadline(now + this.need().model.retention_s * 1000);
  }

  /**
   * Back to the queue: keeping its enqueue time and tag, holding no lease; a routed job whose
   * lane is no longer the canary's goes to the unpinned lane.
   */
  private toQueue(job: JobRow): void {
    this.transition(job, "queued");
    job.phase = "waiting";
    job.agent_id = null;
    job.lease_deadline = null;
    job.progress = null;
    this.store.saveJob(job);
    if (job.routed === 1 && leavesLane(job.version, this.config?.desired)) {
      this.store.unroute(job.id);
      job.version = null;
      job.routed = 0;
    }
    this.queues.countRunning(job.tier, -1);
    this.queues.countQueued(job.tier, job.version, job.account_id, 1);
  }

  /**
   * Sends a running job back to its queue with its original enqueue time and tag, so its
   * urgency keeps growing. `spend` counts the attempt against `max_attempts`; preemption and
   * drain do not. Past `max_attempts` the job fails with the reason.
   */
  private requeue(
    job: JobRow,
    now: number,
    reason: string,
    spend: boolean,
    message?: string,
    run: AttemptRun = {},
  ): JobStatus {
    const config = this.need();
    const outcome = spend ? (reason === "worker_lost" ? "lease_expired" : "failed") : "requeued";
    this.endAttempt(job, now, outcome, reason, run);
    if (spend) job.spent += 1;
    if (job.spent >= config.model.max_attempts) {
      const gaveUp = `${message ?? reason}; gave up after ${job.spent} attempts (max_attempts ${config.model.max_attempts})`;
      this.finish(job, "failed", now, reason, gaveUp);
      this.store.saveJob(job);
      return "failed";
    }
    this.toQueue(job);
    return "queued";
  }

  /** Requeues each of `jobs` (its lease ended as `reason`), then grants to parked agents. */
  private requeueAll(jobs: readonly JobRow[], now: number, reason: FailureReason, message?: string): number {
    const spend = RETRY[reason] === "spend";
    for (const job of jobs) this.requeue(job, now, reason, spend, message);
    this.flushUsage();
    if (jobs.length > 0) {
      this.counters.commits++;
      if (spend) this.queues.failuresInRow += jobs.length;
      this.dispatch(now);
    }
    return jobs.length;
  }

  /** The rows of the leases `refs` names that `agentId` holds now. */
  private held(agentId: string, refs: readonly LeaseRef[]): JobRow[] {
    return refs.flatMap((r) => (this.leases.current(r, agentId) ? (this.store.job(r.job_id) ?? []) : []));
  }

  /**
   * Requeues every lease an agent holds: its socket closed (`worker_lost`, spends an attempt)
   * or it drained or was preempted (does not).
   */
  release(agentId: string, reason: FailureReason, now: number): number {
    this.waiting.delete(agentId);
    const jobs = this.leases.heldBy(agentId).flatMap((id) => this.store.job(id) ?? []);
    return this.requeueAll(jobs, now, reason);
  }

  /** Gives back particular leases without spending their attempts. Stale refs are ignored. */
  releaseLeases(agentId: string, refs: readonly LeaseRef[], reason: "drained" | "preempted", now: number): number {
    // An agent giving work back is going away: what it gives back is not pushed to it again.
    this.unpark(agentId);
    return this.requeueAll(this.held(agentId, refs), now, reason);
  }

  /**
   * Requeues the leases an agent holds that it did not name when it said hello on a connection
   * opened at `connectedAt`, among those granted before then: the process that held them is gone
   * (the agent restarted with the same id) or they were lost with the old connection. They spend
   * their attempts (`worker_lost`), as a lost agent's do, but go back now instead of at their
   * deadline. Leases granted since the connection opened are left alone.
   */
  releaseUnlisted(agentId: string, listed: readonly LeaseRef[], connectedAt: number, now: number): number {
    const named = new Set(listed.map((r) => `${r.job_id}@${r.epoch}`));
    const lost = this.leases.heldBy(agentId).flatMap((id) => {
      const l = this.leases.get(id);
      if (!l || named.has(`${id}@${l.epoch}`) || l.grantedAt >= connectedAt) return [];
      return this.store.job(id) ?? [];
    });
    return this.requeueAll(lost, now, "worker_lost", "the agent reconnected without this lease");
  }

  /**
   * Takes back leases that never reached their agent (it went away between park and
   * delivery): the jobs return to their queues as if never leased — no attempt recorded or
   * spent — though their epochs stay bumped, so epochs never decrease. The agent is unparked.
   */
  undeliver(agentId: string, refs: readonly LeaseRef[], now: number): number {
    this.waiting.delete(agentId);
    const jobs = this.held(agentId, refs);
    for (const job of jobs) {
      const attempts = attemptsOf(job);
      if (attempts.at(-1)?.epoch === job.epoch) attempts.pop();
      setAttempts(job, attempts);
      if (attempts.length === 0) job.started_at = null;
      this.endLease(job, false);
      this.toQueue(job);
    }
    if (jobs.length > 0) {
      this.counters.commits++;
      this.dispatch(now);
    }
    return jobs.length;
  }

  /** Who holds a job's lease now, for fencing outside the scheduler. */
  leaseOf(
    jobId: string,
  ): { status: JobStatus; epoch: number; agent_id: string | null; account_id: string } | undefined {
    const job = this.store.job(jobId);
    return job
      ? { status: job.status as JobStatus, epoch: job.epoch, agent_id: job.agent_id, account_id: job.account_id }
      : undefined;
  }

  /**
   * An upload starts under a lease: whether `agentId` holds it, and if so the attempt is noted as
   * one that may leave files, so its end cleans them up (only such attempts cost any file work).
   */
  uploadStarting(ref: LeaseRef, agentId: string): boolean {
    const held = this.leases.current(ref, agentId);
    if (held) held.files = true;
    return held !== undefined;
  }

  /**
   * The input file in `field` of a job whose lease `ref` `agentId` holds, and the job's account
   * (whose file it is): read only for an agent's download, so no job without files pays for it.
   */
  inputFile(
    ref: LeaseRef,
    agentId: string,
    field: string,
  ): { ok: true; account_id: string; file: InputFileRef } | Failure {
    const job = this.leases.current(ref, agentId) ? this.store.job(ref.job_id) : undefined;
    if (!job) {
      return fail(
        "stale_lease",
        `the lease of ${ref.job_id} at epoch ${ref.epoch} is not this agent's; abandon the job`,
      );
    }
    const files = bodyOf(job).files ?? {};
    const file = Object.hasOwn(files, field) ? files[field] : undefined;
    if (!file) return fail("file_not_found", `the job's input names no file in ${JSON.stringify(field)}`);
    return { ok: true, account_id: job.account_id, file };
  }

  /** How many leases an agent holds here. */
  leasesHeld(agentId: string): number {
    return this.leases.count(agentId);
  }

  /** The lease deadline of a running job, as renewals moved it (ms). */
  leaseDeadline(jobId: string): number | undefined {
    return this.leases.get(jobId)?.deadline;
  }

  /**
   * The alarm's work: expired leases go back to their queues (`worker_lost`) and their holders
   * are told, queued jobs past the model's queue TTL expire, finished jobs past retention are
   * deleted, and the tiers' virtual times are written. Bounded per call.
   */
  sweep(now: number): { requeued: number; expired: number; deleted: number } {
    const config = this.need();
    const lapsed = this.leases.expired(now, SWEEP_BATCH).flatMap((id) => this.store.job(id) ?? []);
    for (const job of lapsed) {
      if (job.agent_id !== null) this.revoke(job.agent_id, { job_id: job.id, epoch: job.epoch, why: "stale" });
    }
    const requeued = this.requeueAll(lapsed, now, "worker_lost", "lease expired: the agent stopped renewing it");
    let expired = 0;
    for (const t of this.queues.tiersInPlay(config.tiers)) {
      if (this.queues.queuedIn(t.name) === 0) continue;
      const before = now - config.model.queue_ttl_s * 1000;
      const lanes = this.queues.lanesOf(t.name);
      for (const job of lanes.flatMap((l) => this.store.expiredQueued(t.name, l, before, SWEEP_BATCH))) {
        const why = `waited longer than the model's queue TTL of ${config.model.queue_ttl_s} s`;
        this.finish(job, "expired", now, "queue_ttl", why);
        this.store.saveJob(job);
        expired++;
      }
    }
    this.flushUsage();
    const gone = this.store.deleteFinishedBefore(now - config.model.retention_s * 1000, SWEEP_BATCH, now);
    this.noteGone(gone);
    this.store.deleteTombstonesBefore(now - TOMBSTONE_MS);
    this.queues.checkpoint();
    if (expired + gone.length > 0) this.counters.commits++;
    return { requeued, expired, deleted: gone.length };
  }

  private revoke(agent: string, r: Revocation): void {
    const list = this.revocations.get(agent) ?? [];
    list.push(r);
    this.revocations.set(agent, list);
  }

  private noteGone(ids: readonly string[]): void {
    for (const id of ids) {
      if (this.jobsGone.length < MAX_PENDING) this.jobsGone.push(id);
      this.watched.delete(id);
    }
  }

  private addDeadline(t: number): void {
    if (this.earliestAdded === undefined || t < this.earliestAdded) this.earliestAdded = t;
  }

  /** The earliest deadline events added since the last call: the actor arms its alarm by it. */
  takeEarliestAdded(): number | undefined {
    const t = this.earliestAdded;
    this.earliestAdded = undefined;
    return t;
  }

  /** When the next sweep is due (ms), or `undefined` when nothing waits on time. */
  nextDeadline(): number | undefined {
    const config = this.config;
    if (!config) return undefined;
    const times: number[] = [];
    const lease = this.leases.nextDeadline();
    if (lease !== undefined) times.push(lease);
    for (const t of this.queues.tiersInPlay(config.tiers)) {
      if (this.queues.queuedIn(t.name) === 0) continue;
      const oldest = this.queues.oldestOf(t.name)?.enqueued_at;
      if (oldest !== undefined) times.push(oldest + config.model.queue_ttl_s * 1000);
    }
    const fin = this.store.oldestFinished();
    if (fin !== undefined) times.push(fin + config.model.retention_s * 1000);
    return times.length === 0 ? undefined : Math.min(...times);
  }

  /**
   * Cancels a job the account owns. A queued job ends at once; a running one ends too and its
   * epoch is bumped, so whatever its agent sends next is stale; its holder is told to stop.
   * Idempotent: a finished job answers as it is.
   */
  cancel(id: string, accountId: string, now: number): { ok: true; job: JobRow } | Failure {
    const job = this.store.job(id);
    if (!job || job.account_id !== accountId) return fail("job_not_found", `no job ${id}`);
    if (isTerminal(job.status as JobStatus)) return { ok: true, job };
    if (job.status === "running") {
      if (job.agent_id !== null) this.revoke(job.agent_id, { job_id: job.id, epoch: job.epoch, why: "cancelled" });
      this.endAttempt(job, now, "cancelled", "cancelled");
      job.epoch += 1;
    }
    this.finish(job, "cancelled", now, "cancelled", "cancelled by the client");
    this.store.saveJob(job);
    this.flushUsage();
    this.counters.commits++;
    return { ok: true, job };
  }

  /** Deletes a finished job the account owns; every file under it goes too. */
  remove(id: string, accountId: string, now: number): { ok: true } | Failure {
    const job = this.store.job(id);
    if (!job || job.account_id !== accountId) return fail("job_not_found", `no job ${id}`);
    if (!isTerminal(job.status as JobStatus)) {
      return fail("job_not_finished", `job ${id} is ${job.status}; cancel it first, or wait for it to finish`);
    }
    this.store.deleteJob(id, now);
    this.noteGone([id]);
    this.counters.commits++;
    return { ok: true };
  }

  /**
   * A job actor follows a job for its subscribers: until {@link unwatch} (or the job's end),
   * every change of its status is noted for the actor to tell it. Answers the job as it is.
   */
  watch(id: string, accountId: string, now: number): { ok: true; job: AdminJobView } | Failure {
    const out = this.view(id, accountId, now);
    if (out.ok && !isTerminal(out.job.status) && this.watched.size < MAX_WATCHED) this.watched.add(id);
    return out;
  }

  unwatch(id: string): void {
    this.watched.delete(id);
  }

  /** A job as its owner sees it, or not found (also when another account owns it). */
  view(id: string, accountId: string, now: number): { ok: true; job: AdminJobView } | Failure {
    const job = this.store.job(id);
    if (!job || job.account_id !== accountId) return fail("job_not_found", `no job ${id}`);
    return { ok: true, job: this.render(job, now) };
  }

  /** A job as admins see it, whoever owns it. */
  /** Any account's job, and the account that owns it. */
  adminView(id: string, now: number): { ok: true; job: AdminJobView; account_id: string } | Failure {
    const job = this.store.job(id);
    return job
      ? { ok: true, job: this.render(job, now), account_id: job.account_id }
      : fail("job_not_found", `no job ${id}`);
  }

  list(
    accountId: string,
    status: JobStatus | undefined,
    limit: number,
    cursor: string | undefined,
    now: number,
  ): AdminJobView[] {
    return this.store.listFor(accountId, status, limit, cursor).map((j) => this.render(j, now, false));
  }

  /** A stored job as a view; with its queue position, eta and wait reason while it waits. */
  render(job: JobRow, now: number, withPosition = true): AdminJobView {
    let queue: AdminJobView["queue"] = null;
    if (job.status === "queued" && withPosition) {
      const position = this.queues.position(job);
      const rate = this.queues.drainRate(job.tier, now);
      queue = {
        position,
        eta_s: rate > 0 ? Math.round(((position + 1) / rate) * 10) / 10 : null,
        reason: this.queues.waitReason(now - this.lastAgentSeen <= AGENT_SEEN_MS, now < this.scalingUntil),
      };
    }
    return renderJob(job, now, queue);
  }

  /** Per-tier depth, running, oldest wait, largest wait/SLO and drain rate. */
  stats(now: number): Omit<QueueStats, "model" | "shard">[] {
    return this.config ? this.queues.stats(this.config.tiers, now) : [];
  }

  /**
   * The shard's load for the demand signal (shared/capacity.ts): per configured tier, the
   * in-memory queued and running counts, the oldest wait (one index seek per lane) and the grant
   * rate, with the measured run time. Read per admin or provisioner request, never per job.
   */
  load(now: number): ShardLoad | undefined {
    const config = this.config;
    if (!config) return undefined;
    const tiers = this.queues.stats(config.tiers, now).map((t, i) => ({
      tier: t.tier,
      slo_s: config.tiers[i]?.slo_s ?? 1,
      queued: t.depth,
      running: t.running,
      oldest_wait_s: t.oldest_wait_s,
      drain_per_s: t.drain_per_s,
    }));
    return { cost_s: this.costS(), tiers };
  }

  /**
   * Counts an attempt of a desired version (the stable one or the canary): only their figures
   * have a window at the registry, and a model without a rollout costs nothing here.
   */
  private noteFigure(version: string, failed: boolean): void {
    const desired = this.config?.desired;
    if (version !== desired?.stable && version !== desired?.canary?.version) return;
    let f = this.figures.get(version);
    if (!f) {
      f = { jobs: 0, failed: 0 };
      this.figures.set(version, f);
    }
    f.jobs += 1;
    if (failed) f.failed += 1;
  }

  /**
   * The per-version figures since the last report, when there are some and the last report is
   * at least {@link FIGURES_MS} old; `undefined` otherwise (they wait for a later event).
   */
  takeFigures(now: number): VersionFigures[] | undefined {
    if (this.figures.size === 0 || now - this.figuresTakenAt < FIGURES_MS) return undefined;
    const out = [...this.figures].map(([version, f]) => ({ version, ...f }));
    this.figures = new Map();
    this.figuresTakenAt = now;
    return out;
  }

  /** Figures a report could not deliver: counted again, to go with the next one. */
  restoreFigures(figures: readonly VersionFigures[]): void {
    for (const f of figures) {
      const held = this.figures.get(f.version) ?? { jobs: 0, failed: 0 };
      this.figures.set(f.version, { jobs: held.jobs + f.jobs, failed: held.failed + f.failed });
    }
  }

  /** When figures waiting for a report are due (ms), or `undefined` when none wait. */
  figuresDue(): number | undefined {
    return this.figures.size === 0 ? undefined : this.figuresTakenAt + FIGURES_MS;
  }

  /** Leases granted to parked agents since the last call, by agent id. */
  takeDeliveries(): Map<string, Lease[]> {
    const out = this.deliveries;
    this.deliveries = new Map();
    return out;
  }

  /** Leases ended since the last call without their holders asking, by agent id. */
  takeRevocations(): Map<string, Revocation[]> {
    const out = this.revocations;
    this.revocations = new Map();
    return out;
  }

  /** Watched jobs whose status changed since the last call. */
  takeChanged(): string[] {
    const out = [...this.changed];
    this.changed = new Set();
    for (const id of out) {
      const status = this.store.job(id)?.status as JobStatus | undefined;
      if (status === undefined || isTerminal(status)) this.watched.delete(id);
    }
    return out;
  }

  /**
   * Writes the webhook messages of this event's status changes to the outbox and answers them.
   * The actor calls it before its event ends, so the messages are in the same commit as the
   * changes that made them; each carries the job as its owner reads it at the end of the event.
   */
  takeWebhookMessages(now: number): OutboundMessage[] {
    if (this.hooked.length === 0) return [];
    const noted = this.hooked;
    this.hooked = [];
    const out: OutboundMessage[] = [];
    for (const { id, type } of noted) {
      const job = this.store.job(id);
      if (!job || job.hooks === null) continue;
      const hooks = JSON.parse(job.hooks) as JobHook[];
      const payload: WebhookPayload = {
        type,
        timestamp: new Date(now).toISOString(),
        data: customerView(this.render(job, now, false)),
      };
      const text = JSON.stringify(payload);
      for (const h of hooks) {
        if (!h.events.includes(type)) continue;
        const row = this.store.addOutbox({
          account_id: job.account_id,
          job_id: id,
          endpoint: h.endpoint,
          url: h.url ?? null,
          type,
          payload: text,
          at: now,
        });
        out.push({
          seq: row.id,
          account_id: job.account_id,
          job_id: id,
          endpoint: h.endpoint,
          url: row.url,
          type,
          payload: text,
          at: now,
        });
      }
    }
    return out;
  }

  /** Messages still in the outbox, oldest first: those whose hand-over failed or was cut short. */
  outboxMessages(limit: number): OutboundMessage[] {
    return this.store.outbox(limit).map((r) => ({
      seq: r.id,
      account_id: r.account_id,
      job_id: r.job_id,
      endpoint: r.endpoint,
      url: r.url,
      type: r.type as WebhookEvent,
      payload: r.payload,
      at: r.at,
    }));
  }

  /** Jobs deleted since the last call: every file under them is to be deleted. */
  takeJobsGone(): string[] {
    return this.jobsGone.splice(0);
  }

  /** Attempts that ended since the last call and may have left files. */
  takeAttemptsEnded(): EndedAttempt[] {
    return this.attemptsEnded.splice(0);
  }
}

/** The counters of a usage bucket, merged by {@link SchedulerCore} before its UPSERT. */
const USAGE_FIELDS = [
  "gpu_ms",
  "executing_ms",
  "lost_gpu_ms",
  "attempts",
  "succeeded",
  "failed",
  "cancelled",
  "expired",
  "output_bytes",
] as const;

/** The bytes of a success's outputs, as their records give them. */
function bytesOf(outputs: readonly Record<string, unknown>[]): number {
  let n = 0;
  for (const o of outputs) if (typeof o.size === "number") n += o.size;
  return n;
}
