import { describe, expect, it } from "vitest";
import { CONTROL_FRAME_CAP, decodeFrame, leaseFrames, ToAgent, type LeaseGrant } from "./wire.ts";

function lease(n: number, input: Record<string, unknown>): LeaseGrant {
  return {
    job_id: `job_${String(n).padStart(30, "0")}`,
    epoch: 1,
    deadline: 1_800_000_000_000,
    attempt: 1,
    model: "reference",
    version: null,
    input,
  };
}

describe("lease frames", () => {
  it("leases that together pass the control-frame cap are split over frames that each fit and decode", () => {
    // 2,000 emoji: 8,000 bytes of UTF-8 each; nine of them pass 64 KiB in one frame.
    const leases = Array.from({ length: 9 }, (_, i) => lease(i, { prompt: "🦊".repeat(2000) }));
    const { frames, oversized } = leaseFrames("t", leases);
    expect(oversized).toEqual([]);
    expect(frames.length).toBeGreaterThan(1);
    const got: string[] = [];
    for (const f of frames) {
      expect(f.length).toBeLessThanOrEqual(CONTROL_FRAME_CAP);
      const d = decodeFrame(f, ToAgent);
      expect(d.ok).toBe(true);
      if (d.ok && d.msg.type === "job.leases") got.push(...d.msg.leases.map((l) => l.job_id));
    }
    expect(got).toEqual(leases.map((l) => l.job_id));
  });

  it("a lease too large for any frame comes back alone, and the others are framed", () => {
    const big = lease(1, { pad: "x".repeat(200_000) });
    const small = [lease(2, { prompt: "a" }), lease(3, { prompt: "b" })];
    const { frames, oversized } = leaseFrames("t", [small[0]!, big, small[1]!]);
    expect(oversized).toEqual([big]);
    expect(frames).toHaveLength(1);
    const d = decodeFrame(frames[0]!, ToAgent);
    expect(d.ok && d.msg.type === "job.leases" && d.msg.leases.map((l) => l.job_id)).toEqual(
      small.map((l) => l.job_id),
    );
  });
});
