/**
 * A shard's queues and the pick: per-tier SLO-fair queues in lanes (a lane is the jobs pinned to
 * one model version, or the unpinned ones), what is queued where (counted in memory), the
 * virtual time fair queuing runs on, drain and run-time averages, admission, queue positions
 * and the stats admins read. It decides which job is next; granting it is SchedulerCore's.
 *
 * The pick's rules (docs/architecture.md, "Scheduling"): the tier served is the one whose
 * oldest queued job has the largest wait/SLO (ties to the smaller SLO, then the name); inside
 * it, fair queuing decides — its head by tag is served when the head's own wait/SLO would win
 * the pick too, otherwise the tier won on its backlog and such grants alternate between its
 * oldest job and its head. An agent's pick seeks only the lanes it may take from (its reach:
 * the versions it serves, and the unpinned lane unless it serves only the canary; versions.ts).
 *
 * Called by SchedulerCore.
 */
import type { QueueStats } from "../../shared/api.ts";
import type { WaitReason } from "../../shared/job.ts";
import { fairTag, pickHead, projectedWaitS, urgency, type TierConfig } from "../../shared/slo.ts";
import type { JobRow, Lane, SchedulerStore } from "./store.ts";
import { reaches, type Reach } from "./versions.ts";

/** Time constant of the drain-rate and run-time averages (s). */
const EWMA_TAU_S = 60;
/** Queues up to this depth answer positions by exact count; deeper ones interpolate. */
const EXACT_POSITION_DEPTH = 20_000;
/** Accounts' tags kept in memory at most (beyond, the cache starts over). */
const TAG_CACHE = 10_000;
/** This many failed attempts in a row marks the model's agents unhealthy. */
const UNHEALTHY_AFTER = 5;
/**
 * The share of a tier's admission limit (`k × SLO`) past which an account that already has jobs
 * queued in the tier is refused: such accounts are shed before the rest.
 */
export const BACKLOG_SHED = 0.5;

interface Ewma {
  value: number;
  at: number;
}

/** What the pick knows of a tier with queued jobs an agent may take. */
interface TierRank {
  tier: string;
  sloS: number;
  /** The oldest queued job's enqueue time: the tier's rank. */
  enqueuedAtMs: number;
  oldestId: string;
  headId: string;
  headAtMs: number;
}

/** A tier as the pick and admission see it. */
export type TierRef = Pick<TierConfig, "name" | "slo_s">;

/** Admission's verdict on an account's new submits to a tier. */
export interface Admission {
  waitS: number;
  refused: boolean;
  retryAfterS: number;
  /** The account already has jobs queued in the tier (it is shed first). */
  backlogged: boolean;
}

export class Queues {
  private readonly store: SchedulerStore;
  /** Queued jobs per tier. */
  private readonly depth = new Map<string, number>();
  /** Queued jobs per tier and lane; lanes with none are dropped. */
  private readonly lanes = new Map<string, Map<Lane, number>>();
  /** Queued jobs per tier and account (`tier\naccount`); accounts with none are dropped. */
  private readonly queuedBy = new Map<string, number>();
  private readonly running = new Map<string, number>();
  private readonly drain = new Map<string, Ewma>();
  private runtime: Ewma | undefined;
  /** Per tier: the largest tag served, in memory; written to storage by {@link checkpoint}. */
  private readonly vt = new Map<string, number>();
  /** Accounts' last tags per tier (`tier\naccount`), as lately read or written. */
  private readonly tags = new Map<string, number | undefined>();
  /** Tags moved by this event's enqueues, not yet written. */
  private readonly unsavedTags = new Set<string>();
  /** Per tier: whether its last grant won on its backlog went to the oldest job. */
  private readonly backlogTurn = new Map<string, boolean>();
  /** Attempts that failed in a row (any agent): past a few, the wait reason says so. */
  failuresInRow = 0;

  constructor(store: SchedulerStore) {
    this.store = store;
    for (const r of store.countsByStatus()) if (r.status === "running") this.running.set(r.tier, r.n);
    for (const r of store.queuedLanes()) this.countQueued(r.tier, r.version, r.account_id, r.n);
  }

  private static bump(map: Map<string, number>, key: string, by: number): void {
    map.set(key, (map.get(key) ?? 0) + by);
  }

