/**
 * The account's count of open event streams (SSE and WebSocket subscribers), across its jobs.
 * Each job's actor knows its own subscribers and reports their number here; the account admits a
 * new one only while the sum stays within {@link MAX_STREAMS_PER_ACCOUNT}. Memory only — a
 * durable commit per subscriber would put storage on a path that needs none — and every report
 * lapses unless its job renews it, so a job actor that went away without a last report cannot
 * hold the account's streams for ever, and an account actor that restarted learns the counts
 * again from the renewals.
 */
import { MAX_STREAMS_PER_ACCOUNT } from "../../shared/events.ts";

/** How long a job's report counts without being renewed (ms); jobs renew every STREAM_RENEW_MS. */
export const STREAM_REPORT_TTL_MS = 90_000;

export class StreamCounts {
  private readonly byJob = new Map<string, { n: number; at: number }>();
  private readonly max: number;

  constructor(max = MAX_STREAMS_PER_ACCOUNT) {
    this.max = max;
  }

  /** Streams the account's jobs hold at `now`, leaving out `except`; lapsed reports are dropped. */
  total(now: number, except?: string): number {
    let sum = 0;
    for (const [job, r] of this.byJob) {
      if (now - r.at > STREAM_REPORT_TTL_MS) this.byJob.delete(job);
      else if (job !== except) sum += r.n;
    }
    return sum;
  }

  /**
   * Whether `jobId` may hold `n` streams beside the account's other jobs; when it may, `n` is
   * recorded as its count.
   */
  admit(jobId: string, n: number, now: number): boolean {
    if (this.total(now, jobId) + n > this.max) return false;
    this.report(jobId, n, now);
    return true;
  }

  /** Records that `jobId` holds `n` streams now (0 forgets the job). */
  report(jobId: string, n: number, now: number): void {
    if (n <= 0) this.byJob.delete(jobId);
    else this.byJob.set(jobId, { n, at: now });
  }
}
