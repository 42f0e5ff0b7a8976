/**
 * The scheduler's decisions, free of any runtime: per-tier SLO-fair queues, leases with epochs,
 * expiry and requeue, admission control, and the snapshot that answers queue position and ETA.
 * The SchedulerActor is a thin shell that feeds it the clock and persists through
 * {@link SchedulerStore}; plain-Node tests and benchmarks drive the very same code on
 * `node:sqlite`.
 *
 * Ownership (DESIGN.md, "Who owns what"): only this module grants leases and bumps epochs.
 * Every result names the epoch of its lease; a result from another epoch is `stale`.
 */
import type { AdminAttempt, AdminJobView, ModelConfig, QueueStats } from "../../shared/api.ts";
import { fail, type Failure } from "../../shared/errors.ts";
import { canTransition, isTerminal, type FailureReason, type JobStatus, type WaitReason } from "../../shared/job.ts";
import { fairTag, pickHead, projectedWaitS, urgency, type TierConfig } from "../../shared/slo.ts";
import { migrate, type Sql } from "../sql/sql.ts";
import { MIGRATIONS, SchedulerStore, type JobRow, type Lane } from "./store.ts";

/** Lease lifetime unless renewed (ms). */
export const DEFAULT_LEASE_TTL_MS = 30_000;
/** Time constant of the drain-rate and run-time averages (s). */
const EWMA_TAU_S = 60;
/** Queues up to this depth answer positions by exact count; deeper ones interpolate. */
const EXACT_POSITION_DEPTH = 20_000;
/** An agent not seen for this long no longer counts as serving the model (ms). */
const AGENT_SEEN_MS = 2 * DEFAULT_LEASE_TTL_MS;
/** This many failed attempts in a row marks the model's agents unhealthy. */
const UNHEALTHY_AFTER = 5;
/** How long a parked agent's request for work stands without a heartbeat (ms). */
const PARK_MS = 15_000;
/** How long a deleted job's last epoch is remembered: past the 24 h idempotency window (ms). */
const TOMBSTONE_MS = 48 * 3600 * 1000;
/**
 * The share of a tier's admission limit (`k × SLO`) past which an account that already has jobs
 * queued in the tier is refused: such accounts are shed before the rest.
 */
export const BACKLOG_SHED = 0.5;
/** Rows one sweep handles per kind, so an alarm stays short; the next alarm takes the rest. */
const SWEEP_BATCH = 500;
/** File work (ended attempts, deleted jobs) held for the actor at most; older entries drop. */
const MAX_PENDING_FILE_WORK = 10_000;

/** What the scheduler needs to know of its model and the tiers. */
export interface SchedulerConfig {
  model: ModelConfig;
  tiers: TierConfig[];
}

/** The stored body of a job: what the client sent, kept as sent. */
export interface JobBody {
  model: string;
  input: Record<string, unknown>;
  metadata?: Record<string, unknown> | undefined;
  deadline?: string | undefined;
  version?: string | undefined;
  webhook?: string | undefined;
}

export interface EnqueueItem {
  id: string;
  account_id: string;
  tier: string;
  body: JobBody;
}

export type EnqueueOutcome =
  | { ok: true; id: string; status: JobStatus; tier: string; created_at: number; existed: boolean }
  | Failure;

/** Who asks for work. */
export interface AgentRef {
  id: string;
  pool: string;
  /** Model versions the agent has loaded; the lease names the one to run. */
  versions?: string[];
}

/** A job handed to an agent. */
export interface Lease {
  job_id: string;
  epoch: number;
  deadline: number;
  attempt: number;
  model: string;
  version: string | null;
  input: Record<string, unknown>;
}

export interface LeaseRef {
  job_id: string;
  epoch: number;
}

/** How an attempt ended, as its agent reports it. */
export type Completion =
  | { status: "succeeded"; outputs: Record<string, unknown>[] }
  | { status: "failed"; code: FailureReason | string; message: string; retryable: boolean };

export type CompleteOutcome = { ok: true; status: JobStatus } | Failure;

/** An attempt that ended: its files are cleaned up; `kept` when it succeeded. */
export interface EndedAttempt {
  job_id: string;
  epoch: number;
  kept: boolean;
}

/** Counters the benchmarks read. */
export interface SchedulerCounters {
  /** Calls that wrote storage: each is one durable commit in the actor. */
  commits: number;
  enqueued: number;
  leased: number;
  completed: number;
}

interface Ewma {
  value: number;
  at: number;
}

/** What the pick knows of a tier with queued jobs. */
interface TierRank {
  tier: string;
  sloS: number;
  /** The oldest queued job's enqueue time: the tier's rank. */
  enqueuedAtMs: number;
  oldestId: string;
  headId: string;
  headAtMs: number;
}

/**
 * The scheduler of one model shard. Not thread-safe by design: the actor runs one event at a
 * time, and each public method is one event.
 */
