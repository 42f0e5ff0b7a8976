import { describe, expect, it } from "vitest";
import { MAX_QUEUED, Relay } from "./relay.ts";

/** A relay whose calls finish only when the test says so. */
function harness() {
  const done: Promise<unknown>[] = [];
  const relay = new Relay((p) => done.push(p));
  const seen: string[] = [];
  let open = Promise.withResolvers<void>();
  const call = (what: string) => async () => {
    seen.push(what);
    await open.promise;
  };
  /** Lets the call in flight end, and the next one start. */
  const release = async () => {
    const ending = open;
    open = Promise.withResolvers<void>();
    ending.resolve();
    await new Promise((r) => setImmediate(r));
  };
  return { relay, seen, call, release, done };
}

describe("the relay to job actors", () => {
  it("passes a job's messages on in order, one at a time", async () => {
    const h = harness();
    h.relay.send("j", "other", h.call("log 1"));
    h.relay.send("j", "other", h.call("preview 1"));
    h.relay.send("j", "other", h.call("log 2"));
    expect(h.seen).toEqual(["log 1"]);
    for (let i = 0; i < 3; i++) await h.release();
    expect(h.seen).toEqual(["log 1", "preview 1", "log 2"]);
  });

  it("a progress waiting behind a call in flight is replaced by a newer one; logs and previews are not", async () => {
    const h = harness();
    h.relay.send("j", "progress", h.call("progress 1"));
    h.relay.send("j", "progress", h.call("progress 2"));
    h.relay.send("j", "other", h.call("log"));
    h.relay.send("j", "progress", h.call("progress 3"));
    h.relay.send("j", "other", h.call("preview"));
    h.relay.send("j", "progress", h.call("progress 4"));
    for (let i = 0; i < 4; i++) await h.release();
    expect(h.seen).toEqual(["progress 1", "log", "preview", "progress 4"]);
    expect(h.relay.replaced).toBe(2);
  });

  it("jobs do not wait on each other", async () => {
    const h = harness();
    h.relay.send("a", "other", h.call("a"));
    h.relay.send("b", "other", h.call("b"));
    expect(h.seen).toEqual(["a", "b"]);
    await h.release();
  });

  it("a failed call does not stop the job's later messages", async () => {
    const done: Promise<unknown>[] = [];
    const relay = new Relay((p) => done.push(p));
    const seen: string[] = [];
    relay.send("j", "other", async () => {
      throw new Error("job actor gone");
    });
    relay.send("j", "other", async () => {
      seen.push("after");
    });
    await Promise.all(done);
    expect(seen).toEqual(["after"]);
  });

  it(`a job's queue holds ${MAX_QUEUED} messages; more are dropped and counted`, async () => {
    const h = harness();
    h.relay.send("j", "other", h.call("in flight"));
    for (let i = 0; i < MAX_QUEUED + 5; i++) h.relay.send("j", "other", h.call(`log ${i}`));
    expect(h.relay.waiting("j")).toBe(MAX_QUEUED);
    expect(h.relay.dropped).toBe(5);
    for (let i = 0; i <= MAX_QUEUED; i++) await h.release();
    expect(h.seen).toHaveLength(MAX_QUEUED + 1);
  });
});
