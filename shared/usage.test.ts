import { describe, expect, it } from "vitest";
import { summarizeUsage, type UsageBucket } from "./usage.ts";

const H = Date.UTC(2026, 0, 1, 23);

function bucket(over: Partial<UsageBucket>): UsageBucket {
  return {
    model: "demo",
    version: "v1",
    hour: H,
    gpu_ms: 0,
    executing_ms: 0,
    lost_gpu_ms: 0,
    attempts: 0,
    succeeded: 0,
    failed: 0,
    cancelled: 0,
    expired: 0,
    output_bytes: 0,
    ...over,
  };
}

describe("summarizeUsage", () => {
  const buckets = [
    bucket({ gpu_ms: 100, executing_ms: 100, attempts: 1, succeeded: 1 }),
    bucket({ version: "v2", gpu_ms: 200, executing_ms: 100, attempts: 1, failed: 1 }),
    bucket({ hour: H + 3_600_000, gpu_ms: 1, executing_ms: 1, lost_gpu_ms: 7, attempts: 2 }),
    bucket({ model: "other", version: "", expired: 1 }),
  ];

  it("sums milliseconds exactly and turns them into seconds once, per model by default", () => {
    const { usage, totals } = summarizeUsage(buckets, "model");
    expect(usage.map((r) => [r.model, r.gpu_s, r.lost_gpu_s, r.attempts])).toEqual([
      ["demo", 0.301, 0.007, 4],
      ["other", 0, 0, 0],
    ]);
    expect(totals).toMatchObject({ gpu_s: 0.301, executing_s: 0.201, jobs: { succeeded: 1, failed: 1, expired: 1 } });
  });

  it("groups by version (none for jobs that never ran) and by UTC day", () => {
    expect(summarizeUsage(buckets, "version").usage.map((r) => [r.model, r.version, r.gpu_s])).toEqual([
      ["demo", "v1", 0.101],
      ["demo", "v2", 0.2],
      ["other", null, 0],
    ]);
    expect(summarizeUsage(buckets, "day").usage.map((r) => [r.model, r.day, r.gpu_s])).toEqual([
      ["demo", "2026-01-01", 0.3],
      ["demo", "2026-01-02", 0.001],
      ["other", "2026-01-01", 0],
    ]);
  });
});
