/**
 * JobActor: one per job, created when something needs it — progress from the agent running
 * the job, or a subscriber to its events. It takes progress, previews and logs from the agent
 * actor holding the lease, fenced by epoch (the scheduler is the authority: an epoch not seen
 * yet is checked with it, and re-checked after the await), keeps a bounded event log, and fans
 * events out to its subscribers (Server-Sent Events and WebSockets) so progress never passes
 * through the scheduler. While anyone listens it follows the job's status (queue position,
 * start, end) from its scheduler.
 *
 * Nothing here is durable: progress is re-sent every step and preview bytes stay out of
 * storage. A restart starts a new event generation; a subscriber resuming from the old one
 * gets a `status` snapshot marked `reset`.
 */
import { DurableObject } from "cloudflare:workers";
import type { JobView } from "../shared/api.ts";
import { encode } from "../shared/codec.ts";
import { INLINE_PREVIEW_BYTES, sseData, TERMINAL_EVENTS, type JobEvent } from "../shared/events.ts";
import { parseJobId, schedulerName } from "../shared/ids.ts";
import { isTerminal } from "../shared/job.ts";
import { publicOrigin, signedOutputUrl, signedPreviewUrl } from "../shared/signing.ts";
import type { LeaseRef } from "../shared/wire.ts";
import { StreamCaps } from "./job/caps.ts";
import { actor } from "./remote.ts";
import type { SchedulerActor } from "./scheduler-actor.ts";

/** Events kept for resuming subscribers. */
const LOG_SIZE = 512;
/** Log lines kept per job (the newest). */
const MAX_LOGS = 100;
/** How often the job's status is read while anyone listens (ms). */
const FOLLOW_MS = 1_000;
/** A subscriber this many events behind is dropped, so it cannot slow the others. */
const MAX_BEHIND = 256;
/** SSE comment sent when nothing else was, so proxies keep the stream open (ms). */
const KEEPALIVE_MS = 15_000;

/** Headers the Worker sets when it forwards a subscriber (after checking who may read). */
export const SUBSCRIBE_HEADERS = {
  job: "x-floodgate-job",
  account: "x-floodgate-account",
} as const;

export interface JobLive {
  epoch: number;
  phase: string | null;
  progress: { step: number; total: number } | null;
  updated_at: number | null;
  preview: { content_type: string; size: number; at: number } | null;
  logs: { level: string; message: string; at: number }[];
}

type Body = Omit<JobEvent, "id">;

/** A lease named by a message, with the agent that sent it (when an agent actor forwards it). */
type HolderRef = LeaseRef & { agent_id?: string };

interface Subscriber {
  send(e: JobEvent): void;
  behind(): number;
  close(): void;
}

const enc = new TextEncoder();

function sseFrame(e: JobEvent): Uint8Array {
  return enc.encode(`id: ${e.id}\nevent: ${e.event}\ndata: ${sseData(e.data)}\n\n`);
}

/** The sequence number of an event id (`<generation>.<sequence>`). */
function seqOf(id: string): number {
  return Number(id.split(".")[1]);
}

function base64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

export class JobActor extends DurableObject<Env> {
  private epoch = 0;
  private readonly endedEpochs = new Set<number>();
  /** The agent holding the current epoch's lease. */
  private holder: string | null = null;
  private checking: Promise<void> | undefined;
  private phase: string | null = null;
  private progressState: { step: number; total: number } | null = null;
  private updatedAt: number | null = null;
  private previewState: { content_type: string; data: Uint8Array; at: number } | null = null;
  private logs: JobLive["logs"] = [];

  private readonly generation = crypto.randomUUID().slice(0, 8);
  private seq = 0;
  private readonly events: JobEvent[] = [];
  private readonly subscribers = new Set<Subscriber>();
  private jobId: string | undefined;
  private accountId: string | undefined;
  private lastStatus = "";
  private finished = false;
  private following: ReturnType<typeof setTimeout> | undefined;
  private readonly caps = new StreamCaps(this.env.ACCOUNT, () => this.subscribers.size);

