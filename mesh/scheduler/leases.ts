/**
 * The leases a scheduler shard has out, in memory: who holds each running job, at which epoch,
 * and until when. Renewals move deadlines here only — a heartbeat writes nothing durable — so
 * a renewal costs no commit. The row keeps the grant's deadline; after a restart every lease
 * gets a fresh lease time from the moment the shard woke up (a holder that is gone still loses
 * its lease one TTL later; one that lives renews it as before).
 *
 * The table is also the one place that says whether a message names the current lease
 * ({@link LeaseTable.current}): results, renewals, releases and upload starts all ask it.
 *
 * Called by SchedulerCore.
 */

/** A lease out, as the shard holds it. */
export interface HeldLease {
  agent: string;
  epoch: number;
  /** When it ends unless renewed (ms since the Unix epoch). */
  deadline: number;
  /** When it was granted (ms); for the run timeout. */
  grantedAt: number;
  /**
   * Whether the attempt may have left files to clean up when it ends: an upload was started
   * under it, or the shard cannot know (leases it found on waking).
   */
  files: boolean;
}

/** A lease named by a message: a job and the epoch it was granted at. */
export interface LeaseRef {
  job_id: string;
  epoch: number;
}

export class LeaseTable {
  private readonly byJob = new Map<string, HeldLease>();
  private readonly byAgent = new Map<string, Set<string>>();

  /** The lease of a job, if it runs. */
  get(jobId: string): HeldLease | undefined {
    return this.byJob.get(jobId);
  }

  /**
   * The lease `ref` names, if it is the job's current one and (when `agentId` is given) that
   * agent holds it; otherwise the message is stale. An epoch alone is guessable, so whoever can
   * say who sent a message says it.
   */
  current(ref: LeaseRef, agentId?: string): HeldLease | undefined {
    const l = this.byJob.get(ref.job_id);
    return l && l.epoch === ref.epoch && (agentId === undefined || l.agent === agentId) ? l : undefined;
  }

  set(jobId: string, lease: HeldLease): void {
    this.end(jobId);
    this.byJob.set(jobId, lease);
    let jobs = this.byAgent.get(lease.agent);
    if (!jobs) {
      jobs = new Set();
      this.byAgent.set(lease.agent, jobs);
    }
    jobs.add(jobId);
  }

  /** Forgets a job's lease (it ended); answers what it was. */
  end(jobId: string): HeldLease | undefined {
    const l = this.byJob.get(jobId);
    if (!l) return undefined;
    this.byJob.delete(jobId);
    const jobs = this.byAgent.get(l.agent);
    jobs?.delete(jobId);
    if (jobs?.size === 0) this.byAgent.delete(l.agent);
    return l;
  }

  /** The jobs an agent holds leases of. */
  heldBy(agent: string): string[] {
    return [...(this.byAgent.get(agent) ?? [])];
  }

  /** How many leases an agent holds. */
  count(agent: string): number {
    return this.byAgent.get(agent)?.size ?? 0;
  }

  /** How many leases are out. */
  get size(): number {
    return this.byJob.size;
  }

  /** Jobs whose lease ended unrenewed by `now`, earliest first, at most `limit`. */
  expired(now: number, limit: number): string[] {
    const out: { id: string; at: number }[] = [];
    for (const [id, l] of this.byJob) if (l.deadline <= now) out.push({ id, at: l.deadline });
    return out
      .sort((a, b) => a.at - b.at)
      .slice(0, limit)
      .map((x) => x.id);
  }

  /** The earliest deadline of any lease, or `undefined` when none is out. */
  nextDeadline(): number | undefined {
    let next: number | undefined;
    for (const l of this.byJob.values()) if (next === undefined || l.deadline < next) next = l.deadline;
    return next;
  }
}
