import { describe, expect, it } from "vitest";
import type { JobEvent } from "../shared/events.ts";
import {
  formatBytes,
  formatDuration,
  initialProgress,
  liveLine,
  logLines,
  noteLines,
  reduce,
  runningEtaS,
  type Progress,
} from "./progress.ts";

const JOB = "job_0000000000cccccccccccccccc0000";
let n = 0;
const id = (): string => `g.${++n}`;

const queued = (position: number, eta_s: number | null, reason = "capacity"): JobEvent =>
  ({
    id: id(),
    event: "status",
    data: { status: "queued", phase: "waiting", queue: { position, eta_s, reason }, attempt: null },
  }) as JobEvent;
const running = (attempt = 1, phase = "assigned"): JobEvent =>
  ({
    id: id(),
    event: "status",
    data: { status: "running", phase, queue: null, attempt },
  }) as JobEvent;
const step = (s: number, total: number, phase = "sampling"): JobEvent =>
  ({ id: id(), event: "progress", data: { phase, step: s, total } }) as JobEvent;

/** Folds events given with their times (ms) and collects the plain log. */
function play(events: [number, JobEvent][]): { p: Progress; lines: string[] } {
  let p = initialProgress(JOB, 0);
  const lines: string[] = [];
  for (const [at, e] of events) {
    const prev = p;
    p = reduce(p, e, at);
    lines.push(...logLines(prev, p, e));
  }
  return { p, lines };
}

describe("the progress renderer", () => {
  it("shows the queue position and an ETA that counts down between events while queued", () => {
    const { p } = play([[1_000, queued(3, 40)]]);
    expect(liveLine(p, 1_000)).toMatch(/queued · 3 ahead · ETA 40 s · 1 s$/);
    expect(liveLine(p, 11_000)).toMatch(/ETA 30 s/);
    expect(liveLine(p, 60_000)).toMatch(/ETA any moment/);
  });

  it("says why a job waits when no agent serves its model", () => {
    const { p } = play([[0, queued(0, null, "no_agent")]]);
    expect(liveLine(p, 0)).toMatch(/next in line · no agent serves this model yet/);
  });

  it("draws a step/total bar with its phase and an ETA from the pace so far", () => {
    const { p } = play([
      [0, running()],
      [1_000, step(0, 20)],
      [6_000, step(10, 20)],
    ]);
    const line = liveLine(p, 6_000, 120);
    expect(line).toContain("running · sampling [████████████░░░░░░░░░░░░] 10/20 50%");
    expect(runningEtaS(p, 6_000)).toBe(5);
    expect(line).toMatch(/ETA 5 s/);
  });

  it("starts the pace over when the phase changes", () => {
    const { p } = play([
      [0, step(10, 10, "sampling")],
      [5_000, step(0, 1, "decoding")],
    ]);
    expect(runningEtaS(p, 6_000)).toBeUndefined();
    expect(liveLine(p, 6_000, 120)).toContain("decoding");
  });

  it("never draws a line wider than the terminal", () => {
    const { p } = play([
      [0, running()],
      [0, step(3, 30)],
    ]);
    for (const columns of [10, 20, 40, 80]) expect(liveLine(p, 1_000, columns).length).toBeLessThan(columns);
  });

  it("logs one plain line per change: status, queue position, phase and each tenth of the steps", () => {
    const { lines } = play([
      [0, queued(2, 30)],
      [1, queued(2, 25)], // ETA only: no line
      [2, queued(1, 20)],
      [3, running(1)],
      [4, step(0, 30)],
      [5, step(1, 30)],
      [6, step(2, 30)],
      [7, step(3, 30)],
      [8, step(15, 30)],
      [9, step(16, 30)],
      [10, step(30, 30)],
      [11, step(0, 1, "decoding")],
      [12, { id: id(), event: "log", data: { level: "warn", message: "VRAM at 91%" } }],
      [13, { id: id(), event: "succeeded", data: { outputs: [] } }],
    ]);
    expect(lines).toEqual([
      "queued · 2 ahead · ETA 30 s",
      "queued · 1 ahead · ETA 20 s",
      "running · attempt 1",
      "sampling 0/30 (0%)",
      "sampling 3/30 (10%)",
      "sampling 15/30 (50%)",
      "sampling 30/30 (100%)",
      "decoding 0/1 (0%)",
      "[warn] VRAM at 91%",
      "succeeded · 0 outputs",
    ]);
  });

  it("forgets the steps of an attempt when the job goes back to its queue, and logs the new attempt", () => {
    const { p, lines } = play([
      [0, running(1)],
      [1, step(5, 10)],
      [2, queued(0, null)],
      [3, running(2)],
    ]);
    expect(p.step).toBeUndefined();
    expect(lines.at(-1)).toBe("running · attempt 2");
  });

  it("tells how a job ended, with the failure's code and message", () => {
    const failed: JobEvent = {
      id: id(),
      event: "failed",
      data: { error: { code: "oom", message: "CUDA out of memory" } },
    };
    const { p, lines } = play([[0, failed]]);
    expect(lines).toEqual(["failed · oom: CUDA out of memory"]);
    expect(p.end).toBe("failed");
    expect(liveLine(p, 0)).toContain("failed");
    expect(noteLines({ id: id(), event: "cancelled", data: {} })).toEqual(["cancelled"]);
  });

  it("notes a reset stream rather than logging its snapshot as a change", () => {
    const reset = {
      id: "h.1",
      event: "status",
      data: { status: "running", phase: "sampling", queue: null, attempt: 1, reset: true },
    } as JobEvent;
    expect(noteLines(reset)).toEqual(["(the event stream restarted; showing the current state)"]);
    expect(play([[0, reset]]).lines).toEqual(noteLines(reset));
  });

  it("counts previews that carry an image", () => {
    const { p } = play([
      [0, { id: id(), event: "preview", data: { content_type: "image/png", size: 3, data_base64: "AAAA" } }],
      [1, { id: id(), event: "preview", data: { content_type: "image/png", size: 3 } }],
    ]);
    expect(p.previews).toBe(1);
  });

  it("formats durations and sizes for people", () => {
    expect([5, 65, 3_725].map(formatDuration)).toEqual(["5 s", "1 min 05 s", "1 h 02 min"]);
    expect([812, 1_234, 3_400_000, 12_000_000_000].map(formatBytes)).toEqual(["812 B", "1.2 KB", "3.4 MB", "12.0 GB"]);
  });
});
