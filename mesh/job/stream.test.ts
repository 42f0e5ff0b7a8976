import { describe, expect, it } from "vitest";
import type { AdminJobView } from "../../shared/api.ts";
import { EventLog, seqOf } from "./stream.ts";

function view(over: Partial<AdminJobView> = {}): AdminJobView {
  return {
    id: "job_1",
    model: "demo",
    tier: "plus",
    status: "queued",
    phase: "waiting",
    created_at: "2026-01-01T00:00:00.000Z",
    metadata: null,
    deadline: null,
    version: null,
    attempts: [],
    queue: { position: 3, eta_s: 12, reason: "capacity" },
    progress: null,
    outputs: null,
    error: null,
    timings: { created_at: "", started_at: null, finished_at: null, queued_s: 0, running_s: null },
    ...over,
  };
}

describe("a job's event stream", () => {
  it("ids strictly increase in the order events are published", () => {
    const log = new EventLog("g1");
    const ids = [
      log.append({ event: "progress", data: { phase: "sampling", step: 1, total: 4 } }),
      log.append({ event: "log", data: { level: "info", message: "x" } }),
    ].map((e) => e.id);
    expect(ids).toEqual(["g1.1", "g1.2"]);
  });

  it("a status is published only when something but the ETA changed", () => {
    const log = new EventLog("g1");
    expect(log.status(view(), null)).toMatchObject({ event: "status", data: { status: "queued" } });
    expect(log.status(view({ queue: { position: 3, eta_s: 9, reason: "capacity" } }), null)).toBeUndefined();
    expect(log.status(view({ queue: { position: 2, eta_s: 9, reason: "capacity" } }), null)).toBeDefined();
    const running = view({
      status: "running",
      phase: "assigned",
      queue: null,
      attempts: [
        {
          n: 1,
          agent: "agt_x",
          pool: "p",
          version: null,
          epoch: 1,
          started_at: "",
          ended_at: null,
          executing_s: null,
          outcome: "running",
          reason: null,
        },
      ],
    });
    expect(log.status(running, "sampling")).toMatchObject({
      data: { status: "running", phase: "sampling", attempt: 1 },
    });
  });

  it("a late subscriber gets the latest status and progress, in id order, and a resumed one what it missed", () => {
    const log = new EventLog("g1");
    const progress = log.append({ event: "progress", data: { phase: "sampling", step: 1, total: 4 } });
    const status = log.append({
      event: "status",
      data: { status: "running", phase: "sampling", queue: null, attempt: 1 },
    });
    const late = log.backlog(null);
    expect(late.map((e) => e.id)).toEqual([progress.id, status.id]);
    const seqs = late.map((e) => seqOf(e.id));
    expect(seqs).toEqual(seqs.toSorted((a, b) => a - b));
    expect(log.backlog(progress.id).map((e) => e.id)).toEqual([status.id]);
    // An id from another generation cannot be resumed: a status snapshot marked reset.
    expect(log.backlog("g0.7")).toMatchObject([{ event: "progress" }, { event: "status", data: { reset: true } }]);
  });

  it("only the newest preview keeps its bytes", () => {
    const log = new EventLog("g1");
    const bytes = new Uint8Array([1, 2, 3]);
    log.append({ event: "preview", data: { content_type: "image/png", size: 3, bytes } });
    log.append({ event: "preview", data: { content_type: "image/png", size: 3, bytes } });
    const previews = log.backlog("g1.0");
    expect(previews.map((e) => (e.event === "preview" ? e.data.bytes !== undefined : null))).toEqual([false, true]);
  });
});
