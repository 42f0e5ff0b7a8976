import { describe, expect, it } from "vitest";
import { ByteBucket, paced, throttled } from "./bucket.ts";

const MiB = 1024 * 1024;

async function* chunks(total: number, size: number): AsyncGenerator<Uint8Array> {
  for (let sent = 0; sent < total; sent += size) yield new Uint8Array(Math.min(size, total - sent));
}

describe("byte buckets", () => {
  it("pass bytes at their rate, within 10%, whatever the chunk size", async () => {
    for (const size of [16 * 1024, 1 * MiB]) {
      const bucket = new ByteBucket(20);
      const started = performance.now();
      let n = 0;
      for await (const c of throttled(bucket, chunks(8 * MiB, size))) n += c.length;
      const seconds = (performance.now() - started) / 1000;
      expect(n).toBe(8 * MiB);
      // 8 MiB at 20 MiB/s: 0.4 s (the first burst of the bucket aside).
      expect(seconds).toBeGreaterThan(0.36);
      expect(seconds).toBeLessThan(0.44 + 0.2);
    }
  });

  it("one bucket shared by concurrent transfers holds their sum to its rate", async () => {
    const bucket = new ByteBucket(20);
    const started = performance.now();
    await Promise.all(
      [0, 1, 2, 3].map(async () => {
        for await (const _ of throttled(bucket, chunks(2 * MiB, 64 * 1024))) void _;
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    expect(seconds).toBeGreaterThan(0.36);
    expect(seconds).toBeLessThan(0.64);
  });

  it("no bucket passes everything at once, and a rate that is not positive is refused", async () => {
    let n = 0;
    for await (const c of throttled(undefined, chunks(64 * MiB, 8 * MiB))) n += c.length;
    expect(n).toBe(64 * MiB);
    expect(() => new ByteBucket(0)).toThrow(RangeError);
  });

  it("a paced download reads every chunk at once and finishes at the bucket's rate", async () => {
    const bucket = new ByteBucket(20);
    const started = performance.now();
    let firstAll = 0;
    let n = 0;
    for await (const c of paced(bucket, chunks(8 * MiB, 64 * 1024))) {
      n += c.length;
      if (n === 8 * MiB) firstAll = performance.now() - started;
    }
    const seconds = (performance.now() - started) / 1000;
    expect(firstAll).toBeLessThan(200);
    expect(seconds).toBeGreaterThan(0.36);
    expect(seconds).toBeLessThan(0.64);
  });
});