  /** Counts `by` more (or fewer) queued jobs of an account in a tier's lane. */
  countQueued(tier: string, lane: Lane, account: string, by: number): void {
    Queues.bump(this.depth, tier, by);
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

  /** `n` queued jobs of a tier moved from one lane to another (their accounts and tier stay). */
  moveLane(tier: string, from: Lane, to: Lane, n: number): void {
    if (n === 0) return;
    const lanes = this.lanes.get(tier);
    if (!lanes) return;
    const left = (lanes.get(from) ?? 0) - n;
    if (left > 0) lanes.set(from, left);
    else lanes.delete(from);
    lanes.set(to, (lanes.get(to) ?? 0) + n);
  }

  /** Counts `by` more (or fewer) running jobs in a tier. */
  countRunning(tier: string, by: number): void {
    Queues.bump(this.running, tier, by);
  }

  queuedIn(tier: string): number {
    return this.depth.get(tier) ?? 0;
  }

  runningIn(tier: string): number {
    return this.running.get(tier) ?? 0;
  }

  /** Jobs queued in every tier together. */
  queuedTotal(): number {
    let n = 0;
    for (const v of this.depth.values()) n += v;
    return n;
  }

  /** Whether nothing runs in any tier. */
  idle(): boolean {
    return [...this.running.values()].every((n) => n === 0);
  }

  /** The lanes of a tier that hold queued jobs. */
  lanesOf(tier: string): Lane[] {
    return [...(this.lanes.get(tier)?.keys() ?? [])];
  }

  /** Queued jobs per tier and lane, as counted in memory (lanes with none left out). */
  laneCounts(): { tier: string; lane: Lane; n: number }[] {
    return [...this.lanes].flatMap(([tier, lanes]) => [...lanes].map(([lane, n]) => ({ tier, lane, n })));
  }

  /** The lanes of a tier an agent with `reach` may take jobs from. */
  lanesFor(tier: string, reach: Reach): Lane[] {
    return this.lanesOf(tier).filter((l) => reaches(reach, l));
  }

  /** Whether any queued job is in a lane an agent with `reach` may take (no query). */
  hasWorkFor(reach: Reach): boolean {
    for (const tier of this.lanes.keys()) if (this.lanesFor(tier, reach).length > 0) return true;
    return false;
  }

  /** A tier's oldest queued job over `lanes` (default: all), ties by id. */
  oldestOf(tier: string, lanes: readonly Lane[] = this.lanesOf(tier)): { id: string; enqueued_at: number } | undefined {
    let best: { id: string; enqueued_at: number } | undefined;
    for (const lane of lanes) {
      const o = this.store.oldestJob(tier, lane);
      if (o && (!best || o.enqueued_at < best.enqueued_at || (o.enqueued_at === best.enqueued_at && o.id < best.id)))
        best = o;
    }
    return best;
  }

  /** A tier's head by `(tag, id)` over `lanes` (default: all). */
  headOf(tier: string, lanes: readonly Lane[] = this.lanesOf(tier)) {
    let best: { id: string; tag: number; enqueued_at: number } | undefined;
    for (const lane of lanes) {
      const h = this.store.headOf(tier, lane);
      if (h && (!best || h.tag < best.tag || (h.tag === best.tag && h.id < best.id))) best = h;
    }
    return best;
  }

  drainRate(tier: string, now: number): number {
    const e = this.drain.get(tier);
    if (!e) return 0;
    return e.value * Math.exp(-Math.max(0, now - e.at) / 1000 / EWMA_TAU_S);
  }

  /** A grant in a tier: its drain rate rises (a decayed counter, jobs/s, time constant 60 s). */
  noteGrant(tier: string, now: number): void {
    this.drain.set(tier, { value: this.drainRate(tier, now) + 1 / EWMA_TAU_S, at: now });
  }

  /** Expected service seconds of one job: measured run times, else the configured estimate. */
  costS(expectedS: number): number {
    return this.runtime?.value ?? expectedS;
  }

  /** A successful attempt ran `seconds`: the run-time average moves towards it. */
  noteRuntime(seconds: number, expectedS: number): void {
    const prev = this.runtime?.value ?? expectedS;
    this.runtime = { value: prev + (seconds - prev) * 0.1, at: 0 };
  }

  /** A tier's virtual time (s): the largest tag it has served. */
  virtualTime(tier: string): number {
    let v = this.vt.get(tier);
    if (v === undefined) {
      v = Number(this.store.getMeta(`vt:${tier}`) ?? 0);
      this.vt.set(tier, v);
    }
    return v;
  }

  /** Writes the tiers' virtual times to storage (the alarm does, so grants write none). */
  checkpoint(): void {
    for (const [tier, v] of this.vt) {
      if (Number(this.store.getMeta(`vt:${tier}`) ?? 0) !== v) this.store.setMeta(`vt:${tier}`, String(v));
    }
  }

  /**
   * The fair-queuing tag of an account's next job in a tier, costing `costS`; remembered in
   * memory until {@link saveTags}, so a batch writes each account's tag once.
   */
  nextTag(account: string, tier: string, costS: number): number {
    const key = `${tier}\n${account}`;
    const last = this.tags.has(key) ? this.tags.get(key) : this.store.lastTag(account, tier);
    // Tags run on the tier's virtual time (the tag of the last job it served), not the wall
    // clock: a newcomer lands next to the job in service, ahead of a backlog that piled up
    // while the tier was served slower than one job per cost.
    const tag = fairTag(this.virtualTime(tier), last, costS);
    this.tags.set(key, tag);
    this.unsavedTags.add(key);
    return tag;
  }

  /** Writes the tags {@link nextTag} moved, in the same event; the cache stays bounded. */
  saveTags(): void {
    for (const key of this.unsavedTags) {
      const cut = key.indexOf("\n");
      this.store.setLastTag(key.slice(cut + 1), key.slice(0, cut), this.tags.get(key) ?? 0);
    }
    this.unsavedTags.clear();
    if (this.tags.size > TAG_CACHE) this.tags.clear();
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
  admission(tier: TierConfig, accountId: string, now: number, costS: number): Admission {
    const depth = this.queuedIn(tier.name);
    const oldest = depth > 0 ? this.oldestOf(tier.name)?.enqueued_at : undefined;
    // The decayed grant rate runs towards 0 in a quiet tier, where one queued job would then
    // project hours: a tier that is served at all drains at least one job per cost.
    const drain = this.drainRate(tier.name, now);
    const waitS = projectedWaitS(
      depth,
      drain > 0 ? Math.max(drain, 1 / costS) : 0,
      oldest === undefined ? 0 : (now - oldest) / 1000,
    );
    const backlogged = (this.queuedBy.get(`${tier.name}\n${accountId}`) ?? 0) > 0;
    const limit = tier.admission_k * tier.slo_s * (backlogged ? BACKLOG_SHED : 1);
    const refused = waitS > limit;
    const retryAfterS = refused ? Math.max(1, Math.ceil(Math.min(waitS - limit, tier.slo_s))) : 0;
    return { waitS, refused, retryAfterS, backlogged };
  }

  /**
   * The configured tiers, plus any tier still holding jobs that the configuration dropped
   * (served and expired at the largest SLO, so nothing is stranded).
   */
  tiersInPlay(tiers: readonly TierConfig[]): TierRef[] {
    const out: TierRef[] = [...tiers];
    const slowest = Math.max(...tiers.map((t) => t.slo_s));
    for (const name of new Set([...this.depth.keys(), ...this.running.keys()])) {
      if (!tiers.some((t) => t.name === name) && (this.queuedIn(name) > 0 || this.runningIn(name) > 0)) {
        out.push({ name, slo_s: slowest });
      }
    }
    return out;
  }

  /**
   * Picks up to `want` jobs an agent with `reach` may take, handing each to `grant` as it
   * is picked (a grant changes what the next pick sees). O(tiers · lanes) index seeks for the
   * first pick and O(lanes) for each further one.
   */
  pick(
    tiers: readonly TierRef[],
    reach: Reach,
    want: number,
    now: number,
    grant: (job: JobRow, inTagOrder: boolean) => void,
  ): number {
    const ranks = new Map<string, TierRank>();
    const load = (t: TierRef): void => {
      const lanes = this.lanesFor(t.name, reach);
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
    for (const t of tiers) load(t);
    let granted = 0;
    let stale: TierRef | undefined;
    while (granted < want) {
      if (stale) load(stale);
      stale = undefined;
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
      const inTagOrder = id === best.headId;
      if (inTagOrder && job.tag > this.virtualTime(job.tier)) this.vt.set(job.tier, job.tag);
      this.countQueued(job.tier, job.version, job.account_id, -1);
      this.countRunning(job.tier, 1);
      this.noteGrant(job.tier, now);
      grant(job, inTagOrder);
      granted++;
      // The tier's rank moved; it is read again only if another pick follows.
      stale = tiers.find((t) => t.name === best.tier);
    }
    return granted;
  }

  /** Queued jobs ahead of this one in its tier: exact for small queues, interpolated by tag beyond. */
  position(job: JobRow): number {
    const depth = this.queuedIn(job.tier);
    const lanes = this.lanesOf(job.tier);
    if (depth <= EXACT_POSITION_DEPTH) {
      return lanes.reduce((n, l) => n + this.store.countAhead(job.tier, l, job.tag, job.id), 0);
    }
    const head = this.headOf(job.tier)?.tag ?? job.tag;
    const tail = Math.max(...lanes.map((l) => this.store.lastQueuedTag(job.tier, l) ?? job.tag));
    if (tail <= head) return 0;
    return Math.round(((job.tag - head) / (tail - head)) * (depth - 1));
  }

  /**
   * Why a queued job waits: no agent asked for work lately and none holds a lease (a pool is
   * growing for the model: `scaling_up`; else `no_agent`), its model's attempts keep failing,
   * or the agents are busy.
   */
  waitReason(agentSeenLately: boolean, scalingUp = false): WaitReason {
    if (!agentSeenLately && this.idle()) return scalingUp ? "scaling_up" : "no_agent";
    if (this.failuresInRow >= UNHEALTHY_AFTER) return "agents_unhealthy";
    return "capacity";
  }

  /** Per-tier depth, running, oldest wait, largest wait/SLO and drain rate. */
  stats(tiers: readonly TierConfig[], now: number): Omit<QueueStats, "model" | "shard">[] {
    return tiers.map((t) => {
      const oldest = this.queuedIn(t.name) > 0 ? this.oldestOf(t.name)?.enqueued_at : undefined;
      const waitedMs = oldest === undefined ? 0 : now - oldest;
      return {
        tier: t.name,
        depth: this.queuedIn(t.name),
        running: this.runningIn(t.name),
        oldest_wait_s: waitedMs / 1000,
        max_wait_over_slo: oldest === undefined ? 0 : urgency(now, oldest, t.slo_s),
        drain_per_s: Math.round(this.drainRate(t.name, now) * 1000) / 1000,
      };
    });
  }
}
