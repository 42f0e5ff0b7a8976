import { describe, expect, it } from "vitest";
import { MAX_STREAMS_PER_ACCOUNT } from "../../shared/events.ts";
import { STREAM_REPORT_TTL_MS, StreamCounts } from "./streams.ts";

const T0 = 1_000_000;

describe("an account's count of event streams", () => {
  it("admits streams while the sum over its jobs stays within the cap, and refuses past it", () => {
    const c = new StreamCounts(10);
    expect(c.admit("job_a", 4, T0)).toBe(true);
    expect(c.admit("job_b", 6, T0)).toBe(true);
    expect(c.total(T0)).toBe(10);
    expect(c.admit("job_c", 1, T0)).toBe(false);
    // A refused admission records nothing.
    expect(c.total(T0)).toBe(10);
  });

  it("a job's count replaces its earlier one: a job asking for one more is judged beside the others only", () => {
    const c = new StreamCounts(10);
    expect(c.admit("job_a", 9, T0)).toBe(true);
    expect(c.admit("job_a", 10, T0)).toBe(true);
    expect(c.admit("job_a", 11, T0)).toBe(false);
    expect(c.total(T0)).toBe(10);
  });

  it("a report of fewer streams frees places at once; a report of none forgets the job", () => {
    const c = new StreamCounts(10);
    c.admit("job_a", 10, T0);
    expect(c.admit("job_b", 1, T0)).toBe(false);
    c.report("job_a", 9, T0);
    expect(c.admit("job_b", 1, T0)).toBe(true);
    c.report("job_a", 0, T0);
    c.report("job_b", 0, T0);
    expect(c.total(T0)).toBe(0);
  });

  it("a job's count lapses unless renewed within the TTL, so a job actor that vanished frees its places", () => {
    const c = new StreamCounts(10);
    c.admit("job_gone", 10, T0);
    c.admit("job_kept", 0, T0);
    expect(c.admit("job_new", 1, T0 + STREAM_REPORT_TTL_MS)).toBe(false);
    expect(c.admit("job_new", 1, T0 + STREAM_REPORT_TTL_MS + 1)).toBe(true);
    // A renewed count does not lapse.
    c.report("job_new", 1, T0 + 2 * STREAM_REPORT_TTL_MS);
    expect(c.total(T0 + 3 * STREAM_REPORT_TTL_MS)).toBe(1);
  });

  it("the default cap is MAX_STREAMS_PER_ACCOUNT", () => {
    const c = new StreamCounts();
    expect(c.admit("job_a", MAX_STREAMS_PER_ACCOUNT, T0)).toBe(true);
    expect(c.admit("job_b", 1, T0)).toBe(false);
  });
});
