import { describe, expect, it } from "vitest";
import { nodeSql } from "../sql/node.ts";
import { migrate } from "../sql/sql.ts";
import { MIGRATIONS, WebhookStore, type MessageRow } from "./store.ts";

function store(): WebhookStore {
  const sql = nodeSql();
  migrate(sql, MIGRATIONS);
  return new WebhookStore(sql);
}

function message(id: string, job: string, seq: number, nextAt: number, endpoint = "wh_a") {
  return {
    id,
    job_id: job,
    endpoint,
    url: null,
    type: "job.running",
    payload: "{}",
    seq,
    created_at: 0,
    state: "pending" as MessageRow["state"],
    next_at: nextAt,
  };
}

describe("the webhook queue", () => {
  it("a job's later message waits while an earlier one to the same endpoint is pending; other jobs and endpoints do not", () => {
    const s = store();
    s.insert(message("m1", "job_a", 1, 100));
    s.insert(message("m2", "job_a", 2, 0));
    s.insert(message("m3", "job_b", 3, 0));
    s.insert(message("m4", "job_a", 4, 0, "wh_b"));
    expect(s.due(50, 10).map((m) => m.id)).toEqual(["m3", "m4"]);
    expect(s.due(100, 10).map((m) => m.id)).toEqual(["m3", "m4", "m1"]);
    s.settle("m1", "delivered", 1, null);
    expect(s.due(100, 10).map((m) => m.id)).toContain("m2");
  });

  it("a message handed over twice is queued once", () => {
    const s = store();
    expect(s.insert(message("m1", "job_a", 1, 0))).toBe(true);
    expect(s.insert(message("m1", "job_a", 1, 0))).toBe(false);
    expect(s.ofJob("job_a")).toHaveLength(1);
  });

  it("a redelivery queues settled messages again from the schedule's start and counts them", () => {
    const s = store();
    s.insert(message("m1", "job_a", 1, 0));
    s.insert({ ...message("m2", "job_a", 2, 0), type: "job.succeeded" });
    s.settle("m1", "delivered", 3, null);
    s.settle("m2", "failed", 12, null);
    expect(s.redeliver("job_a", "job.succeeded", 500)).toBe(1);
    expect(s.ofJob("job_a").find((m) => m.id === "m2")).toMatchObject({ state: "pending", tries: 0, next_at: 500 });
    expect(s.redeliver("job_a", undefined, 600)).toBe(1);
    expect(s.nextDue()).toBe(500);
  });

  it("attempts are numbered in order per message", () => {
    const s = store();
    s.insert(message("m1", "job_a", 1, 0));
    s.addAttempt({ message_id: "m1", at: 1, status: 500, error: "x", duration_ms: 3 });
    s.addAttempt({ message_id: "m1", at: 2, status: 200, error: null, duration_ms: 4 });
    expect(s.attemptsOf("m1").map((a) => [a.n, a.status])).toEqual([
      [1, 500],
      [2, 200],
    ]);
  });
});
