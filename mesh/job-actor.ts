/**
 * JobActor: one per running job, created when something needs it (the job's progress, and —
 * with streams — its subscribers). It takes progress, previews and logs from the agent actor
 * holding the lease, fenced by epoch: the scheduler is the authority on the current epoch, and
 * this actor asks it whenever a message names an epoch it has not seen, re-checking after the
 * await, so a zombie agent's progress never lands on its successor's attempt. Nothing here is
 * durable: progress is re-sent every step and preview bytes stay out of storage.
 */
import { DurableObject } from "cloudflare:workers";
import { parseJobId, schedulerName } from "../shared/ids.ts";
import type { LeaseRef } from "../shared/wire.ts";
import { actor } from "./remote.ts";
import type { SchedulerActor } from "./scheduler-actor.ts";

/** Log lines kept per job (the newest). */
const MAX_LOGS = 100;

export interface JobLive {
  epoch: number;
  phase: string | null;
  progress: { step: number; total: number } | null;
  updated_at: number | null;
  preview: { content_type: string; size: number; at: number } | null;
  logs: { level: string; message: string; at: number }[];
}

export class JobActor extends DurableObject<Env> {
  private epoch = 0;
  private readonly endedEpochs = new Set<number>();
  private phase: string | null = null;
  private progressState: { step: number; total: number } | null = null;
  private updatedAt: number | null = null;
  private previewState: { content_type: string; data: Uint8Array; at: number } | null = null;
  private logs: JobLive["logs"] = [];

  /** Whether `ref` is the job's current lease; asks the scheduler about epochs not seen yet. */
  private async current(ref: LeaseRef): Promise<boolean> {
    if (ref.epoch < this.epoch || this.endedEpochs.has(ref.epoch)) return false;
    if (ref.epoch > this.epoch) {
      const route = parseJobId(ref.job_id);
      if (!route) return false;
      const lease = await actor<SchedulerActor>(this.env.SCHEDULER, schedulerName(route)).leaseOf(ref.job_id);
      if (!lease || lease.status !== "running" || lease.epoch !== ref.epoch) return false;
      // Another message may have moved the epoch on while we waited.
      if (ref.epoch < this.epoch) return false;
      if (ref.epoch > this.epoch) {
        this.epoch = ref.epoch;
        this.phase = null;
        this.progressState = null;
        this.previewState = null;
      }
    }
    return true;
  }

  async progress(ref: LeaseRef, p: { phase: string; step: number; total: number }): Promise<boolean> {
    if (!(await this.current(ref))) return false;
    this.phase = p.phase;
    this.progressState = { step: p.step, total: p.total };
    this.updatedAt = Date.now();
    return true;
  }

  async preview(ref: LeaseRef, contentType: string, data: Uint8Array): Promise<boolean> {
    if (!(await this.current(ref))) return false;
    this.previewState = { content_type: contentType, data, at: Date.now() };
    return true;
  }

  async log(ref: LeaseRef, level: string, message: string): Promise<boolean> {
    if (!(await this.current(ref))) return false;
    this.logs.push({ level, message, at: Date.now() });
    if (this.logs.length > MAX_LOGS) this.logs.splice(0, this.logs.length - MAX_LOGS);
    return true;
  }

  /** The attempt at `ref` ended (its scheduler accepted the result). */
  async ended(ref: LeaseRef, _status: string): Promise<void> {
    this.endedEpochs.add(ref.epoch);
  }

  async snapshot(): Promise<JobLive> {
    return {
      epoch: this.epoch,
      phase: this.phase,
      progress: this.progressState,
      updated_at: this.updatedAt,
      preview: this.previewState
        ? {
            content_type: this.previewState.content_type,
            size: this.previewState.data.length,
            at: this.previewState.at,
          }
        : null,
      logs: this.logs,
    };
  }

  async previewBytes(): Promise<{ content_type: string; data: Uint8Array } | null> {
    return this.previewState ? { content_type: this.previewState.content_type, data: this.previewState.data } : null;
  }
}