export class SchedulerCore {
  readonly store: SchedulerStore;
  readonly counters: SchedulerCounters = { commits: 0, enqueued: 0, leased: 0, completed: 0 };
  private config: SchedulerConfig | undefined;
  /** Queued jobs per tier. */
  private readonly depth = new Map<string, number>();
  /** Queued jobs per tier and lane (pinned version, or `null`); lanes with none are dropped. */
  private readonly lanes = new Map<string, Map<Lane, number>>();
  /** Queued jobs per tier and account (`tier\naccount`); accounts with none are dropped. */
  private readonly queuedBy = new Map<string, number>();
  private readonly running = new Map<string, number>();
  private readonly drain = new Map<string, Ewma>();
  private runtime: Ewma | undefined;
  private lastAgentSeen = 0;
  private failuresInRow = 0;
  private readonly waiting = new Map<string, { agent: AgentRef; capacity: number; want: number; until: number }>();
  private deliveries = new Map<string, Lease[]>();
  private readonly vt = new Map<string, number>();
  /** Per tier: whether its last grant won on its backlog went to the oldest job (in memory). */
  private readonly backlogTurn = new Map<string, boolean>();
  /** Jobs deleted since the actor last took them: their files are to be deleted. */
  private readonly jobsGone: string[] = [];
  /** Attempts ended since the actor last took them: their unfinished uploads are to be aborted. */
  private readonly attemptsEnded: EndedAttempt[] = [];
  leaseTtlMs = DEFAULT_LEASE_TTL_MS;

  constructor(sql: Sql) {
    this.store = new SchedulerStore(sql);
    migrate(sql, MIGRATIONS);
    const stored = this.store.getMeta("config");
    if (stored !== undefined) this.config = JSON.parse(stored) as SchedulerConfig;
    for (const r of this.store.countsByStatus()) {
      if (r.status === "running") this.running.set(r.tier, r.n);
    }
    for (const r of this.store.queuedLanes()) this.countQueued(r.tier, r.version, r.account_id, r.n);
  }

  get configured(): SchedulerConfig | undefined {
    return this.config;
  }

  /** Stores the model's and tiers' configuration when it is newer than what is held. */
  configure(config: SchedulerConfig): boolean {
    const held = this.config;
    const same =
      held !== undefined &&
      held.model.updated_at === config.model.updated_at &&
      JSON.stringify(held.tiers) === JSON.stringify(config.tiers);
    if (same) return false;
    if (held !== undefined && held.model.updated_at > config.model.updated_at) {
      // An older snapshot (a Worker's stale cache) never overwrites a newer model config,
      // but tiers travel with it and are taken as given.
      config = { model: held.model, tiers: config.tiers };
    }
    this.config = config;
    this.store.setMeta("config", JSON.stringify(config));
    return true;
  }

  private tier(name: string): TierConfig | undefined {
    return this.config?.tiers.find((t) => t.name === name);
  }

  private need(): SchedulerConfig {
    if (!this.config) throw new Error("scheduler used before it was configured");
    return this.config;
  }

  private bump(map: Map<string, number>, tier: string, by: number): void {
    map.set(tier, (map.get(tier) ?? 0) + by);
  }

  /** Counts `by` more (or fewer) queued jobs in a tier's lane. */
  private countQueued(tier: string, lane: Lane, account: string, by: number): void {
    this.bump(this.depth, tier, by);
    const key = `${tier}\n${account}`;
    const mine = (this.queuedBy.get(key) ?? 0) + by;
    if (mine > 0) this.queuedBy.set(key, mine);
    else this.queuedBy.delete(key);
    let lanes = this.lanes.get(tier);
    if (!lanes) {
      lanes = new Map();
      this.lanes.set(tier, lanes);
    }
    const n = (lanes.get(lane) ?? 0) + by;
    if (n > 0) lanes.set(lane, n);
    else lanes.delete(lane);
  }

  /** The lanes of a tier that hold queued jobs. */
  private lanesOf(tier: string): Lane[] {
    return [...(this.lanes.get(tier)?.keys() ?? [])];
  }

  /** The lanes of a tier an agent serving `versions` may take jobs from. */
  private lanesFor(tier: string, versions: readonly string[] | undefined): Lane[] {
    return this.lanesOf(tier).filter((l) => l === null || (versions?.includes(l) ?? false));
  }

  /** Whether any queued job is in a lane the agent may serve (in memory: no query). */
  private hasWorkFor(agent: AgentRef): boolean {
    for (const tier of this.lanes.keys()) if (this.lanesFor(tier, agent.versions).length > 0) return true;
    return false;
  }

  /** A tier's oldest queued job over `lanes` (default: all), ties by id. */
  private oldestOf(tier: string, lanes: readonly Lane[] = this.lanesOf(tier)) {
    let best: { id: string; enqueued_at: number } | undefined;
    for (const lane of lanes) {
      const o = this.store.oldestJob(tier, lane);
      if (o && (!best || o.enqueued_at < best.enqueued_at || (o.enqueued_at === best.enqueued_at && o.id < best.id)))
        best = o;
    }
    return best;
  }

  /** A tier's head by `(tag, id)` over `lanes` (default: all). */
  private headOf(tier: string, lanes: readonly Lane[] = this.lanesOf(tier)) {
    let best: { id: string; tag: number; enqueued_at: number } | undefined;
    for (const lane of lanes) {
      const h = this.store.headOf(tier, lane);
      if (h && (!best || h.tag < best.tag || (h.tag === best.tag && h.id < best.id))) best = h;
    }
    return best;
  }

  private drainRate(tier: string, now: number): number {
    const e = this.drain.get(tier);
    if (!e) return 0;
    return e.value * Math.exp(-Math.max(0, now - e.at) / 1000 / EWMA_TAU_S);
  }

  private noteGrant(tier: string, now: number): void {
    // Decayed counter: a rate in jobs/s with a time constant of EWMA_TAU_S.
    this.drain.set(tier, { value: this.drainRate(tier, now) + 1 / EWMA_TAU_S, at: now });
  }

