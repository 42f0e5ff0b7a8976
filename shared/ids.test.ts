import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  JOB_ID_RE,
  MAX_MODEL_NUMBER,
  MAX_SHARDS,
  jobIdTime,
  newId,
  newJobId,
  newSecret,
  parseJobId,
  schedulerName,
} from "./ids.ts";

const NUM_RUNS = Number(process.env.FC_NUM_RUNS ?? 200);
const B32 = "0123456789abcdefghjkmnpqrstvwxyz";
/** Up to the year 10000 (ms). */
const MAX_TIME = 253_402_300_799_999;
const arbRoute = fc.record({
  modelNumber: fc.integer({ min: 0, max: MAX_MODEL_NUMBER }),
  shard: fc.integer({ min: 0, max: MAX_SHARDS - 1 }),
});

describe("job ids", () => {
  it("a job id is job_ and 30 lowercase Crockford base32 characters", () => {
    const id = newJobId({ modelNumber: 7, shard: 3 }, Date.UTC(2026, 0, 1));
    expect(id).toMatch(JOB_ID_RE);
    expect(id).toHaveLength(34);
  });

  it("job ids sort by creation time", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: MAX_TIME - 1 }),
        fc.integer({ min: 1, max: 1_000_000 }),
        arbRoute,
        arbRoute,
        (t, dt, r1, r2) => {
          const t2 = Math.min(MAX_TIME, t + dt);
          expect(newJobId(r1, t) < newJobId(r2, t2)).toBe(true);
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  it("the creation time reads back out of the id", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_TIME }), arbRoute, (t, r) => {
        expect(jobIdTime(newJobId(r, t))).toBe(t);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it("a job id parses back to its model number and shard", () => {
    fc.assert(
      fc.property(arbRoute, fc.integer({ min: 0, max: MAX_TIME }), (route, t) => {
        const id = newJobId(route, t);
        expect(parseJobId(id)).toEqual(route);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it("job ids are unguessable: 16 random characters of 5 bits each (80 bits), every symbol at every position", () => {
    const now = Date.UTC(2026, 0, 1);
    const ids = Array.from({ length: 3000 }, () => newJobId({ modelNumber: 1, shard: 0 }, now));
    expect(new Set(ids).size).toBe(ids.length);
    const prefix = ids[0]!.slice(0, 14);
    const suffix = ids[0]!.slice(30);
    const seen = Array.from({ length: 16 }, () => new Set<string>());
    for (const id of ids) {
      // Time and route are fixed; only the middle 16 characters vary.
      expect(id.slice(0, 14)).toBe(prefix);
      expect(id.slice(30)).toBe(suffix);
      const random = id.slice(14, 30);
      for (let i = 0; i < 16; i++) seen[i]!.add(random[i]!);
    }
    // P(some symbol missing at some position) ≈ 16 · 32 · (31/32)^3000, far below 1e-30.
    for (const s of seen) expect(s.size).toBe(32);
    expect(16 * Math.log2(B32.length)).toBe(80);
  });

  it("malformed ids are refused", () => {
    const good = newJobId({ modelNumber: 3, shard: 1 }, Date.UTC(2026, 0, 1));
    expect(parseJobId(good)).toEqual({ modelNumber: 3, shard: 1 });
    const bad = [
      "",
      "job_",
      good.slice(0, -1),
      `${good}0`,
      good.replace("job_", "jab_"),
      good.replace("job_", "JOB_"),
      good.toUpperCase(),
      `${good.slice(0, 20)}i${good.slice(21)}`,
      `${good.slice(0, 20)}l${good.slice(21)}`,
      `${good.slice(0, 20)}o${good.slice(21)}`,
      `${good.slice(0, 20)}u${good.slice(21)}`,
      `${good.slice(0, 20)}-${good.slice(21)}`,
      ` ${good}`,
      `${good}\n`,
      "acc_0123456789abcdef",
    ];
    expect(bad.filter((id) => parseJobId(id) !== undefined)).toEqual([]);
    expect(bad.filter((id) => jobIdTime(id) !== undefined)).toEqual([]);
  });

  it("arbitrary text is refused unless it has the job id shape", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (s) => {
        expect(parseJobId(s) === undefined).toBe(!JOB_ID_RE.test(s));
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it("the scheduler actor's name follows the route", () => {
    expect(schedulerName({ modelNumber: 12, shard: 3 })).toBe("m12.s3");
    const id = newJobId({ modelNumber: MAX_MODEL_NUMBER, shard: MAX_SHARDS - 1 });
    expect(schedulerName(parseJobId(id)!)).toBe(`m${MAX_MODEL_NUMBER}.s${MAX_SHARDS - 1}`);
  });
});

describe("other ids and secrets", () => {
  it("newId is the prefix and lowercase base32 characters, unique", () => {
    const ids = Array.from({ length: 1000 }, () => newId("acc"));
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(/^acc_[0-9a-hjkmnp-tv-z]{16}$/);
    expect(newId("tok", 8)).toMatch(/^tok_[0-9a-hjkmnp-tv-z]{8}$/);
  });

  it("a secret of n bytes is base64url without padding", () => {
    const s = newSecret(24);
    expect(s).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(newSecret(16)).toMatch(/^[A-Za-z0-9_-]{22}$/);
    const all = new Set(Array.from({ length: 200 }, () => newSecret()));
    expect(all.size).toBe(200);
  });
});
