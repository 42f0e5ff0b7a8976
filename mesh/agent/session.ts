/**
 * What an agent's actor knows of its agent between frames, in memory: which leases the agent
 * holds (granted through this actor, or confirmed by the shards at its hello and heartbeats),
 * each one's latest progress (coalesced: the newest wins), and which of its jobs a job actor
 * watches for subscribers. Progress, previews and logs are fenced here — a message about a
 * lease the agent does not hold is stale — so they cost no call to any other actor unless
 * someone watches the job.
 *
 * An actor that wakes up (after hibernation) has an empty session that is not yet `complete`:
 * until its agent's next heartbeat lists every lease it holds, a lease the session does not
 * know is checked with its shard once (see {@link Session.holds}).
 *
 * Frames are handled concurrently: a lease may be pushed to the agent while a heartbeat that
 * could not name it (the agent sent it before the lease arrived) is still with the shards. So
 * a heartbeat's answer forgets only the leases the shards said are stale, and a hello's only
 * those held before the hello came (see {@link Session.sync}).
 *
 * Called by AgentActor; tested in plain Node (session.test.ts).
 */
import type { ProgressPhase } from "../../shared/job.ts";
import type { LeaseRef } from "../../shared/wire.ts";

/** A job's progress as its agent last reported it. */
export interface Progress {
  epoch: number;
  phase: ProgressPhase;
  step: number;
  total: number;
  /** When it arrived (ms since the Unix epoch). */
  at: number;
}

/** Whether a message names a lease the agent holds: yes, no, or unknown (ask its shard). */
export type Holding = "held" | "stale" | "unknown";

/** Jobs whose progress one session keeps at most (an agent's leases: slots and prefetch). */
const MAX_HELD = 1024;

export class Session {
  /** Epoch held per job, and when it was added (see {@link Session.mark}). */
  private readonly held = new Map<string, { epoch: number; added: number }>();
  private added = 0;
  private readonly progressOf = new Map<string, Progress>();
  private readonly watched = new Set<string>();
  /** Whether every lease the agent holds is in `held` (set by a hello or heartbeat). */
  private complete = false;

  /**
   * Per job, the newest epoch whose lease ended here (accepted, given back, taken back): a
   * message about it or an older one is stale, without asking its shard, even while the
   * ending is still on its way there. Bounded, oldest forgotten first.
   */
  private readonly ended = new Map<string, number>();

  /** Whether `ref` names a lease the agent holds. */
  holds(ref: LeaseRef): Holding {
    const epoch = this.held.get(ref.job_id)?.epoch;
    if (epoch === ref.epoch) return "held";
    if (epoch !== undefined && epoch > ref.epoch) return "stale";
    const ended = this.ended.get(ref.job_id);
    if (ended !== undefined && ended >= ref.epoch) return "stale";
    return this.complete ? "stale" : "unknown";
  }

  /** Leases granted to the agent, or confirmed as its own; `watched` ones are followed at once. */
  add(refs: readonly (LeaseRef & { watched?: true })[]): void {
    for (const r of refs) {
      if ((this.ended.get(r.job_id) ?? 0) >= r.epoch) continue;
      if (r.watched) this.watched.add(r.job_id);
      if (this.held.size >= MAX_HELD && !this.held.has(r.job_id)) continue;
      const before = this.held.get(r.job_id);
      if (before?.epoch === r.epoch) continue;
      if (before !== undefined) this.progressOf.delete(r.job_id);
      this.held.set(r.job_id, { epoch: r.epoch, added: ++this.added });
    }
  }

  /** Where the session stands now: leases added after this are newer than a frame handled from here. */
  mark(): number {
    return this.added;
  }

  /**
   * The shards' answer to a hello or heartbeat that listed every lease the agent held when it
   * sent it: those renewed are its own; those `stale` are not, nor (`since`, for a hello) any
   * lease held before the frame came that was not renewed. A lease added since (pushed while
   * the frame was with the shards) or not named by the frame (on its way to the agent) stays.
   * The session is complete from now on.
   */
  sync(renewed: readonly LeaseRef[], stale: readonly LeaseRef[], since?: number): void {
    for (const r of stale) this.drop(r);
    if (since !== undefined) {
      const keep = new Map(renewed.map((r) => [r.job_id, r.epoch]));
      for (const [job, h] of this.held) {
        // Forgotten, not ended: a later heartbeat that the shard renews it for brings it back.
        if (h.added <= since && keep.get(job) !== h.epoch) this.forget(job);
      }
    }
    this.add(renewed);
    this.complete = true;
  }

  /** A lease that ended (its result sent, given back, taken back): forget it; it stays stale. */
  drop(ref: LeaseRef): void {
    if (this.held.get(ref.job_id)?.epoch === ref.epoch) this.forget(ref.job_id);
    if ((this.ended.get(ref.job_id) ?? 0) < ref.epoch) {
      this.ended.delete(ref.job_id);
      this.ended.set(ref.job_id, ref.epoch);
      if (this.ended.size > MAX_HELD) this.ended.delete(this.ended.keys().next().value as string);
    }
  }

  private forget(job: string): void {
    this.held.delete(job);
    this.progressOf.delete(job);
    this.watched.delete(job);
  }

  /** Records a held lease's progress (the newest wins). */
  progress(ref: LeaseRef, p: Omit<Progress, "epoch">): void {
    if (this.held.get(ref.job_id)?.epoch === ref.epoch) this.progressOf.set(ref.job_id, { epoch: ref.epoch, ...p });
  }

  /** A held lease's latest progress, if any (at `epoch` only). */
  latest(jobId: string, epoch: number): Progress | undefined {
    const p = this.progressOf.get(jobId);
    return p?.epoch === epoch ? p : undefined;
  }

  /** A job actor follows this job for its subscribers: its progress, previews and logs go there. */
  watch(jobId: string): void {
    this.watched.add(jobId);
  }

  unwatch(jobId: string): void {
    this.watched.delete(jobId);
  }

  isWatched(jobId: string): boolean {
    return this.watched.has(jobId);
  }

  /** The leases the agent holds, as this session knows them. */
  leases(): LeaseRef[] {
    return [...this.held].map(([job_id, h]) => ({ job_id, epoch: h.epoch }));
  }
}
