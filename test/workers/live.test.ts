/**
 * The dashboard's live stream (GET /v1/admin/live): admin only, one frame a second, each frame
 * read from what shards and agents already keep.
 */
import { exports } from "cloudflare:workers";
import { EventSourceParserStream } from "eventsource-parser/stream";
import { describe, expect, it } from "vitest";
import { LiveFrame } from "../../shared/api.ts";
import { agentId, welcomed } from "./agent-helpers.ts";
import { ADMIN, call, makeAccount, makeModel, submit } from "./helpers.ts";

/** Opens the stream and reads `n` aggregates frames from it, then closes it. */
async function frames(n: number): Promise<LiveFrame[]> {
  const ctl = new AbortController();
  const res = await exports.default.fetch(
    new Request("http://edge.test/v1/admin/live", {
      headers: { authorization: `Bearer ${ADMIN}` },
      signal: ctl.signal,
    }),
  );
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
  const out: LiveFrame[] = [];
  const events = res.body!.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream());
  const reader = events.getReader();
  try {
    while (out.length < n) {
      const { value, done } = await reader.read();
      if (done) throw new Error("the stream ended early");
      if (value.event === "aggregates") out.push(LiveFrame.parse(JSON.parse(value.data)));
    }
  } finally {
    await reader.cancel();
    ctl.abort();
  }
  return out;
}

describe("live aggregates", { timeout: 20_000 }, () => {
  it("the live stream refuses a request without the admin key, or with another key", async () => {
    expect((await call("GET", "/v1/admin/live")).status).toBe(401);
    expect((await call("GET", "/v1/admin/live", { key: "fga_not-the-admin-key" })).status).toBe(401);
    const acct = await makeAccount();
    expect((await call("GET", "/v1/admin/live", { key: acct.key })).status).toBe(403);
  });

  it("the live stream sends a frame a second with every model's queues per tier and its counters", async () => {
    const model = await makeModel();
    const acct = await makeAccount("light");
    expect((await submit(model, acct.key)).status).toBe(202);
    expect((await submit(model, acct.key)).status).toBe(202);
    const [a, b] = await frames(2);
    const row = b!.queues.find((q) => q.model === model && q.tier === "light");
    expect(row?.depth).toBe(2);
    expect(b!.counters.find((c) => c.model === model)).toMatchObject({ enqueued: 2, failed: 0, refused: 0 });
    // One a second: the second frame comes a period after the first, not at once.
    expect(b!.at - a!.at).toBeGreaterThanOrEqual(900);
    expect(Array.isArray(b!.agents)).toBe(true);
  });

  it("a submit refused by admission control is counted in the live frame", async () => {
    const before = await call<{ tiers: Record<string, unknown>[] }>("GET", "/v1/admin/tiers", { key: ADMIN });
    const tiny = { name: "tiny-live", slo_s: 0.001, admission_k: 1, rate_limit_per_min: 60_000 };
    await call("PUT", "/v1/admin/tiers", { key: ADMIN, body: { tiers: [...before.body.tiers, tiny] } });
    try {
      const model = await makeModel();
      const acct = await makeAccount("tiny-live");
      expect((await submit(model, acct.key)).status).toBe(202);
      // The second submit's projected wait passes k × SLO once the first has waited a little.
      const deadline = Date.now() + 5000;
      let refused = 0;
      while (refused === 0 && Date.now() < deadline) {
        if ((await submit(model, acct.key)).status === 429) refused++;
      }
      expect(refused).toBe(1);
      const [f] = await frames(1);
      expect(f!.counters.find((c) => c.model === model)?.refused).toBe(1);
    } finally {
      await call("PUT", "/v1/admin/tiers", { key: ADMIN, body: { tiers: before.body.tiers } });
    }
  });
});

describe("draining an agent from the dashboard", { timeout: 20_000 }, () => {
  it("an admin's drain reaches the connected agent as agent.drain; an agent not connected, or a malformed id, is 404", async () => {
    const model = await makeModel();
    const { conn, id } = await welcomed(model);
    const r = await call("POST", `/v1/admin/agents/${id}/drain`, { key: ADMIN });
    expect(r.status).toBe(202);
    expect(r.body).toEqual({ agent_id: id, draining: true });
    expect(await conn.next("agent.drain")).toMatchObject({ type: "agent.drain", reason: "operator" });
    conn.ws.close(1000, "done");
    const gone = await call("POST", `/v1/admin/agents/${agentId()}/drain`, { key: ADMIN });
    expect(gone.status).toBe(404);
    expect(gone.body).toMatchObject({ error: { code: "agent_not_found" } });
    // A malformed id names nothing: 404 as for any path parameter.
    const bad = await call("POST", "/v1/admin/agents/nope/drain", { key: ADMIN });
    expect(bad.body).toMatchObject({ error: { code: "not_found" } });
    const acct = await makeAccount();
    expect((await call("POST", `/v1/admin/agents/${id}/drain`, { key: acct.key })).status).toBe(403);
  });
});
