/**
 * JobActor: one per job, made only when someone subscribes to the job's events. It watches
 * the job at its scheduler (which tells it of every status change as it happens: a lease
 * granted, lost, given back or ended) and at the agent actor running it (which passes on the
 * attempt's progress, previews and logs), keeps a bounded event log (mesh/job/stream.ts), and
 * fans events out to its subscribers, Server-Sent Events or WebSockets (mesh/job/subscribers.ts).
 * A job nobody watches costs no job actor at all.
 *
 * What an agent actor passes on is fenced here too, by the attempt the scheduler last said is
 * current: a lost holder's late progress is not shown after its lease ended.
 *
 * Nothing here is durable: a restart starts a new event generation; a subscriber resuming from
 * the old one gets a `status` snapshot marked `reset`.
 *
 * Who calls it: the edge Worker (a subscriber; `previewBytes`), its scheduler (`changed`), the
 * agent actor running the job (`progress`, `preview`, `log`).
 */
import { DurableObject } from "cloudflare:workers";
import type { AdminJobView } from "../shared/api.ts";
import { INLINE_PREVIEW_BYTES, TERMINAL_EVENTS, type JobEvent } from "../shared/events.ts";
import { parseJobId, schedulerName } from "../shared/ids.ts";
import { isTerminal, ProgressPhase, type JobPhase } from "../shared/job.ts";
import { publicOrigin, signedOutputUrl, signedPreviewUrl } from "../shared/signing.ts";
import type { AgentActor } from "./agent-actor.ts";
import type { HeldBy } from "./agent/frames.ts";
import { StreamCaps } from "./job/caps.ts";
import { EventLog, type EventBody } from "./job/stream.ts";
import { sseSubscriber, webSocketSubscriber, type Subscriber } from "./job/subscribers.ts";
import { actor } from "./remote.ts";
import type { SchedulerActor } from "./scheduler-actor.ts";

/** How often a waiting job's place in its queue is read while anyone listens (ms). */
const FOLLOW_MS = 1_000;

/** Headers the Worker sets when it forwards a subscriber (after checking who may read). */
export const SUBSCRIBE_HEADERS = {
  job: "x-floodgate-job",
  account: "x-floodgate-account",
} as const;

function base64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** The running attempt a view names: its epoch and the agent holding it. */
function runningAttempt(job: AdminJobView): { epoch: number; agent: string } | undefined {
  const last = job.attempts.at(-1);
  return job.status === "running" && last && last.ended_at === null
    ? { epoch: last.epoch, agent: last.agent }
    : undefined;
}

export class JobActor extends DurableObject<Env> {
  private readonly events = new EventLog(crypto.randomUUID().slice(0, 8));
  private readonly subscribers = new Set<Subscriber>();
  private readonly caps = new StreamCaps(this.env.ACCOUNT, () => this.subscribers.size);
  private jobId: string | undefined;
  private accountId: string | undefined;
  /** The running attempt the scheduler last told of; only its messages are shown. */
  private attempt: { epoch: number; agent: string } | undefined;
  /** Attempts that ended: their holders' late messages are not shown. */
  private readonly ended = new Set<number>();
  private syncing: Promise<void> | undefined;
  /** The job as the scheduler last showed it. */
  private lastView: AdminJobView | undefined;
  private phase: JobPhase | null = null;
  private latestPreview: { content_type: string; data: Uint8Array } | null = null;
  private following: ReturnType<typeof setTimeout> | undefined;

  private scheduler() {
    const route = this.jobId === undefined ? undefined : parseJobId(this.jobId);
    return route ? actor<SchedulerActor>(this.env.SCHEDULER, schedulerName(route)) : undefined;
  }

  // ---- pushed by the scheduler and the agent actor ----

  /** The job changed at its scheduler (granted, requeued, ended, cancelled): subscribers hear now. */
  async changed(job: AdminJobView): Promise<void> {
    if (this.subscribers.size > 0) await this.show(job);
  }