  // ---- from agents ----

  /**
   * Whether `ref` is the job's current lease; asks the scheduler about epochs not seen yet.
   * Messages that arrive while an epoch is being checked wait on the same check, so they are
   * published in the order they arrived.
   */
  private async current(ref: HolderRef): Promise<boolean> {
    this.jobId ??= ref.job_id;
    if (this.checking) await this.checking;
    if (ref.epoch < this.epoch || this.endedEpochs.has(ref.epoch)) return false;
    if (ref.epoch > this.epoch) {
      const check = (async (): Promise<boolean> => {
        const lease = await this.scheduler(ref.job_id)?.leaseOf(ref.job_id);
        if (!lease || lease.status !== "running" || lease.epoch !== ref.epoch) return false;
        // Another message may have moved the epoch on while we waited.
        if (ref.epoch < this.epoch) return false;
        if (ref.epoch > this.epoch) {
          this.epoch = ref.epoch;
          this.holder = lease.agent_id;
          this.phase = null;
          this.progressState = null;
          this.previewState = null;
        }
        return true;
      })();
      this.checking = check.then(() => undefined);
      try {
        if (!(await check)) return false;
      } finally {
        this.checking = undefined;
      }
    }
    // The epoch alone is guessable: the sender must also be the agent holding it.
    return !this.endedEpochs.has(ref.epoch) && (ref.agent_id === undefined || ref.agent_id === this.holder);
  }

  async progress(ref: HolderRef, p: { phase: string; step: number; total: number }): Promise<boolean> {
    if (!(await this.current(ref))) return false;
    this.phase = p.phase;
    this.progressState = { step: p.step, total: p.total };
    this.updatedAt = Date.now();
    this.publish({ event: "progress", data: { phase: p.phase as "sampling", step: p.step, total: p.total } });
    return true;
  }

  async preview(ref: HolderRef, contentType: string, data: Uint8Array): Promise<boolean> {
    if (!(await this.current(ref))) return false;
    this.previewState = { content_type: contentType, data, at: Date.now() };
    if (this.subscribers.size > 0) void this.publishPreview();
    return true;
  }

  async log(ref: HolderRef, level: string, message: string): Promise<boolean> {
    if (!(await this.current(ref))) return false;
    this.logs.push({ level, message, at: Date.now() });
    if (this.logs.length > MAX_LOGS) this.logs.splice(0, this.logs.length - MAX_LOGS);
    this.publish({ event: "log", data: { level: level as "info", message } });
    return true;
  }

  /** The attempt at `ref` ended (its scheduler accepted the result); subscribers hear at once. */
  async ended(ref: LeaseRef, _status: string): Promise<void> {
    this.endedEpochs.add(ref.epoch);
    if (this.subscribers.size > 0) await this.follow();
  }

