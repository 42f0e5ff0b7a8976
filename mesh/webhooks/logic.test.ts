import { describe, expect, it } from "vitest";
import { RETRY_SCHEDULE_MS } from "../../shared/webhooks.ts";
import { retryAfterS, verdict } from "./logic.ts";

describe("webhook delivery verdicts", () => {
  it("only a 2xx answer delivers a message", () => {
    expect(verdict({ status: 200 }, 1, 0)).toEqual({ state: "delivered" });
    expect(verdict({ status: 204 }, 1, 0)).toEqual({ state: "delivered" });
    for (const status of [301, 302, 400, 404, 500]) expect(verdict({ status }, 1, 0, 1, 0.5).state).toBe("pending");
    expect(verdict({ status: null, error: "timeout" }, 1, 0, 1, 0.5).state).toBe("pending");
  });

  it("retries follow the schedule (at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h…) within ±10 % jitter", () => {
    for (let tries = 1; tries < RETRY_SCHEDULE_MS.length; tries++) {
      const delay = RETRY_SCHEDULE_MS[tries] as number;
      expect(verdict({ status: 500 }, tries, 1000, 1, 0.5)).toEqual({ state: "pending", nextAt: 1000 + delay });
      const low = verdict({ status: 500 }, tries, 0, 1, 0);
      const high = verdict({ status: 500 }, tries, 0, 1, 0.999999);
      expect(low.state === "pending" && low.nextAt).toBe(Math.round(delay * 0.9));
      expect(high.state === "pending" && high.nextAt).toBeLessThanOrEqual(Math.round(delay * 1.1));
    }
    expect(RETRY_SCHEDULE_MS.slice(0, 7)).toEqual([0, 5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000]);
    const total = RETRY_SCHEDULE_MS.reduce((a, b) => a + b, 0) / 3_600_000;
    expect(total).toBeGreaterThan(60);
    expect(total).toBeLessThan(80);
  });

  it("a message that fails every attempt of the schedule fails and disables its endpoint", () => {
    expect(verdict({ status: 500 }, RETRY_SCHEDULE_MS.length, 0)).toMatchObject({ state: "failed", disable: true });
  });

  it("410 Gone fails the message at once and disables the endpoint", () => {
    expect(verdict({ status: 410 }, 1, 0)).toMatchObject({ state: "failed", disable: true });
  });

  it("429 and 503 wait what Retry-After asks when it is longer than the schedule, capped at 10 h", () => {
    expect(verdict({ status: 503, retryAfterS: 60 }, 1, 0, 1, 0.5)).toEqual({ state: "pending", nextAt: 60_000 });
    expect(verdict({ status: 429, retryAfterS: 1 }, 1, 0, 1, 0.5)).toEqual({ state: "pending", nextAt: 5_000 });
    expect(verdict({ status: 429, retryAfterS: 10 ** 9 }, 1, 0, 1, 0.5)).toEqual({
      state: "pending",
      nextAt: 36_000_000,
    });
    expect(verdict({ status: 500, retryAfterS: 60 }, 1, 0, 1, 0.5)).toEqual({ state: "pending", nextAt: 5_000 });
  });

  it("Retry-After is read as seconds or as an HTTP date", () => {
    expect(retryAfterS("120", 0)).toBe(120);
    expect(retryAfterS(new Date(90_000).toUTCString(), 0)).toBe(90);
    expect(retryAfterS("soon", 0)).toBeUndefined();
    expect(retryAfterS(null, 0)).toBeUndefined();
  });
});