  /** Expected service seconds of one job: measured run times, else the configured estimate. */
  costS(): number {
    return this.runtime?.value ?? this.need().model.expected_runtime_s;
  }

  private noteRuntime(seconds: number): void {
    const prev = this.runtime?.value ?? this.need().model.expected_runtime_s;
    this.runtime = { value: prev + (seconds - prev) * 0.1, at: 0 };
  }

  /**
   * The projected wait (s) of a tier, and whether an account's new submits to it are refused.
   * The wait is the tier's: `max(depth / drain rate, its oldest job's wait)`. Past `k × SLO` the
   * tier is over capacity and refuses everyone. Accounts that already hold queued jobs in the
   * tier are shed first, from {@link BACKLOG_SHED} of that limit: fair queuing serves an account
   * with nothing queued next to the job in service, while a flooding account's next job would
   * follow its own backlog. So one account's flood closes the tier to that account well before
   * the tier's wait reaches the limit that closes it to the others.
   */
  admission(
    tierName: string,
    accountId: string,
    now: number,
  ): { waitS: number; refused: boolean; retryAfterS: number; backlogged: boolean } {
    const tier = this.tier(tierName);
    if (!tier) return { waitS: 0, refused: false, retryAfterS: 0, backlogged: false };
    const depth = this.depth.get(tierName) ?? 0;
    const oldest = depth > 0 ? this.oldestOf(tierName)?.enqueued_at : undefined;
    // The decayed grant rate runs towards 0 in a quiet tier, where one queued job would then
    // project hours: a tier that is served at all drains at least one job per cost.
    const drain = this.drainRate(tierName, now);
    const waitS = projectedWaitS(
      depth,
      drain > 0 ? Math.max(drain, 1 / this.costS()) : 0,
      oldest === undefined ? 0 : (now - oldest) / 1000,
    );
    const backlogged = (this.queuedBy.get(`${tierName}\n${accountId}`) ?? 0) > 0;
    const limit = tier.admission_k * tier.slo_s * (backlogged ? BACKLOG_SHED : 1);
    const refused = waitS > limit;
    const retryAfterS = refused ? Math.max(1, Math.ceil(Math.min(waitS - limit, tier.slo_s))) : 0;
    return { waitS, refused, retryAfterS, backlogged };
  }

  /**
   * Makes jobs durable in their tier's queue. Idempotent by job id: an id already held answers
   * with the job as it is. One call is one commit however many jobs it carries.
   */
  enqueue(items: readonly EnqueueItem[], now: number, admit = true): EnqueueOutcome[] {
    const config = this.need();
    const cost = this.costS();
    /** Admission verdicts by tier and account, so a batch asks once for each. */
    const verdicts = new Map<string, ReturnType<SchedulerCore["admission"]>>();
    let wrote = false;
    const out = items.map((item): EnqueueOutcome => {
      const held = this.store.job(item.id);
      if (held) {
        return {
          ok: true,
          id: held.id,
          status: held.status as JobStatus,
          tier: held.tier,
          created_at: held.created_at,
          existed: true,
        };
      }
      // An id that comes back after its job was deleted is an Idempotency-Key reused: the
      // account still maps the key to that job. Deleted stays deleted (and no epoch repeats).
      if (this.store.tombstone(item.id) !== undefined) {
        return fail(
          "idempotency_conflict",
          `the job this Idempotency-Key created (${item.id}) was deleted; submit with a new key`,
        );
      }
      const tier = this.tier(item.tier);
      if (!tier) return fail("bad_request", `unknown tier ${item.tier}`);
      if (admit) {
        const key = `${item.tier}\n${item.account_id}`;
        let v = verdicts.get(key);
        if (!v) {
          v = this.admission(item.tier, item.account_id, now);
          verdicts.set(key, v);
        }
        if (v.refused) {
          return fail(
            "overloaded",
            `tier ${item.tier} is over capacity for this account: its projected wait of ${Math.round(v.waitS)} s passes ${v.backlogged ? `${BACKLOG_SHED} × ` : ""}${tier.admission_k} × its ${tier.slo_s} s SLO${v.backlogged ? ", and this account already has jobs queued in it" : ""}; retry later`,
            v.retryAfterS,
          );
        }
      }
      // Start-time fair queuing runs on the tier's virtual time (the tag of the last job it
      // served), not the wall clock: a newcomer lands next to the job in service, ahead of a
      // backlog that piled up while the tier was served slower than one job per cost.
      const tag = fairTag(this.virtualTime(item.tier), this.store.lastTag(item.account_id, item.tier), cost);
      this.store.setLastTag(item.account_id, item.tier, tag);
      this.store.insertJob({
        id: item.id,
        account_id: item.account_id,
        tier: item.tier,
        tag,
        enqueued_at: now,
        body: JSON.stringify({ ...item.body, model: config.model.name }),
        version: item.body.version ?? null,
      });
      this.countQueued(item.tier, item.body.version ?? null, item.account_id, 1);
      this.counters.enqueued++;
      wrote = true;
      return { ok: true, id: item.id, status: "queued", tier: item.tier, created_at: now, existed: false };
    });
    if (wrote) {
      this.counters.commits++;
      this.dispatch(now);
    }
    return out;
  }