  /**
   * Whether a message the agent actor passed on belongs to the current attempt. An attempt newer
   * than the last the scheduler told of (its news may still be on the way) is read from the
   * scheduler first; messages arriving meanwhile wait on that read, so they keep their order.
   */
  private async current(ref: HeldBy): Promise<boolean> {
    if (this.syncing) await this.syncing;
    if (this.events.ended || this.ended.has(ref.epoch)) return false;
    if (this.attempt === undefined || ref.epoch > this.attempt.epoch) {
      this.syncing = this.refresh();
      try {
        await this.syncing;
      } finally {
        this.syncing = undefined;
      }
    }
    return this.attempt?.epoch === ref.epoch && this.attempt.agent === ref.agent_id && !this.events.ended;
  }

  /** Reads the job from its scheduler and shows what changed. */
  private async refresh(): Promise<void> {
    if (!this.jobId || !this.accountId) return;
    const out = await this.scheduler()?.view(this.jobId, this.accountId);
    if (out?.ok) await this.show(out.job);
  }

  async progress(ref: HeldBy, p: { phase: string; step: number; total: number }): Promise<void> {
    const phase = ProgressPhase.safeParse(p.phase);
    if (!phase.success || !(await this.current(ref))) return;
    // The same progress again (passed on anew when a watch starts) is no news.
    const last = this.events.latest("progress");
    if (last?.event === "progress" && last.data.phase === phase.data && last.data.step === p.step) {
      if (last.data.total === p.total) return;
    }
    const moved = this.phase !== phase.data;
    this.phase = phase.data;
    this.publish({ event: "progress", data: { phase: phase.data, step: p.step, total: p.total } });
    // A new phase is a new status for those watching (`status.phase`).
    const status = moved && this.lastView ? this.events.status(this.lastView, this.phase) : undefined;
    if (status) this.publish(status);
  }

  async preview(ref: HeldBy, contentType: string, data: Uint8Array): Promise<void> {
    if (!(await this.current(ref)) || !this.jobId) return;
    this.latestPreview = { content_type: contentType, data };
    const small = data.length <= INLINE_PREVIEW_BYTES;
    const url = small
      ? undefined
      : await signedPreviewUrl(this.env.FILE_SIGNING_KEY, publicOrigin(this.env.PUBLIC_URL), this.jobId);
    this.publish({
      event: "preview",
      data: {
        content_type: contentType,
        size: data.length,
        bytes: data,
        ...(small ? { data_base64: base64(data) } : { url }),
      },
    });
  }

  async log(ref: HeldBy, level: string, message: string): Promise<void> {
    if (await this.current(ref)) this.publish({ event: "log", data: { level: level as "info", message } });
  }

  /** The latest preview's bytes (its signed URL's answer). */
  async previewBytes(): Promise<{ content_type: string; data: Uint8Array } | null> {
    return this.latestPreview;
  }

  // ---- events ----

  /** Appends an event and sends it to every subscriber; one too far behind is dropped. */
  private publish(body: EventBody): JobEvent {
    const e = this.events.append(body);
    for (const s of this.subscribers) {
      if (s.lagging()) s.close();
      else s.send(e);
    }
    if (TERMINAL_EVENTS.includes(e.event)) {
      for (const s of this.subscribers) s.close();
      this.stopWatching();
    }
    return e;
  }

  /** Publishes what a view of the job changed; follows a new attempt at its agent. */
  private async show(job: AdminJobView): Promise<void> {
    if (this.events.ended) return;
    this.lastView = job;
    const attempt = runningAttempt(job);
    if (attempt?.epoch !== this.attempt?.epoch) {
      this.phase = null;
      this.latestPreview = null;
      if (this.attempt) {
        // What the attempt's holder sends from now on is not shown, should it arrive late.
        this.ended.add(this.attempt.epoch);
        if (this.jobId)
          void this.agent(this.attempt.agent)
            .unwatch(this.jobId)
            .catch(() => undefined);
      }
      this.attempt = attempt;
      if (attempt) await this.watchAgent(attempt);
    }
    const status = this.events.status(job, this.phase);
    if (status) this.publish(status);
    if (!isTerminal(job.status)) return;
    if (job.status === "succeeded") {
      const origin = publicOrigin(this.env.PUBLIC_URL);
      const outputs = await Promise.all(
        (job.outputs ?? []).map(async (o) => ({
          ...(o as { name: string; content_type: string; size: number; sha256: string; key: string }),
          url: await signedOutputUrl(this.env.FILE_SIGNING_KEY, origin, String(o.key)),
        })),
      );
      this.publish({ event: "succeeded", data: { outputs } });
    } else if (job.status === "cancelled") {
      this.publish({ event: "cancelled", data: {} });
    } else {
      const error = job.error ?? { code: job.status, message: job.status };
      this.publish({ event: job.status === "expired" ? "expired" : "failed", data: { error } });
    }
  }

