import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  DEFAULT_TIERS,
  TierConfig,
  TierList,
  fairTag,
  pickHead,
  projectedWaitS,
  urgency,
  type TierHead,
} from "./slo.ts";

const NUM_RUNS = Number(process.env.FC_NUM_RUNS ?? 200);

describe("fair tags", () => {
  it("a tag is max(now, the account's last tag) plus the cost", () => {
    expect(fairTag(100, undefined, 10)).toBe(110);
    expect(fairTag(100, 50, 10)).toBe(110);
    expect(fairTag(100, 500, 10)).toBe(510);
  });

  it("an account's successive tags grow by at least the cost, and never fall behind now + cost", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 10_000 }), { minLength: 1, maxLength: 30 }),
        fc.double({ min: 0.001, max: 1000, noNaN: true }),
        (gaps, cost) => {
          let now = 0;
          let last: number | undefined;
          for (const gap of gaps) {
            now += gap;
            const tag = fairTag(now, last, cost);
            expect(tag).toBeGreaterThanOrEqual(now + cost);
            expect(tag).toBeGreaterThanOrEqual((last ?? -Infinity) + cost);
            last = tag;
          }
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });
});

describe("urgency", () => {
  it("urgency is waited seconds over the SLO, and never negative", () => {
    expect(urgency(120_000, 0, 120)).toBe(1);
    expect(urgency(60_000, 0, 600)).toBeCloseTo(0.1);
    expect(urgency(0, 5_000, 120)).toBe(0);
  });

  it("one minute of api waiting weighs as much as ten minutes of light waiting", () => {
    const api = DEFAULT_TIERS.find((t) => t.name === "api")!;
    const light = DEFAULT_TIERS.find((t) => t.name === "light")!;
    expect(api.slo_s * 5).toBe(light.slo_s);
    expect(urgency(60_000, 0, 60)).toBe(urgency(600_000, 0, 600));
  });
});

function head(tier: string, sloS: number, enqueuedAtMs: number): TierHead {
  return { tier, sloS, enqueuedAtMs };
}

describe("pickHead", () => {
  it("no heads, no pick", () => {
    expect(pickHead([], 0)).toBeUndefined();
  });

  it("the head with the largest wait/SLO wins, whatever its SLO", () => {
    const now = 1_000_000;
    const api = head("api", 120, now - 60_000); // 0.5
    const free = head("free", 1800, now - 1_800_000); // 1.0
    expect(pickHead([api, free], now)).toBe(free);
    expect(pickHead([free, api], now)).toBe(free);
  });

  it("equal wait/SLO goes to the smaller SLO, then to the tier name", () => {
    const now = 10_000_000;
    const api = head("api", 120, now - 120_000);
    const light = head("light", 600, now - 600_000);
    expect(pickHead([light, api], now)).toBe(api);
    const b = head("b", 300, now);
    const a = head("a", 300, now);
    expect(pickHead([b, a], now)).toBe(a);
    expect(pickHead([a, b], now)).toBe(a);
  });

  it("the pick is the maximum of (urgency desc, SLO asc, name asc) whatever the order of the heads", () => {
    const arbHead = fc.record({
      tier: fc.constantFrom("a", "b", "c", "d", "e"),
      sloS: fc.constantFrom(60, 120, 300, 600),
      enqueuedAtMs: fc.integer({ min: 0, max: 2_000_000 }),
    });
    fc.assert(
      fc.property(
        fc.uniqueArray(arbHead, { selector: (h) => h.tier, minLength: 1, maxLength: 5 }),
        fc.integer({ min: 0, max: 3_000_000 }),
        (heads, now) => {
          const sorted = [...heads].sort(
            (x, y) =>
              urgency(now, y.enqueuedAtMs, y.sloS) - urgency(now, x.enqueuedAtMs, x.sloS) ||
              x.sloS - y.sloS ||
              (x.tier < y.tier ? -1 : 1),
          );
          expect(pickHead(heads, now)).toBe(sorted[0]);
          expect(pickHead(heads.toReversed(), now)).toBe(sorted[0]);
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });
});

describe("projected wait", () => {
  it("an empty tier has no wait", () => {
    expect(projectedWaitS(0, 0, 0)).toBe(0);
    expect(projectedWaitS(0, 5, 100)).toBe(0);
  });

  it("a draining tier waits depth over drain rate, but never less than its oldest job has waited", () => {
    expect(projectedWaitS(100, 2, 10)).toBe(50);
    expect(projectedWaitS(100, 2, 80)).toBe(80);
  });

  it("a tier that does not drain waits at least as long as its oldest job has", () => {
    expect(projectedWaitS(5, 0, 42)).toBe(42);
  });
});

describe("tier configuration", () => {
  it("the default tiers are valid and ordered by SLO: api 120 s, enterprise 180, plus 300, light 600, free 1800", () => {
    expect(TierList.safeParse(DEFAULT_TIERS).success).toBe(true);
    expect(DEFAULT_TIERS.map((t) => [t.name, t.slo_s])).toEqual([
      ["api", 120],
      ["enterprise", 180],
      ["plus", 300],
      ["light", 600],
      ["free", 1800],
    ]);
  });

  it("admission multiples fall as SLOs grow, so at equal wait/SLO the largest-SLO tiers shed first", () => {
    for (let i = 1; i < DEFAULT_TIERS.length; i++) {
      const prev = DEFAULT_TIERS[i - 1]!;
      const cur = DEFAULT_TIERS[i]!;
      expect(cur.slo_s).toBeGreaterThan(prev.slo_s);
      expect(cur.admission_k).toBeLessThan(prev.admission_k);
    }
    // With the SLO scheduler every tier's wait/SLO is about equal under overload; a tier sheds
    // once that ratio passes its k, so the shed order is by k ascending.
    for (let u = 0; u < 10; u += 0.25) {
      const shed = DEFAULT_TIERS.filter((t) => u * t.slo_s > t.admission_k * t.slo_s).map((t) => t.name);
      const expected = DEFAULT_TIERS.slice(DEFAULT_TIERS.length - shed.length).map((t) => t.name);
      expect(shed).toEqual(expected);
    }
  });

  it("tier names must be unique and well formed, SLOs positive", () => {
    const api = DEFAULT_TIERS[0]!;
    expect(TierList.safeParse([api, { ...api }]).success).toBe(false);
    expect(TierList.safeParse([]).success).toBe(false);
    expect(TierConfig.safeParse({ ...api, name: "API" }).success).toBe(false);
    expect(TierConfig.safeParse({ ...api, name: "" }).success).toBe(false);
    expect(TierConfig.safeParse({ ...api, slo_s: 0 }).success).toBe(false);
    expect(TierConfig.safeParse({ ...api, admission_k: -1 }).success).toBe(false);
    expect(TierConfig.safeParse({ ...api, extra: 1 }).success).toBe(false);
  });
});
