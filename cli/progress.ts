/**
 * The progress renderer of `floodgate submit --watch` and `floodgate watch`: pure functions from
 * job events to what people read. {@link reduce} folds events into a {@link Progress};
 * {@link liveLine} draws the one line a terminal redraws in place (queue position and ETA while
 * queued, a `step/total` bar with its phase while running); {@link logLines} gives, per event, the
 * lines of a plain log (one per change, for pipes and CI logs) and {@link noteLines} the lines
 * both modes print above the live line (logs, resets, the end). Time comes in as `now` (ms).
 */
import type { JobEvent } from "../shared/events.ts";
import { assertExhaustive } from "../shared/errors.ts";
import type { WaitReason } from "../shared/job.ts";

export interface Progress {
  jobId: string;
  /** When watching started (ms). */
  since: number;
  status: string | undefined;
  phase: string | undefined;
  queue: { position: number; eta_s: number | null; reason: string } | null;
  attempt: number | null;
  step: { phase: string; step: number; total: number } | undefined;
  /** Where the current step phase started, for the running ETA. */
  rate: { phase: string; at: number; step: number } | undefined;
  /** When the queue ETA was last told (ms), so it counts down between events. */
  etaAt: number | undefined;
  /** Previews that carried an image (what `preview-<n>` files are numbered by). */
  previews: number;
  end: "succeeded" | "failed" | "cancelled" | "expired" | undefined;
}

export function initialProgress(jobId: string, now: number): Progress {
  return {
    jobId,
    since: now,
    status: undefined,
    phase: undefined,
    queue: null,
    attempt: null,
    step: undefined,
    rate: undefined,
    etaAt: undefined,
    previews: 0,
    end: undefined,
  };
}

/** Folds one event into the state; pure. */
export function reduce(p: Progress, e: JobEvent, now: number): Progress {
  switch (e.event) {
    case "status": {
      const d = e.data;
      const leftRunning = d.status !== "running";
      return {
        ...p,
        status: d.status,
        phase: d.phase,
        queue: d.queue,
        attempt: d.attempt,
        etaAt: d.queue ? now : undefined,
        // A job sent back to its queue starts its steps over.
        step: leftRunning ? undefined : p.step,
        rate: leftRunning ? undefined : p.rate,
      };
    }
    case "progress": {
      const d = e.data;
      const samePhase = p.rate !== undefined && p.rate.phase === d.phase && d.step >= p.rate.step;
      return {
        ...p,
        status: "running",
        phase: d.phase,
        queue: null,
        step: { phase: d.phase, step: d.step, total: d.total },
        rate: samePhase ? p.rate : { phase: d.phase, at: now, step: d.step },
      };
    }
    case "preview": {
      // A preview resent from the log without its image (only the newest keeps it) is not one more.
      const image = e.data.data_base64 !== undefined || e.data.url !== undefined || e.data.bytes !== undefined;
      return image ? { ...p, previews: p.previews + 1 } : p;
    }
    case "log":
      return p;
    case "succeeded":
    case "failed":
    case "cancelled":
    case "expired":
      return { ...p, status: e.event, phase: "done", end: e.event };
    default:
      return assertExhaustive(e);
  }
}

/** `42 s`, `3 min 05 s`, `2 h 04 min`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

/** `812 B`, `1.2 KB`, `3.4 MB` (powers of 1000). */
export function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let v = n / 1000;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

// Every wait reason has its words (a Record over the enum), and a newer edge's unknown one shows as it is.
const REASONS: Readonly<Record<WaitReason, string>> & Readonly<Record<string, string | undefined>> = {
  capacity: "waiting for a free slot",
  no_agent: "no agent serves this model yet",
  scaling_up: "agents are starting for this model",
  agents_unhealthy: "its agents are unhealthy",
};

function queueText(p: Progress, now: number | undefined): string {
  const q = p.queue;
  if (!q) return "queued";
  const parts = [`queued · ${q.position === 0 ? "next in line" : `${q.position} ahead`}`];
  if (q.eta_s !== null) {
    const left = now !== undefined && p.etaAt !== undefined ? q.eta_s - (now - p.etaAt) / 1000 : q.eta_s;
    parts.push(left > 0 ? `ETA ${formatDuration(left)}` : "ETA any moment");
  }
  if (q.reason !== "capacity" || q.eta_s === null) parts.push(REASONS[q.reason] ?? q.reason);
  return parts.join(" · ");
}