  /**
   * Grants up to `capacity − held` leases to an agent (its free slots plus prefetch), each the
   * tier head with the largest wait/SLO. Every grant bumps the job's epoch. O(tiers) queries
   * for the first pick and one for each further pick.
   */
  lease(agent: AgentRef, capacity: number, now: number, maxNew = Number.POSITIVE_INFINITY): Lease[] {
    this.lastAgentSeen = now;
    const room = Math.max(0, Math.floor(capacity) - this.store.countHeldBy(agent.id));
    const want = Math.min(room, Math.max(0, Math.floor(maxNew)));
    const leases = want === 0 ? [] : this.pick(agent, want, now);
    if (leases.length > 0) this.counters.commits++;
    // What could not be granted now waits here: the next enqueue hands it out at once.
    if (Number.isFinite(maxNew)) this.park(agent, capacity, want - leases.length, now);
    return leases;
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

  /** Jobs deleted since the last call: every file under them is to be deleted. */
  takeJobsGone(): string[] {
    return this.jobsGone.splice(0);
  }

  /**
   * Attempts that ended since the last call: their unfinished uploads are to be aborted and,
   * unless `kept` (the attempt succeeded), their files deleted.
   */
  takeAttemptsEnded(): EndedAttempt[] {
    return this.attemptsEnded.splice(0);
  }

  private noteAttemptEnded(a: EndedAttempt): void {
    // Bounded for callers that never take them (plain-Node benchmarks); the actor takes them
    // after every event.
    if (this.attemptsEnded.length >= MAX_PENDING_FILE_WORK) this.attemptsEnded.shift();
    this.attemptsEnded.push(a);
  }

  /** Leases granted to parked agents since the last call, by agent id. */
  takeDeliveries(): Map<string, Lease[]> {
    const out = this.deliveries;
    this.deliveries = new Map();
    return out;
  }

  /** Grants queued work to parked agents, oldest parked first. */
  private dispatch(now: number): void {
    if (this.waiting.size === 0) return;
    // A copy: entries are deleted and re-set while we go, which would revisit them.
    for (const [id, w] of Array.from(this.waiting)) {
      if (this.queuedTotal() === 0) return;
      if (w.until < now) {
        this.waiting.delete(id);
        continue;
      }
      // Nothing it may serve (the queued jobs are pinned to versions it lacks): it keeps waiting.
      if (!this.hasWorkFor(w.agent)) continue;
      const room = Math.max(0, w.capacity - this.store.countHeldBy(id));
      const leases = this.pick(w.agent, Math.min(w.want, room), now);
      if (leases.length === 0) continue;
      this.waiting.delete(id);
      const left = w.want - leases.length;
      if (left > 0) this.waiting.set(id, { ...w, want: left });
      this.deliveries.set(id, [...(this.deliveries.get(id) ?? []), ...leases]);
    }
  }

  private queuedTotal(): number {
    let n = 0;
    for (const v of this.depth.values()) n += v;
    return n;
  }

  /**
   * Picks up to `want` jobs for an agent. The tier served is the one whose oldest queued job has
   * the largest wait/SLO (ties to the smaller SLO, then the name). Inside it, fair queuing
   * decides: its head by tag is served when the head's own wait/SLO would win the pick too.
   * Otherwise the tier won on its backlog, and those grants alternate between the oldest job and
   * the head; a grant out of tag order does not advance the tier's virtual time. Ranking by the
   * head alone hides a backlog (the head is mostly a newcomer's job); serving only the oldest
   * would turn the tier into FIFO under overload, letting a flooding account crowd out the rest.
   */
  private pick(agent: AgentRef, want: number, now: number): Lease[] {
    const config = this.need();
    const ranks = new Map<string, TierRank>();
    const load = (t: Pick<TierConfig, "name" | "slo_s">): void => {
      // Only the lanes this agent may serve: a job pinned to a version it lacks is not its.
      const lanes = this.lanesFor(t.name, agent.versions);
      const head = lanes.length > 0 ? this.headOf(t.name, lanes) : undefined;
      const oldest = head ? this.oldestOf(t.name, lanes) : undefined;
      if (!head || !oldest) {
        ranks.delete(t.name);
        return;
      }
      ranks.set(t.name, {
        tier: t.name,
        sloS: t.slo_s,
        enqueuedAtMs: oldest.enqueued_at,
        oldestId: oldest.id,
        headId: head.id,
        headAtMs: head.enqueued_at,
      });
    };
    const tiers = this.tiersInPlay(config);
    for (const t of tiers) load(t);
    const leases: Lease[] = [];
    while (leases.length < want) {
      const all = [...ranks.values()];
      const best = pickHead(all, now);
      if (!best) break;
      let id = best.headId;
      if (best.oldestId !== best.headId) {
        let rival = -1;
        for (const r of all) if (r !== best) rival = Math.max(rival, urgency(now, r.enqueuedAtMs, r.sloS));
        if (urgency(now, best.headAtMs, best.sloS) < rival) {
          const toOldest = !(this.backlogTurn.get(best.tier) ?? false);
          this.backlogTurn.set(best.tier, toOldest);
          if (toOldest) id = best.oldestId;
        }
      }
      const job = this.store.job(id);
      if (!job) break;
      leases.push(this.grant(job, agent, now, id === best.headId));
      const tier = tiers.find((t) => t.name === best.tier);
      if (tier) load(tier);
    }
    return leases;
  }

  /** A tier's virtual time (s): the largest tag it has served. */
  private virtualTime(tier: string): number {
    let v = this.vt.get(tier);
    if (v === undefined) {
      v = Number(this.store.getMeta(`vt:${tier}`) ?? 0);
      this.vt.set(tier, v);
    }
    return v;
  }

  /**
   * The configured tiers, plus any tier still holding jobs that the configuration dropped
   * (served and expired at the largest SLO, so nothing is stranded).
   */
  private tiersInPlay(config: SchedulerConfig): Pick<TierConfig, "name" | "slo_s">[] {
    const out: Pick<TierConfig, "name" | "slo_s">[] = [...config.tiers];
    const slowest = Math.max(...config.tiers.map((t) => t.slo_s));
    for (const name of new Set([...this.depth.keys(), ...this.running.keys()])) {
      if (
        !config.tiers.some((t) => t.name === name) &&
        ((this.depth.get(name) ?? 0) > 0 || (this.running.get(name) ?? 0) > 0)
      ) {
        out.push({ name, slo_s: slowest });
      }
    }
    return out;
  }

  private grant(job: JobRow, agent: AgentRef, now: number, inTagOrder = true): Lease {
    const body = JSON.parse(job.body) as JobBody;
    if (inTagOrder && job.tag > this.virtualTime(job.tier)) {
      this.vt.set(job.tier, job.tag);
      this.store.setMeta(`vt:${job.tier}`, String(job.tag));
    }
    const version = body.version ?? agent.versions?.[0] ?? null;
    this.transition(job, "running");
    job.phase = "assigned";
    job.epoch += 1;
    job.agent_id = agent.id;
    job.lease_deadline = now + this.leaseTtlMs;
    job.started_at ??= now;
    const attempts = JSON.parse(job.attempts) as StoredAttempt[];
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
    job.attempts = JSON.stringify(attempts);
    this.store.saveJob(job);
    this.countQueued(job.tier, job.version, job.account_id, -1);
    this.bump(this.running, job.tier, 1);
    this.noteGrant(job.tier, now);
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
    };
  }

