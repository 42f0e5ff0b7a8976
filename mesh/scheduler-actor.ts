/**
 * SchedulerActor: one per model shard (named `m<model number>.s<shard>`, see shared/ids.ts).
 * A thin shell over {@link SchedulerCore}: it feeds the clock, keeps the alarm armed for the
 * next lease deadline, queue TTL or retention, and answers RPC from the edge Worker (submits,
 * reads, cancels) and from agents' actors (lease, renew, complete, release).
 *
 * Its tables are made by its first configuration or enqueue, never by a read: a shard that is
 * asked about jobs it never had (an id naming it, a lease an agent made up) answers as an empty
 * shard and writes nothing, so it leaves no storage behind.
 */
import { DurableObject } from "cloudflare:workers";
import type { FailureReason, JobStatus } from "../shared/job.ts";
import {
  SchedulerCore,
  type AgentRef,
  type Completion,
  type EnqueueItem,
  type LeaseRef,
  type SchedulerConfig,
  type SchedulerCounters,
} from "./scheduler/core.ts";
import type { AgentActor } from "./agent-actor.ts";
import type { JobActor } from "./job-actor.ts";
import { endAttemptFiles, purgeJobFiles } from "./job-files.ts";
import { actor } from "./remote.ts";
import { durableSql } from "./sql/durable.ts";
import { migrated } from "./sql/sql.ts";
import { fail } from "../shared/errors.ts";

const NO_COUNTERS: SchedulerCounters = { commits: 0, enqueued: 0, leased: 0, completed: 0 };

