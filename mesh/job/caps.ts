/**
 * The caps on a job's subscribers, for its JobActor: at most {@link MAX_STREAMS_PER_JOB} on the
 * job, and at most {@link MAX_STREAMS_PER_ACCOUNT} across the account's jobs, which only the
 * account's actor can see (mesh/account/streams.ts). The job reports its count there when a
 * subscriber is admitted or leaves, and renews it while it has any, so the account's count
 * neither drifts nor outlives the job's subscribers.
 */
import { FloodgateError } from "../../shared/errors.ts";
import { MAX_STREAMS_PER_ACCOUNT, MAX_STREAMS_PER_JOB } from "../../shared/events.ts";
import type { AccountActor } from "../account-actor.ts";
import { actor } from "../remote.ts";

/** How often a job with subscribers renews their count with its account (ms); reports lapse after 90 s. */
const RENEW_MS = 30_000;
/** Retry-After of a subscriber refused for the caps (s). */
const RETRY_S = 30;

/** `429 too_many_streams`, in the error shape the edge gives every error. */
function tooManyStreams(message: string): Response {
  const err = new FloodgateError("too_many_streams", message, RETRY_S);
  return Response.json(err.toBody(), { status: err.status, headers: { "retry-after": String(RETRY_S) } });
}

export class StreamCaps {
  private readonly ns: DurableObjectNamespace;
  /** The job's subscribers now. */
  private readonly held: () => number;
  /** Subscribers being admitted (their account is being asked). */
  private admitting = 0;
  private renewal: ReturnType<typeof setInterval> | undefined;
  private reporting: Promise<void> | undefined;
  private again = false;
  private route: { jobId: string; accountId: string } | undefined;

  constructor(accounts: DurableObjectNamespace, held: () => number) {
    this.ns = accounts;
    this.held = held;
  }

  /**
   * Admits one more subscriber, or answers why not (`429 too_many_streams`). An account actor
   * that cannot answer refuses nobody.
   */
  async admit(jobId: string, accountId: string): Promise<Response | undefined> {
    this.route = { jobId, accountId };
    const want = this.held() + this.admitting + 1;
    if (want > MAX_STREAMS_PER_JOB) {
      return tooManyStreams(`job ${jobId} has ${MAX_STREAMS_PER_JOB} subscribers, the most one job takes`);
    }
    this.admitting += 1;
    try {
      const ok = await actor<AccountActor>(this.ns, accountId)
        .admitStreams(jobId, want)
        .catch(() => true);
      if (!ok) {
        return tooManyStreams(
          `the account holds ${MAX_STREAMS_PER_ACCOUNT} event streams, the most it may; close one first`,
        );
      }
    } finally {
      this.admitting -= 1;
    }
    this.renewal ??= setInterval(() => this.changed(), RENEW_MS);
    return undefined;
  }

  /** The job's count changed (a subscriber left, or one admitted did not stay): its account hears. */
  changed(): void {
    if (this.reporting) {
      this.again = true;
      return;
    }
    const n = this.held() + this.admitting;
    if (n === 0 && this.renewal !== undefined) {
      clearInterval(this.renewal);
      this.renewal = undefined;
    }
    if (!this.route) return;
    const { jobId, accountId } = this.route;
    this.reporting = actor<AccountActor>(this.ns, accountId)
      .reportStreams(jobId, n)
      .catch(() => undefined)
      .finally(() => {
        this.reporting = undefined;
        if (this.again) {
          this.again = false;
          this.changed();
        }
      });
  }
}