  private transition(job: JobRow, to: JobStatus): void {
    const from = job.status as JobStatus;
    if (!canTransition(from, to)) throw new Error(`job ${job.id}: illegal transition ${from} → ${to}`);
    job.status = to;
  }

  /**
   * Extends the leases an agent still holds at the epoch it names; the rest come back as
   * `stale` (requeued, cancelled or leased to another) and the agent abandons them. A lease
   * whose attempt has run for the model's `run_timeout_s` is not extended: its job goes back to
   * its queue (`run_timeout`, spending an attempt) and the lease comes back as `stale`, so a
   * runner hung inside a job cannot hold it forever by heartbeating.
   */
  renew(
    agentId: string,
    refs: readonly LeaseRef[],
    now: number,
  ): { renewed: LeaseRef[]; stale: LeaseRef[]; deadline: number } {
    this.lastAgentSeen = now;
    const renewed: LeaseRef[] = [];
    const stale: LeaseRef[] = [];
    const deadline = now + this.leaseTtlMs;
    const runTimeoutMs = (this.config?.model.run_timeout_s ?? Infinity) * 1000;
    let timedOut = 0;
    for (const ref of refs) {
      const job = this.store.job(ref.job_id);
      if (job && job.status === "running" && job.agent_id === agentId && job.epoch === ref.epoch) {
        // The job's first start bounds its current attempt's: read the attempts only when
        // even the first start is a run timeout ago.
        const timedOutNow =
          now - (job.started_at ?? now) >= runTimeoutMs &&
          now - ((JSON.parse(job.attempts) as StoredAttempt[]).at(-1)?.started_at ?? now) >= runTimeoutMs;
        if (timedOutNow) {
          this.requeue(
            job,
            now,
            "run_timeout",
            true,
            `the attempt ran longer than run_timeout_s (${runTimeoutMs / 1000} s)`,
          );
          stale.push(ref);
          timedOut++;
          continue;
        }
        job.lease_deadline = deadline;
        this.store.saveJob(job);
        renewed.push(ref);
      } else {
        stale.push(ref);
      }
    }
    if (timedOut > 0) this.dispatch(now);
    if (renewed.length + timedOut > 0) this.counters.commits++;
    return { renewed, stale, deadline };
  }

  /**
   * Records the phase and progress of a running attempt, fenced by epoch and, when the caller
   * says who it is, by the lease holder too (as {@link complete} is).
   */
  progress(
    ref: LeaseRef,
    phase: JobRow["phase"],
    progress: Record<string, unknown> | null,
    agentId?: string,
  ): { ok: true } | Failure {
    const job = this.store.job(ref.job_id);
    if (
      !job ||
      job.status !== "running" ||
      job.epoch !== ref.epoch ||
      (agentId !== undefined && job.agent_id !== agentId)
    ) {
      return fail("conflict", "stale lease");
    }
    job.phase = phase;
    if (progress) job.progress = JSON.stringify(progress);
    this.store.saveJob(job);
    this.counters.commits++;
    return { ok: true };
  }