/** Seconds left in the current step phase, from its pace so far; undefined before two steps. */
export function runningEtaS(p: Progress, now: number): number | undefined {
  const s = p.step;
  const r = p.rate;
  if (!s || !r || r.phase !== s.phase || s.step <= r.step || now <= r.at) return undefined;
  const perStep = (now - r.at) / 1000 / (s.step - r.step);
  return perStep * Math.max(0, s.total - s.step);
}

function bar(step: number, total: number, width: number): string {
  const frac = total > 0 ? Math.min(1, Math.max(0, step / total)) : 0;
  const full = Math.round(frac * width);
  return `[${"█".repeat(full)}${"░".repeat(width - full)}]`;
}

const SPINNER = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/**
 * The live line for a terminal `columns` wide: spinner, state, bar, ETA and time watched; cut
 * to fit so it never wraps (a wrapped line cannot be redrawn in place).
 */
export function liveLine(p: Progress, now: number, columns = 80): string {
  const spin = SPINNER[Math.floor(now / 100) % SPINNER.length] ?? "";
  const elapsed = formatDuration((now - p.since) / 1000);
  let text: string;
  if (p.end !== undefined) text = p.end;
  else if (p.status === undefined) text = "connecting…";
  else if (p.status === "queued") text = queueText(p, now);
  else if (p.step) {
    const { phase, step, total } = p.step;
    const pct = total > 0 ? Math.floor((100 * step) / total) : 0;
    const eta = runningEtaS(p, now);
    text = `running · ${phase} ${bar(step, total, 24)} ${step}/${total} ${pct}%${eta === undefined ? "" : ` · ETA ${formatDuration(eta)}`}`;
  } else text = `${p.status} · ${p.phase ?? ""}`;
  const previews = p.previews > 0 ? ` · ${p.previews} preview${p.previews === 1 ? "" : "s"}` : "";
  const line = `${spin} ${text}${previews} · ${elapsed}`;
  const max = Math.max(1, columns - 1);
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** Progress prints a plain line when its phase changes or it crosses a tenth of the total. */
function tenth(s: { step: number; total: number }): number {
  return s.total > 0 ? Math.floor((10 * s.step) / s.total) : 0;
}

/**
 * The plain-log lines for one event: a line per change a person cares about (status, queue
 * position, phase, each tenth of progress, previews), nothing for repeats. `prev` is the state
 * before the event and `next` after.
 */
export function logLines(prev: Progress, next: Progress, e: JobEvent): string[] {
  switch (e.event) {
    case "status": {
      if (e.data.reset === true) return noteLines(e);
      if (next.status === "queued") {
        const same =
          prev.status === "queued" &&
          prev.queue?.position === next.queue?.position &&
          prev.queue?.reason === next.queue?.reason;
        return same ? [] : [queueText(next, undefined)];
      }
      if (next.status === "running") {
        if (prev.status === "running" && prev.attempt === next.attempt) {
          return prev.phase === next.phase || next.step !== undefined ? [] : [`running · ${next.phase ?? ""}`];
        }
        return [`running · attempt ${next.attempt ?? 1}`];
      }
      // The end has its own event and lines.
      return [];
    }
    case "progress": {
      const s = e.data;
      const before = prev.step;
      const changed =
        !before ||
        before.phase !== s.phase ||
        tenth(before) !== tenth(s) ||
        (s.step === s.total && before.step !== s.step);
      if (!changed) return [];
      const pct = s.total > 0 ? ` (${Math.floor((100 * s.step) / s.total)}%)` : "";
      return [`${s.phase} ${s.step}/${s.total}${pct}`];
    }
    case "preview":
    case "log":
    case "succeeded":
    case "failed":
    case "cancelled":
    case "expired":
      return noteLines(e);
    default:
      return assertExhaustive(e);
  }
}

/** Lines both modes print for an event (the live mode above its line): logs, resets, the end. */
export function noteLines(e: JobEvent): string[] {
  switch (e.event) {
    case "log":
      return [`[${e.data.level}] ${e.data.message}`];
    case "status":
      return e.data.reset === true ? ["(the event stream restarted; showing the current state)"] : [];
    case "succeeded": {
      const n = e.data.outputs.length;
      return [`succeeded · ${n} output${n === 1 ? "" : "s"}`];
    }
    case "failed":
      return [`failed · ${e.data.error.code}: ${e.data.error.message}`];
    case "cancelled":
      return ["cancelled"];
    case "expired":
      return [`expired · ${e.data.error.message}`];
    case "preview":
    case "progress":
      return [];
    default:
      return assertExhaustive(e);
  }
}