export class SchedulerActor extends DurableObject<Env> {
  /** Absent until the shard has storage: its first configuration or enqueue makes it. */
  protected core: SchedulerCore | undefined;
  /** The alarm time last set (ms), so we only write a new one when it moves earlier. */
  private armedAt: number | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    // Initialise inside blockConcurrencyWhile so no RPC sees a half-built core; an alarm can be
    // lost across a restart, so it is re-armed on every wake.
    void ctx.blockConcurrencyWhile(async () => {
      const sql = durableSql(ctx.storage.sql);
      if (!migrated(sql)) return;
      this.core = new SchedulerCore(sql);
      this.armedAt = (await ctx.storage.getAlarm()) ?? undefined;
      await this.arm(true);
    });
  }

  /** The core, its tables made first when the shard has none yet. */
  private writable(): SchedulerCore {
    this.core ??= new SchedulerCore(durableSql(this.ctx.storage.sql));
    return this.core;
  }

  private async arm(force = false): Promise<void> {
    const next = this.core?.nextDeadline();
    if (next === undefined) return;
    if (!force && this.armedAt !== undefined && this.armedAt <= next) return;
    this.armedAt = next;
    await this.ctx.storage.setAlarm(Math.max(next, Date.now() + 1));
  }

  override async alarm(): Promise<void> {
    this.armedAt = undefined;
    if (!this.core) return;
    if (this.core.configured) this.core.sweep(Date.now());
    this.deliver();
    this.cleanFiles();
    await this.arm(true);
  }

  /**
   * Cleans up the files of what the last event ended: ended attempts' unfinished uploads are
   * aborted (and the files of those that did not succeed deleted); deleted jobs lose every
   * file. Runs after the rows are written, so a failure here leaves orphaned files, never a job
   * without its outputs.
   */
  private cleanFiles(): void {
    if (!this.core) return;
    const bucket = this.env.OUTPUTS;
    const ended = this.core.takeAttemptsEnded();
    const gone = this.core.takeJobsGone();
    if (ended.length === 0 && gone.length === 0) return;
    const work = async (): Promise<void> => {
      const goneSet = new Set(gone);
      const tasks = [
        ...ended.filter((a) => !goneSet.has(a.job_id)).map((a) => endAttemptFiles(bucket, a.job_id, a.epoch, a.kept)),
        ...gone.map((id) => purgeJobFiles(bucket, id)),
      ];
      const failed = (await Promise.allSettled(tasks)).filter((r) => r.status === "rejected");
      if (failed.length > 0) {
        console.warn(JSON.stringify({ level: "warn", what: "file cleanup", failed: failed.length }));
      }
    };
    this.ctx.waitUntil(work());
  }

  /**
   * Sends leases granted to parked agents to their agent actors. Not awaited by the caller:
   * workerd holds these outgoing calls until the grant is durable (output gate), so a lease
   * never leaves before it is recorded. A lease its agent actor could not deliver (the agent
   * went away) comes straight back without spending its attempt.
   */
  private deliver(): void {
    if (!this.core) return;
    const core = this.core;
    const out = core.takeDeliveries();
    for (const [agentId, leases] of out) {
      const send = async (): Promise<void> => {
        let undelivered: LeaseRef[];
        try {
          undelivered = await actor<AgentActor>(this.env.AGENT, agentId).deliver(leases);
        } catch {
          undelivered = leases.map((l) => ({ job_id: l.job_id, epoch: l.epoch }));
        }
        if (undelivered.length > 0) {
          core.undeliver(agentId, undelivered, Date.now());
          this.deliver();
          this.cleanFiles();
        }
      };
      this.ctx.waitUntil(send());
    }
  }

  async enqueue(config: SchedulerConfig, items: EnqueueItem[]) {
    const core = this.writable();
    core.configure(config);
    const out = core.enqueue(items, Date.now());
    this.deliver();
    await this.arm();
    return out;
  }

  async configure(config: SchedulerConfig): Promise<boolean> {
    const changed = this.writable().configure(config);
    await this.arm();
    return changed;
  }

  /** Grants up to `maxNew` leases now; with `maxNew`, the rest waits parked for new work. */
  async lease(agent: AgentRef, capacity: number, maxNew?: number) {
    if (!this.core?.configured) return [];
    const leases = this.core.lease(agent, capacity, Date.now(), maxNew);
    await this.arm();
    return leases;
  }

  async releaseLeases(agentId: string, refs: LeaseRef[], reason: "drained" | "preempted") {
    if (!this.core?.configured) return 0;
    const n = this.core.releaseLeases(agentId, refs, reason, Date.now());
    this.deliver();
    this.cleanFiles();
    return n;
  }

  async unpark(agentId: string): Promise<void> {
    this.core?.unpark(agentId);
  }

  async leaseOf(jobId: string) {
    return this.core?.leaseOf(jobId) ?? null;
  }

  async renew(agentId: string, refs: LeaseRef[]) {
    if (!this.core) return { renewed: [], stale: refs, deadline: Date.now() };
    const out = this.core.renew(agentId, refs, Date.now());
    // A lease past its run timeout went back to its queue: a parked agent may take it now.
    this.deliver();
    this.cleanFiles();
    return out;
  }

  async progress(ref: LeaseRef, phase: string, progress: Record<string, unknown> | null, agentId?: string) {
    if (!this.core) return fail("conflict", "stale lease");
    return this.core.progress(ref, phase, progress, agentId);
  }

  async complete(ref: LeaseRef, result: Completion, agentId?: string) {
    if (!this.core?.configured) return { ok: false as const, code: "conflict" as const, message: "unknown job" };
    const out = this.core.complete(ref, result, Date.now(), agentId);
    this.deliver();
    this.cleanFiles();
    await this.arm();
    return out;
  }

  async release(agentId: string, reason: FailureReason) {
    if (!this.core?.configured) return 0;
    const n = this.core.release(agentId, reason, Date.now());
    this.deliver();
    this.cleanFiles();
    return n;
  }

  async releaseUnlisted(agentId: string, listed: LeaseRef[], connectedAt: number) {
    if (!this.core?.configured) return 0;
    const n = this.core.releaseUnlisted(agentId, listed, connectedAt, Date.now());
    this.deliver();
    this.cleanFiles();
    await this.arm();
    return n;
  }

  async view(id: string, accountId: string) {
    if (!this.core) return fail("job_not_found", `no job ${id}`);
    return this.core.view(id, accountId, Date.now());
  }

  /** A job whoever owns it, with its attempts' agents and pools (admins only). */
  async adminView(id: string) {
    const job = this.core?.store.job(id);
    if (!this.core || !job) return fail("job_not_found", `no job ${id}`);
    return { ok: true as const, job: this.core.render(job, Date.now()) };
  }

  async list(accountId: string, status: JobStatus | undefined, limit: number, cursor: string | undefined) {
    return this.core?.list(accountId, status, limit, cursor, Date.now()) ?? [];
  }

  async cancel(id: string, accountId: string) {
    if (!this.core) return fail("job_not_found", `no job ${id}`);
    const out = this.core.cancel(id, accountId, Date.now());
    if (!out.ok) return out;
    this.cleanFiles();
    if (out.notify) {
      const { agent_id, job_id, epoch } = out.notify;
      // The running agent hears of it and stops its runner at the next step.
      this.ctx.waitUntil(
        actor<AgentActor>(this.env.AGENT, agent_id)
          .cancel(job_id, epoch)
          .catch(() => undefined),
      );
    }
    // Subscribers hear of it at once.
    this.ctx.waitUntil(
      actor<JobActor>(this.env.JOB, id)
        .changed()
        .catch(() => undefined),
    );
    return { ok: true as const, job: this.core.render(out.job, Date.now(), false) };
  }

  async remove(id: string, accountId: string) {
    if (!this.core) return fail("job_not_found", `no job ${id}`);
    const out = this.core.remove(id, accountId);
    this.cleanFiles();
    return out;
  }

  async stats() {
    return {
      tiers: this.core?.stats(Date.now()) ?? [],
      counters: { ...(this.core?.counters ?? NO_COUNTERS) },
      configured: this.core?.configured !== undefined,
    };
  }
}