  private agent(agentId: string) {
    return actor<AgentActor>(this.env.AGENT, agentId);
  }

  /** Asks the attempt's agent actor to pass on what comes, its newest progress first. */
  private async watchAgent(attempt: { epoch: number; agent: string }): Promise<void> {
    if (!this.jobId) return;
    await this.agent(attempt.agent)
      .watch(this.jobId, attempt.epoch)
      .catch(() => undefined);
  }

  /**
   * While anyone listens: a waiting job's place in its queue is read every second, and the
   * running attempt's agent actor is reminded that it is watched (it forgets on hibernation).
   */
  private scheduleFollow(): void {
    if (this.following !== undefined || this.subscribers.size === 0 || this.events.ended) return;
    this.following = setTimeout(() => {
      this.following = undefined;
      const tick = async (): Promise<void> => {
        if (this.attempt) await this.watchAgent(this.attempt);
        else await this.refresh();
      };
      void tick()
        .catch(() => undefined)
        .finally(() => this.scheduleFollow());
    }, FOLLOW_MS);
  }

  private stopWatching(): void {
    if (this.following !== undefined) clearTimeout(this.following);
    this.following = undefined;
    if (!this.jobId) return;
    void this.scheduler()
      ?.unwatch(this.jobId)
      .catch(() => undefined);
    if (this.attempt)
      void this.agent(this.attempt.agent)
        .unwatch(this.jobId)
        .catch(() => undefined);
  }

  /** A subscriber left: its account hears the job's new count; the last one ends the watch. */
  private dropSubscriber(sub: Subscriber): void {
    if (!this.subscribers.delete(sub)) return;
    this.caps.changed();
    if (this.subscribers.size === 0) this.stopWatching();
  }

  /** A subscriber, forwarded by the Worker after it checked who may read this job. */
  override async fetch(request: Request): Promise<Response> {
    const jobId = request.headers.get(SUBSCRIBE_HEADERS.job);
    const accountId = request.headers.get(SUBSCRIBE_HEADERS.account);
    if (!jobId || !accountId) return new Response("missing subscriber headers", { status: 400 });
    this.jobId = jobId;
    this.accountId = accountId;
    // The first subscriber starts the watch: the scheduler answers the job as it is now.
    if (this.subscribers.size === 0 && !this.events.ended) {
      const before = this.attempt?.epoch;
      const out = await this.scheduler()?.watch(jobId, accountId);
      if (out?.ok) await this.show(out.job);
      // The same attempt as when the last subscriber left: its agent actor is asked again.
      if (this.attempt && this.attempt.epoch === before) await this.watchAgent(this.attempt);
    }
    // A subscriber to a finished job is answered and closed at once: it needs no admission.
    const admitted = !this.events.ended;
    if (admitted) {
      const refused = await this.caps.admit(jobId, accountId);
      if (refused) return refused;
    }
    const url = new URL(request.url);
    const lastEventId = request.headers.get("last-event-id") ?? url.searchParams.get("last_event_id");
    const backlog = this.events.backlog(lastEventId);
    const done = this.events.ended;
    // The job ended while its account was asked: the admitted count comes back down.
    if (admitted && done) this.caps.changed();
    const onClose = (s: Subscriber): void => this.dropSubscriber(s);
    const { sub, response } =
      request.headers.get("upgrade")?.toLowerCase() === "websocket"
        ? webSocketSubscriber(onClose)
        : sseSubscriber(onClose);
    for (const e of backlog) sub.send(e);
    if (done) sub.close();
    else {
      this.subscribers.add(sub);
      this.scheduleFollow();
    }
    return response;
  }
}
