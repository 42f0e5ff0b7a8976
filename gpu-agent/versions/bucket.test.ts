import { afterEach, describe, expect, it, vi } from "vitest";
import { ByteBucket, paced, throttled } from "./bucket.ts";

const MiB = 1024 * 1024;

async function* chunks(total: number, size: number): AsyncGenerator<Uint8Array> {
  for (let sent = 0; sent < total; sent += size) yield new Uint8Array(Math.min(size, total - sent));
}

/**
 * Runs `transfer` on a fake clock (the bucket's timers and `performance.now()`), so the seconds
 * it answers are the bucket's own pacing, whatever else the machine is doing.
 */
async function onFakeClock(transfer: (now: () => number) => Promise<void>): Promise<number> {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
  const started = performance.now();
  const state = { done: false };
  const run = transfer(() => performance.now() - started).finally(() => (state.done = true));
  while (!state.done) {
    if (vi.getTimerCount() > 0) await vi.advanceTimersToNextTimerAsync();
    else await new Promise<void>((r) => queueMicrotask(r));
  }
  await run;
  return (performance.now() - started) / 1000;
}

describe("byte buckets", () => {
  afterEach(() => void vi.useRealTimers());

  it("pass bytes at their rate, within 10%, whatever the chunk size", async () => {
    for (const size of [16 * 1024, 1 * MiB]) {
      const bucket = new ByteBucket(20);
      let n = 0;
      const seconds = await onFakeClock(async () => {
        for await (const c of throttled(bucket, chunks(8 * MiB, size))) n += c.length;
      });
      expect(n).toBe(8 * MiB);
      // 8 MiB at 20 MiB/s: 0.4 s (the first burst of the bucket aside).
      expect(seconds).toBeGreaterThan(0.36);
      expect(seconds).toBeLessThan(0.44);
    }
  });

  it("one bucket shared by concurrent transfers holds their sum to its rate", async () => {
    const bucket = new ByteBucket(20);
    const seconds = await onFakeClock(async () => {
      await Promise.all(
        [0, 1, 2, 3].map(async () => {
          for await (const _ of throttled(bucket, chunks(2 * MiB, 64 * 1024))) void _;
        }),
      );
    });
    expect(seconds).toBeGreaterThan(0.36);
    expect(seconds).toBeLessThan(0.44);
  });

  it("no bucket passes everything at once, and a rate that is not positive is refused", async () => {
    let n = 0;
    for await (const c of throttled(undefined, chunks(64 * MiB, 8 * MiB))) n += c.length;
    expect(n).toBe(64 * MiB);
    expect(() => new ByteBucket(0)).toThrow(RangeError);
  });

  it("a paced download reads every chunk at once and finishes at the bucket's rate", async () => {
    const bucket = new ByteBucket(20);
    let firstAll = Infinity;
    let n = 0;
    const seconds = await onFakeClock(async (now) => {
      for await (const c of paced(bucket, chunks(8 * MiB, 64 * 1024))) {
        n += c.length;
        if (n === 8 * MiB) firstAll = now();
      }
    });
    expect(firstAll).toBe(0);
    expect(seconds).toBeGreaterThan(0.36);
    expect(seconds).toBeLessThan(0.44);
  });
});
