import { describe, expect, it } from "vitest";
import { absolute, bytes, duration, megabytes, percent, rate, relative } from "./format.ts";

describe("the dashboard's units", () => {
  it("every duration carries its unit, from milliseconds to hours", () => {
    expect(duration(0.25)).toBe("250 ms");
    expect(duration(4.26)).toBe("4.3 s");
    expect(duration(42)).toBe("42 s");
    expect(duration(185)).toBe("3 min 5 s");
    expect(duration(7800)).toBe("2 h 10 min");
    expect(duration(null)).toBe("—");
  });

  it("a rate below one a second is written per minute, so one job a minute is not 0.0 jobs/s", () => {
    expect(rate(1 / 60, "jobs")).toBe("1.0 jobs/min");
    expect(rate(0.5, "jobs")).toBe("30 jobs/min");
    expect(rate(3.21, "jobs")).toBe("3.2 jobs/s");
    expect(rate(0, "jobs")).toBe("0 jobs/s");
    expect(rate(null, "jobs")).toBe("—");
  });

  it("relative times read as words, and the absolute time is ISO 8601 for the hover", () => {
    const now = Date.parse("2026-01-01T00:01:00Z");
    expect(relative("2026-01-01T00:00:48Z", now)).toBe("12 s ago");
    expect(relative("2026-01-01T00:04:00Z", now)).toBe("in 3 min");
    expect(relative(now, now)).toBe("just now");
    expect(absolute("2026-01-01T00:00:48Z")).toBe("2026-01-01T00:00:48.000Z");
    expect(relative(null, now)).toBe("—");
  });

  it("fractions are percentages and memory is in MB or GB", () => {
    expect(percent(0.042)).toBe("4.2 %");
    expect(percent(0.5)).toBe("50 %");
    expect(megabytes(512)).toBe("512 MB");
    expect(megabytes(24_064)).toBe("23.5 GB");
    expect(bytes(912)).toBe("912 B");
    expect(bytes(9100)).toBe("8.9 KB");
    expect(bytes(3.5 * 1024 * 1024)).toBe("4 MB");
  });
});