  /** The job changed outside an agent (cancelled, requeued, expired); subscribers hear at once. */
  async changed(): Promise<void> {
    if (this.subscribers.size > 0) await this.follow();
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

  // ---- events ----

  private scheduler(jobId: string) {
    const route = parseJobId(jobId);
    return route ? actor<SchedulerActor>(this.env.SCHEDULER, schedulerName(route)) : undefined;
  }

  /** Appends an event to the log and sends it to every subscriber. */
  private publish(body: Body): JobEvent {
    this.seq += 1;
    const e = { id: `${this.generation}.${this.seq}`, ...body } as JobEvent;
    this.events.push(e);
    if (this.events.length > LOG_SIZE) this.events.splice(0, this.events.length - LOG_SIZE);
    for (const s of this.subscribers) {
      if (s.behind() > MAX_BEHIND) {
        s.close();
        this.subscribers.delete(s);
      } else s.send(e);
    }
    if (TERMINAL_EVENTS.includes(e.event)) {
      this.finished = true;
      for (const s of this.subscribers) s.close();
      this.subscribers.clear();
    }
    return e;
  }

  private async publishPreview(): Promise<void> {
    const p = this.previewState;
    if (!p || !this.jobId) return;
    // Only the newest preview keeps its bytes in the log; older ones shrink to their size.
    for (const [i, e] of this.events.entries()) {
      if (e.event === "preview" && (e.data.bytes || e.data.data_base64)) {
        this.events[i] = { ...e, data: { content_type: e.data.content_type, size: e.data.size } };
      }
    }
    const small = p.data.length <= INLINE_PREVIEW_BYTES;
    this.publish({
      event: "preview",
      data: small
        ? { content_type: p.content_type, size: p.data.length, data_base64: base64(p.data), bytes: p.data }
        : {
            content_type: p.content_type,
            size: p.data.length,
            url: await signedPreviewUrl(this.env.FILE_SIGNING_KEY, publicOrigin(this.env.PUBLIC_URL), this.jobId),
            bytes: p.data,
          },
    });
  }

  /** Reads the job from its scheduler and publishes what changed. */
  private async follow(): Promise<void> {
    if (!this.jobId || !this.accountId || this.finished) return;
    const out = await this.scheduler(this.jobId)?.view(this.jobId, this.accountId);
    if (!out?.ok) return;
    await this.publishView(out.job);
  }

  private async publishView(job: JobView): Promise<void> {
    const running = job.status === "running";
    const last = job.attempts.at(-1);
    const status = {
      status: job.status,
      phase:
        running && this.phase !== null && last?.epoch === this.epoch ? (this.phase as JobView["phase"]) : job.phase,
      queue: job.queue,
      attempt: running ? job.attempts.length : null,
    };
    const key = JSON.stringify({ ...status, queue: status.queue && { ...status.queue, eta_s: null } });
    if (key !== this.lastStatus) {
      this.lastStatus = key;
      this.publish({ event: "status", data: status });
    }
    if (!isTerminal(job.status)) return;
    if (job.status === "succeeded") {
      const outputs = await Promise.all(
        (job.outputs ?? []).map(async (o) => ({
          ...(o as { name: string; content_type: string; size: number; sha256: string; key: string }),
          url: await signedOutputUrl(this.env.FILE_SIGNING_KEY, publicOrigin(this.env.PUBLIC_URL), String(o.key)),
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

  private scheduleFollow(): void {
    if (this.following !== undefined || this.subscribers.size === 0 || this.finished) return;
    this.following = setTimeout(() => {
      this.following = undefined;
      void this.follow().finally(() => this.scheduleFollow());
    }, FOLLOW_MS);
  }

  /**
   * The events a new subscriber gets first: after `lastEventId` when it is still in the log;
   * otherwise the current state (status, and progress while running, or the terminal event),
   * with the status marked `reset` when the subscriber asked to resume and could not.
   */
  private backlog(lastEventId: string | null): JobEvent[] {
    if (lastEventId) {
      const [gen, seqText] = lastEventId.split(".");
      const seq = Number(seqText);
      const first = this.events[0];
      const firstSeq = first ? Number(first.id.split(".")[1]) : this.seq + 1;
      if (gen === this.generation && Number.isInteger(seq) && seq >= firstSeq - 1 && seq <= this.seq) {
        return this.events.filter((e) => Number(e.id.split(".")[1]) > seq);
      }
    }
    const latest = (name: JobEvent["event"]): JobEvent | undefined => this.events.findLast((e) => e.event === name);
    const out: JobEvent[] = [];
    const status = latest("status");
    if (status) out.push(lastEventId ? ({ ...status, data: { ...status.data, reset: true } } as JobEvent) : status);
    const terminal = this.events.findLast((e) => TERMINAL_EVENTS.includes(e.event));
    if (terminal) out.push(terminal);
    else {
      const progress = latest("progress");
      if (progress && status?.event === "status" && status.data.status === "running") out.push(progress);
    }
    // In id order, as everything on a stream: the latest status may be newer than the latest
    // progress, and a subscriber resumes from the last id it saw.
    return out.sort((a, b) => seqOf(a.id) - seqOf(b.id));
  }

  /** A subscriber left: its account hears the job's new count (mesh/job/caps.ts). */
  private dropSubscriber(sub: Subscriber): void {
    if (this.subscribers.delete(sub)) this.caps.changed();
  }

  /** A subscriber, forwarded by the Worker after it checked who may read this job. */
  override async fetch(request: Request): Promise<Response> {
    const jobId = request.headers.get(SUBSCRIBE_HEADERS.job);
    const accountId = request.headers.get(SUBSCRIBE_HEADERS.account);
    if (!jobId || !accountId) return new Response("missing subscriber headers", { status: 400 });
    this.jobId = jobId;
    this.accountId = accountId;
    // Progress may have been logged before anyone subscribed; a status snapshot comes first.
    if (!this.events.some((e) => e.event === "status")) await this.follow();
    // A subscriber to a finished job is answered and closed at once: it needs no admission.
    const admitted = !this.finished;
    if (admitted) {
      const refused = await this.caps.admit(jobId, accountId);
      if (refused) return refused;
    }
    const url = new URL(request.url);
    const lastEventId = request.headers.get("last-event-id") ?? url.searchParams.get("last_event_id");
    const backlog = this.backlog(lastEventId);
    const done = backlog.some((e) => TERMINAL_EVENTS.includes(e.event));
    // The job ended while its account was asked: the admitted count comes back down.
    if (admitted && done) this.caps.changed();
    return request.headers.get("upgrade")?.toLowerCase() === "websocket"
      ? this.webSocket(backlog, done)
      : this.sse(backlog, done);
  }

  private sse(backlog: JobEvent[], done: boolean): Response {
    // Chunks wait on the writable side until this subscriber reads them: its queue length is how
    // far behind it is.
    const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>(undefined, {
      highWaterMark: MAX_BEHIND * 2,
    });
    const writer = writable.getWriter();
    let open = true;
    let lastWrite = Date.now();
    const write = (bytes: Uint8Array): void => {
      if (!open) return;
      lastWrite = Date.now();
      writer.write(bytes).catch(() => close());
    };
    const keepalive = setInterval(() => {
      if (Date.now() - lastWrite >= KEEPALIVE_MS) write(enc.encode(": keep-alive\n\n"));
    }, KEEPALIVE_MS);
    const close = (): void => {
      if (!open) return;
      open = false;
      clearInterval(keepalive);
      this.dropSubscriber(sub);
      writer.close().catch(() => undefined);
    };
    const sub: Subscriber = {
      send: (e) => {
        const { bytes: _raw, ...data } = e.data as { bytes?: Uint8Array };
        write(sseFrame({ ...e, data } as JobEvent));
      },
      // Chunks queued for this subscriber and not yet read by it.
      behind: () => MAX_BEHIND * 2 - (writer.desiredSize ?? 0),
      close,
    };
    // A subscriber that went away cancels the readable side, which errors the writer at once: its
    // place is given back then, not at the next write.
    writer.closed.then(close, close);
    write(enc.encode("retry: 1000\n\n"));
    for (const e of backlog) sub.send(e);
    if (done) close();
    else {
      this.subscribers.add(sub);
      this.scheduleFollow();
    }
    return new Response(readable, {
      headers: {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
      },
    });
  }

  private webSocket(backlog: JobEvent[], done: boolean): Response {
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    server.accept();
    let open = true;
    const close = (): void => {
      if (!open) return;
      open = false;
      this.dropSubscriber(sub);
      try {
        server.close(1000, "the job has ended");
      } catch {
        // already closed
      }
    };
    const sub: Subscriber = {
      send: (e) => {
        if (!open) return;
        const { data_base64: _inline, ...data } = e.data as { data_base64?: string };
        try {
          server.send(encode({ id: e.id, event: e.event, data }));
        } catch {
          close();
        }
      },
      behind: () => 0,
      close,
    };
    server.addEventListener("close", () => close());
    server.addEventListener("error", () => close());
    for (const e of backlog) sub.send(e);
    if (done) close();
    else {
      this.subscribers.add(sub);
      this.scheduleFollow();
    }
    return new Response(null, { status: 101, webSocket: client });
  }
}