  /**
   * Ends an attempt. Refused as stale unless the job is running under exactly that epoch, so a
   * zombie agent can never overwrite its successor's work.
   */
  complete(ref: LeaseRef, result: Completion, now: number, agentId?: string): CompleteOutcome {
    const job = this.store.job(ref.job_id);
    // Fenced by epoch and, when the caller says who it is, by the lease holder too: an agent
    // that names the current epoch of a lease it does not hold is refused like a zombie.
    if (
      !job ||
      job.status !== "running" ||
      job.epoch !== ref.epoch ||
      (agentId !== undefined && job.agent_id !== agentId)
    ) {
      return fail("conflict", `stale result for ${ref.job_id} at epoch ${ref.epoch}`);
    }
    this.lastAgentSeen = now;
    this.counters.completed++;
    this.counters.commits++;
    if (result.status === "succeeded") {
      this.failuresInRow = 0;
      this.endAttempt(job, now, "succeeded", null);
      this.finish(job, "succeeded", now);
      job.outputs = JSON.stringify(result.outputs);
      this.store.saveJob(job);
      return { ok: true, status: "succeeded" };
    }
    this.failuresInRow++;
    if (result.retryable) {
      const status = this.requeue(job, now, result.code, true, result.message);
      this.dispatch(now);
      return { ok: true, status };
    }
    this.endAttempt(job, now, "failed", result.code);
    this.finish(job, "failed", now, result.code, result.message);
    this.store.saveJob(job);
    return { ok: true, status: "failed" };
  }

  private endAttempt(job: JobRow, now: number, outcome: StoredAttempt["outcome"], reason: string | null): void {
    const attempts = JSON.parse(job.attempts) as StoredAttempt[];
    const last = attempts.at(-1);
    if (last && last.ended_at === null) {
      last.ended_at = now;
      last.outcome = outcome;
      last.reason = reason;
      if (outcome === "succeeded") this.noteRuntime((now - last.started_at) / 1000);
      this.noteAttemptEnded({ job_id: job.id, epoch: last.epoch, kept: outcome === "succeeded" });
    }
    job.attempts = JSON.stringify(attempts);
  }

  private finish(job: JobRow, to: JobStatus, now: number, code?: string, message?: string): void {
    const wasRunning = job.status === "running";
    const wasQueued = job.status === "queued";
    this.transition(job, to);
    job.phase = "done";
    job.finished_at = now;
    job.agent_id = null;
    job.lease_deadline = null;
    if (code !== undefined) {
      job.error_code = code;
      job.error_message = message ?? code;
    }
    if (wasRunning) this.bump(this.running, job.tier, -1);
    if (wasQueued) this.countQueued(job.tier, job.version, job.account_id, -1);
  }

  /**
   * Sends a running job back to its queue with its original enqueue time and tag, so its
   * urgency keeps growing. `spend` counts the attempt against `max_attempts`; preemption and
   * drain do not. Past `max_attempts` the job fails with the reason.
   */
  private requeue(job: JobRow, now: number, reason: string, spend: boolean, message?: string): JobStatus {
    const config = this.need();
    this.endAttempt(job, now, spend ? (reason === "worker_lost" ? "lease_expired" : "failed") : "requeued", reason);
    if (spend) job.spent += 1;
    if (job.spent >= config.model.max_attempts) {
      this.finish(
        job,
        "failed",
        now,
        reason,
        `${message ?? reason}; gave up after ${job.spent} attempts (max_attempts ${config.model.max_attempts})`,
      );
      this.store.saveJob(job);
      return "failed";
    }
    this.transition(job, "queued");
    job.phase = "waiting";
    job.agent_id = null;
    job.lease_deadline = null;
    job.progress = null;
    this.store.saveJob(job);
    this.bump(this.running, job.tier, -1);
    this.countQueued(job.tier, job.version, job.account_id, 1);
    return "queued";
  }

  /**
   * Requeues every lease an agent holds: its socket closed (`worker_lost`, spends an attempt)
   * or it drained or was preempted (does not).
   */
  release(agentId: string, reason: FailureReason, now: number): number {
    const held = this.store.heldBy(agentId);
    const spend = reason !== "drained" && reason !== "preempted";
    this.waiting.delete(agentId);
    for (const job of held) this.requeue(job, now, reason, spend);
    if (held.length > 0) {
      this.counters.commits++;
      if (spend) this.failuresInRow += held.length;
      this.dispatch(now);
    }
    return held.length;
  }

  /**
   * Gives back particular leases (an agent drained them before starting, or a lease could not
   * be delivered) without spending their attempts. Stale refs are ignored.
   */
  releaseLeases(agentId: string, refs: readonly LeaseRef[], reason: "drained" | "preempted", now: number): number {
    let n = 0;
    for (const ref of refs) {
      const job = this.store.job(ref.job_id);
      if (!job || job.status !== "running" || job.agent_id !== agentId || job.epoch !== ref.epoch) continue;
      this.requeue(job, now, reason, false);
      n++;
    }
    if (n > 0) {
      this.counters.commits++;
      this.dispatch(now);
    }
    return n;
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
    let n = 0;
    for (const job of this.store.heldBy(agentId)) {
      if (named.has(`${job.id}@${job.epoch}`)) continue;
      const granted = (JSON.parse(job.attempts) as StoredAttempt[]).at(-1)?.started_at ?? now;
      if (granted >= connectedAt) continue;
      this.requeue(job, now, "worker_lost", true, "the agent reconnected without this lease");
      n++;
    }
    if (n > 0) {
      this.counters.commits++;
      this.failuresInRow += n;
      this.dispatch(now);
    }
    return n;
  }

