/**
 * A job's event stream as its subscribers see it, without any transport: the bounded log of
 * events with ids `<generation>.<sequence>` (strictly increasing in the order published), what
 * a subscriber resuming from an id gets first, and the `status` events a job's views turn into
 * (published only when something a watcher cares about changed). Previews keep their bytes
 * only in the newest preview event.
 *
 * Called by JobActor; tested in plain Node (stream.test.ts).
 */
import type { AdminJobView } from "../../shared/api.ts";
import { TERMINAL_EVENTS, type JobEvent } from "../../shared/events.ts";
import type { JobPhase } from "../../shared/job.ts";

/** Events kept for resuming subscribers. */
const LOG_SIZE = 512;

export type EventBody = Omit<JobEvent, "id">;

/** The sequence number of an event id (`<generation>.<sequence>`). */
export function seqOf(id: string): number {
  return Number(id.split(".")[1]);
}

export class EventLog {
  readonly generation: string;
  private seq = 0;
  private readonly events: JobEvent[] = [];
  /** The last status published, without what changes every second (its ETA). */
  private lastStatus = "";

  constructor(generation: string) {
    this.generation = generation;
  }

  /** Appends an event; answers it with its id. */
  append(body: EventBody): JobEvent {
    this.seq += 1;
    const e = { id: `${this.generation}.${this.seq}`, ...body } as JobEvent;
    if (e.event === "preview") {
      // Only the newest preview keeps its bytes in the log; older ones shrink to their size.
      for (const [i, old] of this.events.entries()) {
        if (old.event === "preview" && (old.data.bytes || old.data.data_base64)) {
          this.events[i] = { ...old, data: { content_type: old.data.content_type, size: old.data.size } };
        }
      }
    }
    this.events.push(e);
    if (this.events.length > LOG_SIZE) this.events.splice(0, this.events.length - LOG_SIZE);
    return e;
  }

  /** The newest event of a kind still in the log. */
  latest(name: JobEvent["event"]): JobEvent | undefined {
    return this.events.findLast((e) => e.event === name);
  }

  /** Whether a terminal event was published. */
  get ended(): boolean {
    return this.events.some((e) => TERMINAL_EVENTS.includes(e.event));
  }

  /** Whether any status was published yet. */
  get started(): boolean {
    return this.lastStatus !== "";
  }

  /**
   * The status event a view turns into, or `undefined` when nothing a watcher sees changed.
   * `phase`: the running attempt's phase as its agent last reported it, if any.
   */
  status(job: AdminJobView, phase: JobPhase | null): EventBody | undefined {
    const running = job.status === "running";
    const data = {
      status: job.status,
      phase: running && phase !== null ? phase : job.phase,
      queue: job.queue,
      attempt: running ? job.attempts.length : null,
    };
    const key = JSON.stringify({ ...data, queue: data.queue && { ...data.queue, eta_s: null } });
    if (key === this.lastStatus) return undefined;
    this.lastStatus = key;
    return { event: "status", data };
  }

  /**
   * The events a new subscriber gets first: those after `lastEventId` when it is still in the
   * log; otherwise the current state (status, and progress while running, or the terminal
   * event), the status marked `reset` when the subscriber asked to resume and could not. Always
   * in id order, as everything on a stream.
   */
  backlog(lastEventId: string | null): JobEvent[] {
    if (lastEventId) {
      const [gen, seqText] = lastEventId.split(".");
      const seq = Number(seqText);
      const first = this.events[0];
      const firstSeq = first ? seqOf(first.id) : this.seq + 1;
      if (gen === this.generation && Number.isInteger(seq) && seq >= firstSeq - 1 && seq <= this.seq) {
        return this.events.filter((e) => seqOf(e.id) > seq);
      }
    }
    const out: JobEvent[] = [];
    const status = this.latest("status");
    if (status) out.push(lastEventId ? ({ ...status, data: { ...status.data, reset: true } } as JobEvent) : status);
    const terminal = this.events.findLast((e) => TERMINAL_EVENTS.includes(e.event));
    if (terminal) out.push(terminal);
    else {
      const progress = this.latest("progress");
      if (progress && status?.event === "status" && status.data.status === "running") out.push(progress);
    }
    return out.sort((a, b) => seqOf(a.id) - seqOf(b.id));
  }
}