  /**
   * Takes back leases that never reached their agent (it went away between park and
   * delivery): the jobs return to their queues as if never leased — no attempt recorded or
   * spent — though their epochs stay bumped, so epochs never decrease. The agent is unparked.
   */
  undeliver(agentId: string, refs: readonly LeaseRef[], now: number): number {
    this.waiting.delete(agentId);
    let n = 0;
    for (const ref of refs) {
      const job = this.store.job(ref.job_id);
      if (!job || job.status !== "running" || job.agent_id !== agentId || job.epoch !== ref.epoch) continue;
      const attempts = JSON.parse(job.attempts) as StoredAttempt[];
      if (attempts.at(-1)?.epoch === ref.epoch) attempts.pop();
      this.noteAttemptEnded({ job_id: job.id, epoch: ref.epoch, kept: false });
      job.attempts = JSON.stringify(attempts);
      if (attempts.length === 0) job.started_at = null;
      this.transition(job, "queued");
      job.phase = "waiting";
      job.agent_id = null;
      job.lease_deadline = null;
      this.store.saveJob(job);
      this.bump(this.running, job.tier, -1);
      this.countQueued(job.tier, job.version, job.account_id, 1);
      n++;
    }
    if (n > 0) {
      this.counters.commits++;
      this.dispatch(now);
    }
    return n;
  }

  private noteJobsGone(ids: readonly string[]): void {
    this.jobsGone.push(...ids);
    if (this.jobsGone.length > MAX_PENDING_FILE_WORK)
      this.jobsGone.splice(0, this.jobsGone.length - MAX_PENDING_FILE_WORK);
  }

  /** Forgets that an agent waits for work (its socket closed). */
  unpark(agentId: string): void {
    this.waiting.delete(agentId);
  }

  /** Who holds a job's lease now, for fencing outside the scheduler (uploads, progress). */
  leaseOf(
    jobId: string,
  ): { status: JobStatus; epoch: number; agent_id: string | null; account_id: string } | undefined {
    const job = this.store.job(jobId);
    return job
      ? { status: job.status as JobStatus, epoch: job.epoch, agent_id: job.agent_id, account_id: job.account_id }
      : undefined;
  }

  /**
   * The alarm's work: expired leases go back to their queues (`worker_lost`), queued jobs past
   * the model's queue TTL expire, finished jobs past retention are deleted. Bounded per call.
   */
  sweep(now: number): { requeued: number; expired: number; deleted: number } {
    const config = this.need();
    let requeued = 0;
    let expired = 0;
    for (const job of this.store.expiredLeases(now, SWEEP_BATCH)) {
      this.requeue(job, now, "worker_lost", true, "lease expired: the agent stopped renewing it");
      this.failuresInRow++;
      requeued++;
    }
    if (requeued > 0) this.dispatch(now);
    for (const t of this.tiersInPlay(config)) {
      if ((this.depth.get(t.name) ?? 0) === 0) continue;
      const before = now - config.model.queue_ttl_s * 1000;
      for (const job of this.lanesOf(t.name).flatMap((l) => this.store.expiredQueued(t.name, l, before, SWEEP_BATCH))) {
        this.finish(
          job,
          "expired",
          now,
          "queue_ttl",
          `waited longer than the model's queue TTL of ${config.model.queue_ttl_s} s`,
        );
        this.store.saveJob(job);
        expired++;
      }
    }
    const gone = this.store.deleteFinishedBefore(now - config.model.retention_s * 1000, SWEEP_BATCH, now);
    this.noteJobsGone(gone);
    const deleted = gone.length;
    this.store.deleteTombstonesBefore(now - TOMBSTONE_MS);
    if (requeued + expired + deleted > 0) this.counters.commits++;
    return { requeued, expired, deleted };
  }

  /** When the next sweep is due (ms), or `undefined` when nothing waits on time. */
  nextDeadline(): number | undefined {
    const config = this.config;
    if (!config) return undefined;
    const times: number[] = [];
    const lease = this.store.nextLeaseDeadline();
    if (lease !== undefined) times.push(lease);
    for (const t of this.tiersInPlay(config)) {
      if ((this.depth.get(t.name) ?? 0) === 0) continue;
      const oldest = this.oldestOf(t.name)?.enqueued_at;
      if (oldest !== undefined) times.push(oldest + config.model.queue_ttl_s * 1000);
    }
    const fin = this.store.oldestFinished();
    if (fin !== undefined) times.push(fin + config.model.retention_s * 1000);
    return times.length === 0 ? undefined : Math.min(...times);
  }

  /**
   * Cancels a job the account owns. A queued job ends at once; a running one ends too and its
   * epoch is bumped, so whatever its agent sends next is stale and the agent abandons it.
   * Idempotent: a finished job answers as it is.
   */
  cancel(
    id: string,
    accountId: string,
    now: number,
  ): { ok: true; job: JobRow; notify: { agent_id: string; job_id: string; epoch: number } | null } | Failure {
    const job = this.store.job(id);
    if (!job || job.account_id !== accountId) return fail("job_not_found", `no job ${id}`);
    if (isTerminal(job.status as JobStatus)) return { ok: true, job, notify: null };
    const notify =
      job.status === "running" && job.agent_id !== null
        ? { agent_id: job.agent_id, job_id: job.id, epoch: job.epoch }
        : null;
    if (job.status === "running") {
      this.endAttempt(job, now, "cancelled", "cancelled");
      job.epoch += 1;
    }
    this.finish(job, "cancelled", now, "cancelled", "cancelled by the client");
    this.store.saveJob(job);
    this.counters.commits++;
    return { ok: true, job, notify };
  }

  /** Deletes a finished job the account owns. */
  remove(id: string, accountId: string): { ok: true } | Failure {
    const job = this.store.job(id);
    if (!job || job.account_id !== accountId) return fail("job_not_found", `no job ${id}`);
    if (!isTerminal(job.status as JobStatus)) {
      return fail("job_not_finished", `job ${id} is ${job.status}; cancel it first, or wait for it to finish`);
    }
    this.store.deleteJob(id, Date.now());
    // Every file under the job goes, whatever its attempts left: finished outputs or not.
    this.noteJobsGone([id]);
    this.counters.commits++;
    return { ok: true };
  }

  /** A job as its owner sees it, or not found (also when another account owns it). */
  view(id: string, accountId: string, now: number): { ok: true; job: AdminJobView } | Failure {
    const job = this.store.job(id);
    if (!job || job.account_id !== accountId) return fail("job_not_found", `no job ${id}`);
    return { ok: true, job: this.render(job, now) };
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

  /** Why queued jobs of this model wait. */
  waitReason(now: number): WaitReason {
    if (now - this.lastAgentSeen > AGENT_SEEN_MS && [...this.running.values()].every((n) => n === 0)) return "no_agent";
    if (this.failuresInRow >= UNHEALTHY_AFTER) return "agents_unhealthy";
    return "capacity";
  }

  /** Queued jobs ahead of this one in its tier: exact for small queues, interpolated by tag beyond. */
  position(job: JobRow): number {
    const depth = this.depth.get(job.tier) ?? 0;
    const lanes = this.lanesOf(job.tier);
    if (depth <= EXACT_POSITION_DEPTH) {
      return lanes.reduce((n, l) => n + this.store.countAhead(job.tier, l, job.tag, job.id), 0);
    }
    const head = this.headOf(job.tier)?.tag ?? job.tag;
    const tail = Math.max(...lanes.map((l) => this.store.lastQueuedTag(job.tier, l) ?? job.tag));
    if (tail <= head) return 0;
    return Math.round(((job.tag - head) / (tail - head)) * (depth - 1));
  }

  render(job: JobRow, now: number, withPosition = true): AdminJobView {
    const body = JSON.parse(job.body) as JobBody;
    const attempts = (JSON.parse(job.attempts) as StoredAttempt[]).map((a): AdminAttempt => ({
      ...a,
      started_at: new Date(a.started_at).toISOString(),
      ended_at: iso(a.ended_at),
      executing_s: a.ended_at === null ? null : (a.ended_at - a.started_at) / 1000,
    }));
    let queue: AdminJobView["queue"] = null;
    if (job.status === "queued" && withPosition) {
      const position = this.position(job);
      const rate = this.drainRate(job.tier, now);
      queue = {
        position,
        eta_s: rate > 0 ? Math.round(((position + 1) / rate) * 10) / 10 : null,
        reason: this.waitReason(now),
      };
    }
    const finished = job.finished_at;
    return {
      id: job.id,
      model: body.model,
      tier: job.tier,
      status: job.status as JobStatus,
      phase: job.phase as AdminJobView["phase"],
      created_at: new Date(job.created_at).toISOString(),
      metadata: body.metadata ?? null,
      deadline: body.deadline ?? null,
      version: body.version ?? null,
      attempts,
      queue,
      // Stored as {@link progress} was handed it; agents report progress to job actors instead.
      progress: job.progress === null ? null : (JSON.parse(job.progress) as AdminJobView["progress"]),
      outputs: job.outputs === null ? null : (JSON.parse(job.outputs) as Record<string, unknown>[]),
      error: job.error_code === null ? null : { code: job.error_code, message: job.error_message ?? job.error_code },
      timings: {
        created_at: new Date(job.created_at).toISOString(),
        started_at: iso(job.started_at),
        finished_at: iso(finished),
        queued_s:
          job.started_at === null
            ? finished === null
              ? (now - job.created_at) / 1000
              : null
            : (job.started_at - job.created_at) / 1000,
        running_s: job.started_at === null ? null : ((finished ?? now) - job.started_at) / 1000,
      },
    };
  }

  /** Per-tier depth, running, oldest wait, largest wait/SLO and drain rate. */
  stats(now: number): Omit<QueueStats, "model" | "shard">[] {
    const config = this.config;
    if (!config) return [];
    return config.tiers.map((t) => {
      const oldest = (this.depth.get(t.name) ?? 0) > 0 ? this.oldestOf(t.name)?.enqueued_at : undefined;
      const waitedMs = oldest === undefined ? 0 : now - oldest;
      return {
        tier: t.name,
        depth: this.depth.get(t.name) ?? 0,
        running: this.running.get(t.name) ?? 0,
        oldest_wait_s: waitedMs / 1000,
        max_wait_over_slo: oldest === undefined ? 0 : urgency(now, oldest, t.slo_s),
        drain_per_s: Math.round(this.drainRate(t.name, now) * 1000) / 1000,
      };
    });
  }
}

function iso(t: number | null): string | null {
  return t === null ? null : new Date(t).toISOString();
}

/** An attempt as stored inside its job row (times in ms). */
interface StoredAttempt {
  n: number;
  agent: string;
  pool: string;
  version: string | null;
  epoch: number;
  started_at: number;
  ended_at: number | null;
  outcome: AdminAttempt["outcome"];
  reason: string | null;
}
