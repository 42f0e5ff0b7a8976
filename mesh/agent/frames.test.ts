import { describe, expect, it } from "vitest";
import { newJobId, schedulerName } from "../../shared/ids.ts";
import { DEFAULT_TIERS } from "../../shared/slo.ts";
import {
  AGENT_PROTOCOL_VERSION,
  CLOSE,
  decodeFrame,
  ToAgent,
  type FromAgent,
  type ToAgent as Out,
  type VersionState,
} from "../../shared/wire.ts";
import type { ModelDesired } from "../registry/rollouts.ts";
import { nodeSql } from "../sql/node.ts";
import { SchedulerCore } from "../scheduler/core.ts";
import { admit, type Attachment } from "./connection.ts";
import { desiredAfterApply, desiredAfterRevert } from "../registry/rollouts.ts";
import { desiredFor } from "./desired.ts";
import { AgentFrames, type AgentPorts, type Connection, type HeldBy, type ShardPort } from "./frames.ts";
import { Session } from "./session.ts";

const V = AGENT_PROTOCOL_VERSION;
/** A message as a test writes it: without the version and trace every message carries. */
type Said = FromAgent extends infer M ? (M extends FromAgent ? Omit<M, "v" | "trace"> : never) : never;
const SERVED = { modelNumber: 0, shard: 0 };
const OTHER = { modelNumber: 1, shard: 0 };

/** A shard port over a real scheduler core, as the scheduler actor exposes it. */
function shardOver(core: SchedulerCore): ShardPort {
  return {
    rejoin: async (id, listed, at) => core.rejoin(id, listed, at, Date.now()),
    heartbeat: async (agent, refs, cap, credits) => core.heartbeat(agent, refs, cap, credits, Date.now()),
    lease: async (agent, cap, maxNew) => core.lease(agent, cap, Date.now(), maxNew),
    settle: async (agent, results, cap, credits) => core.settle(agent, results, cap, credits, Date.now()),
    releaseLeases: async (id, refs, reason) => core.releaseLeases(id, refs, reason, Date.now()),
    leaseOf: async (jobId) => core.leaseOf(jobId) ?? null,
  };
}

function schedulerCore(modelNumber: number): SchedulerCore {
  const core = new SchedulerCore(nodeSql());
  core.configure({
    model: {
      name: `m${modelNumber}`,
      number: modelNumber,
      updated_at: "2026-01-01T00:00:00.000Z",
      input_schema: { type: "object" },
      max_attempts: 3,
      run_timeout_s: 600,
      queue_ttl_s: 86_400,
      retention_s: 86_400,
      expected_runtime_s: 1,
      shards: 1,
    },
    tiers: [...DEFAULT_TIERS],
  });
  return core;
}

/** An agent's frame handler over two real shards: one of a model its token allows, one not. */
function world() {
  const served = schedulerCore(0);
  const other = schedulerCore(1);
  const shards = new Map([
    [schedulerName(SERVED), shardOver(served)],
    [schedulerName(OTHER), shardOver(other)],
  ]);
  const forwarded: { what: string; by: HeldBy; detail: unknown }[] = [];
  const pending: Promise<unknown>[] = [];
  const released: string[] = [];
  /** The shards the frames asked anything of. */
  const asked: string[] = [];
  /** The registry's desired versions, as the agent's actor last read them. */
  const desired: ModelDesired[] = [];
  /** Version states the agent's actor passed on to the registry. */
  const reported: VersionState[][] = [];
  const ports: AgentPorts = {
    shard: (name) => {
      asked.push(name);
      return shards.get(name) as ShardPort;
    },
    job: () => ({
      progress: async (by, p) => forwarded.push({ what: "progress", by, detail: p }),
      preview: async (by, ct) => forwarded.push({ what: "preview", by, detail: ct }),
      log: async (by, level, message) => forwarded.push({ what: "log", by, detail: `${level}: ${message}` }),
    }),
    // As the actor's: an agent that names versions serves a model's shards only while one serves.
    routes: async (a) =>
      a.versions.length === 0 || a.versions.some((v) => v.model === "m0" && v.state === "serving")
        ? [{ name: schedulerName(SERVED), model: "m0", versions: [] }]
        : [],
    shards: async () => new Set([schedulerName(SERVED)]),
    checkOutputs: async (_ref, outputs) =>
      outputs.some((o) => o.name === "forged")
        ? { ok: false, message: "output forged: no valid receipt" }
        : { ok: true, outputs: [] },
    tokenLive: async () => true,
    joined: async () => {},
    desired: async (a) => desiredFor(desired, a.models),
    versionsChanged: (_a, versions) => void reported.push(versions),
    releaseAll: async (reason) => void released.push(reason),
    waitUntil: (p) => void pending.push(p),
  };
  const session = new Session();
  const frames = new AgentFrames(ports, session);
  const sent: Out[] = [];
  const closed: number[] = [];
  let att: Attachment = admit([], { token_id: "tok_1", pool: "p", models: ["m0"], exp: 4e9 }, "agt_1", "i", Date.now());
  const conn: Connection = {
    get att() {
      return att;
    },
    save: (a) => (att = a),
    send: (m) => sent.push(m),
    sendRaw: (fs) => {
      for (const f of fs) {
        const d = decodeFrame(f, ToAgent);
        if (d.ok) sent.push(d.msg);
      }
    },
    close: (code) => closed.push(code),
  };
  const say = (m: Said) => frames.handle(conn, { v: V, trace: "t", ...m } as FromAgent);
  const submit = (core: SchedulerCore, route = SERVED) => {
    const id = newJobId(route);
    core.enqueue([{ id, account_id: "acc", tier: "api", body: { model: "m", input: {} } }], Date.now());
    return id;
  };
  /** Holds the served shard's next `call`s until the answered function is called. */
  const hold = (call: "heartbeat" | "rejoin"): (() => void) => {
    const port = shards.get(schedulerName(SERVED)) as ShardPort;
    const gate = Promise.withResolvers<void>();
    const real = port[call].bind(port) as (...args: unknown[]) => Promise<never>;
    port[call] = (async (...args: unknown[]) => {
      await gate.promise;
      return await real(...args);
    }) as never;
    return () => gate.resolve();
  };
  const of = <T extends Out["type"]>(type: T) => sent.filter((m): m is Extract<Out, { type: T }> => m.type === type);
  const hello = () =>
    say({
      type: "agent.hello",
      agent_id: "agt_1",
      name: "a",
      slots: 1,
      prefetch: 0,
      leases: [],
      gpus: [],
      versions: [],
    });
  return {
    served,
    other,
    frames,
    session,
    conn,
    sent,
    closed,
    forwarded,
    pending,
    released,
    asked,
    desired,
    reported,
    say,
    submit,
    hold,
    of,
    hello,
  };
}

describe("an agent's frames", () => {
  it("anything before agent.hello closes the connection with 4402", async () => {
    const w = world();
    await w.say({ type: "work.request", credits: 1 });
    expect(w.closed).toEqual([CLOSE.protocol]);
  });

  it("a result ends the attempt and grants the next lease in the same answer", async () => {
    const w = world();
    const first = w.submit(w.served);
    const second = w.submit(w.served);
    await w.hello();
    await w.say({ type: "work.request", credits: 1 });
    const [lease] = w.of("job.leases").flatMap((m) => m.leases);
    expect(lease?.job_id).toBe(first);
    await w.say({
      type: "job.results",
      results: [{ job_id: first, epoch: lease?.epoch ?? 0, status: "succeeded", outputs: [] }],
      credits: 1,
    });
    expect(w.served.adminView(first, Date.now())).toMatchObject({ ok: true, job: { status: "succeeded" } });
    expect(w.of("job.leases").flatMap((m) => m.leases.map((l) => l.job_id))).toEqual([first, second]);
  });

  it("a result about a lease the agent does not hold is answered lease.stale and changes nothing", async () => {
    const w = world();
    const job = w.submit(w.served);
    await w.hello();
    await w.say({
      type: "job.results",
      results: [{ job_id: job, epoch: 1, status: "succeeded", outputs: [] }],
      credits: 0,
    });
    expect(w.of("lease.stale")).toMatchObject([{ job_id: job, epoch: 1 }]);
    expect(w.served.adminView(job, Date.now())).toMatchObject({ ok: true, job: { status: "queued" } });
  });

  it("results about a shard the agent does not serve grant it nothing from that shard, whatever its credits", async () => {
    const w = world();
    const foreign = w.submit(w.other, OTHER);
    await w.hello();
    await w.say({
      type: "job.results",
      results: [{ job_id: w.submit(w.other, OTHER), epoch: 1, status: "succeeded", outputs: [] }],
      credits: 5,
    });
    expect(w.of("job.leases")).toEqual([]);
    expect(w.other.adminView(foreign, Date.now())).toMatchObject({ ok: true, job: { status: "queued" } });
  });

  it("results and releases naming jobs on shards of no model its token has (made-up ids) are answered lease.stale and ask no shard", async () => {
    const w = world();
    await w.hello();
    w.asked.length = 0;
    const made = [newJobId({ modelNumber: 77, shard: 3 }), newJobId(OTHER)];
    await w.say({
      type: "job.results",
      results: made.map((job_id) => ({ job_id, epoch: 1, status: "succeeded" as const, outputs: [] })),
      credits: 0,
    });
    await w.say({ type: "job.release", leases: made.map((job_id) => ({ job_id, epoch: 1 })), reason: "preempted" });
    await w.say({ type: "job.log", job_id: made[0] ?? "", epoch: 1, level: "info", message: "x" });
    expect(w.asked).toEqual([]);
    expect(w.of("lease.stale").map((m) => m.job_id)).toEqual([...made, made[0]]);
  });

  it("a success whose outputs fail the edge's check ends the attempt invalid_output and is answered job.refused", async () => {
    const w = world();
    const job = w.submit(w.served);
    await w.hello();
    await w.say({ type: "work.request", credits: 1 });
    const forged = {
      name: "forged",
      content_type: "image/png",
      size: 1,
      sha256: "0".repeat(64),
      key: "k",
      receipt: "r",
    };
    await w.say({
      type: "job.results",
      results: [{ job_id: job, epoch: 1, status: "succeeded", outputs: [forged] as never }],
      credits: 0,
    });
    expect(w.of("job.refused")).toMatchObject([{ job_id: job, epoch: 1, code: "invalid_output" }]);
    const view = w.served.adminView(job, Date.now());
    expect(view).toMatchObject({ ok: true, job: { status: "queued" } });
  });

  it("progress about a lease held goes to the job's actor only while one watches; a watch starts with the newest", async () => {
    const w = world();
    const job = w.submit(w.served);
    await w.hello();
    await w.say({ type: "work.request", credits: 1 });
    await w.say({ type: "job.progress", job_id: job, epoch: 1, phase: "sampling", step: 1, total: 10 });
    await w.say({ type: "job.progress", job_id: job, epoch: 1, phase: "sampling", step: 2, total: 10 });
    expect(w.forwarded).toEqual([]);
    w.frames.watch(job, 1, "agt_1");
    await w.say({ type: "job.log", job_id: job, epoch: 1, level: "info", message: "hi" });
    await Promise.all(w.pending);
    expect(w.forwarded.map((f) => [f.what, f.detail])).toMatchObject([
      ["progress", { phase: "sampling", step: 2, total: 10 }],
      ["log", "info: hi"],
    ]);
  });

  it("a lease pushed while a heartbeat that could not name it is with its shard stays the agent's: its progress is taken, not answered lease.stale", async () => {
    const w = world();
    await w.hello();
    // Parked for one job, with none queued.
    await w.say({ type: "work.request", credits: 1 });
    const gate = w.hold("heartbeat");
    // The agent's heartbeat, sent before the job came, is held at its shard...
    const beating = w.say({ type: "agent.heartbeat", leases: [], gpus: [], credits: 1, draining: false, versions: [] });
    // ...while a job comes and is pushed to the parked agent.
    const job = w.submit(w.served);
    const pushed = w.served.takeDeliveries().get("agt_1") ?? [];
    expect(pushed.map((l) => l.job_id)).toEqual([job]);
    expect(w.frames.deliver(w.conn, pushed)).toEqual([]);
    gate();
    await beating;
    await w.say({ type: "job.progress", job_id: job, epoch: 1, phase: "sampling", step: 1, total: 10 });
    expect(w.of("lease.stale")).toEqual([]);
    expect(w.session.holds({ job_id: job, epoch: 1 })).toBe("held");
  });

  it("a lease pushed to a new connection while its hello is with the shards stays the agent's; leases of the old one it did not name go", async () => {
    const w = world();
    const jobs = [w.submit(w.served), w.submit(w.served)];
    const old = w.served.lease({ id: "agt_1", pool: "p", versions: [] }, 2, Date.now(), 1);
    w.session.add(old);
    const gate = w.hold("rejoin");
    w.conn.save({ ...w.conn.att, connected_at: Date.now() + 1 });
    const saying = w.hello();
    const pushed = w.served.lease({ id: "agt_1", pool: "p", versions: [] }, 2, Date.now() + 2, 1);
    expect(pushed.map((l) => l.job_id)).toEqual([jobs[1]]);
    expect(w.frames.deliver(w.conn, pushed)).toEqual([]);
    gate();
    await saying;
    expect(w.session.holds({ job_id: jobs[0]!, epoch: 1 })).toBe("stale");
    expect(w.session.holds({ job_id: jobs[1]!, epoch: 1 })).toBe("held");
  });

  it("a message about a lease the actor never saw is checked once with its shard: another agent's lease is stale", async () => {
    const w = world();
    const job = w.submit(w.served);
    w.served.lease({ id: "agt_other", pool: "p" }, 1, Date.now());
    await w.hello();
    await w.say({ type: "job.progress", job_id: job, epoch: 1, phase: "sampling", step: 1, total: 10 });
    expect(w.of("lease.stale")).toMatchObject([{ job_id: job, epoch: 1 }]);
  });

  it("a lease too large for any frame fails its job invalid_input at the edge; the agent gets the others", async () => {
    const w = world();
    const big = newJobId(SERVED);
    const small = newJobId(SERVED);
    const now = Date.now();
    w.served.enqueue(
      [
        { id: big, account_id: "acc", tier: "api", body: { model: "m", input: { blob: "x".repeat(70_000) } } },
        { id: small, account_id: "acc", tier: "api", body: { model: "m", input: {} } },
      ],
      now,
    );
    await w.hello();
    w.conn.save({ ...w.conn.att, slots: 2 });
    await w.say({ type: "work.request", credits: 2 });
    await Promise.all(w.pending);
    expect(w.of("job.leases").flatMap((m) => m.leases.map((l) => l.job_id))).toEqual([small]);
    expect(w.served.adminView(big, Date.now())).toMatchObject({
      ok: true,
      job: { status: "failed", error: { code: "invalid_input" } },
    });
  });

  it("leases pushed while no connection is open are answered undelivered", () => {
    const w = world();
    const lease = { job_id: "job_x", epoch: 3, deadline: 0, attempt: 1, model: "m", version: null, input: {} };
    expect(w.frames.deliver(undefined, [lease])).toEqual([{ job_id: "job_x", epoch: 3 }]);
  });

  it("a heartbeat naming the agent's slots moves its capacity: it is granted up to its new slots, not its hello's", async () => {
    const w = world();
    const jobs = [w.submit(w.served), w.submit(w.served), w.submit(w.served)];
    await w.hello();
    const beat = { type: "agent.heartbeat" as const, gpus: [], draining: false, versions: [] };
    await w.say({ ...beat, leases: [], credits: 3 });
    const first = w.of("job.leases").flatMap((m) => m.leases);
    expect(first.map((l) => l.job_id)).toEqual([jobs[0]]);
    const held = first.map((l) => ({ job_id: l.job_id, epoch: l.epoch }));
    await w.say({ ...beat, leases: held, credits: 2, slots: 3 });
    expect(w.of("job.leases").flatMap((m) => m.leases.map((l) => l.job_id))).toEqual(jobs);
    expect(w.conn.att.slots).toBe(3);
  });

  it("while no version of its model serves on the agent (a swap, a runner restarting), its leases are renewed, not stale, and nothing new is granted", async () => {
    const w = world();
    const jobs = [w.submit(w.served), w.submit(w.served)];
    await w.hello();
    const serving: VersionState[] = [{ model: "m0", version: "a", state: "serving" }];
    const beat = { type: "agent.heartbeat" as const, gpus: [], draining: false };
    await w.say({ ...beat, leases: [], credits: 1, versions: serving });
    const [lease] = w.of("job.leases").flatMap((m) => m.leases);
    expect(lease?.job_id).toBe(jobs[0]);
    const held = [{ job_id: lease?.job_id ?? "", epoch: lease?.epoch ?? 0 }];
    const swapping: VersionState[] = [{ model: "m0", version: "b", state: "loading" }];
    await w.say({ ...beat, leases: held, credits: 1, versions: swapping });
    expect(w.of("agent.heartbeat_ack").at(-1)?.stale).toEqual([]);
    expect(w.of("lease.stale")).toEqual([]);
    // The session keeps only what the shards renewed.
    expect(w.session.holds(held[0] ?? { job_id: "", epoch: 0 })).toBe("held");
    expect(w.of("job.leases").flatMap((m) => m.leases)).toHaveLength(1);
  });

  it("an agent coming back while no version of its model serves there resumes its leases, and the ones it did not name go back", async () => {
    const w = world();
    const jobs = [w.submit(w.served), w.submit(w.served)];
    const agent = { id: "agt_1", pool: "p", versions: [] };
    const leases = w.served.lease(agent, 2, Date.now(), 2);
    expect(leases.map((l) => l.job_id)).toEqual(jobs);
    const [kept, lost] = leases.map((l) => ({ job_id: l.job_id, epoch: l.epoch }));
    // This connection began after both were granted (to the agent's previous connection).
    w.conn.save({ ...w.conn.att, connected_at: Date.now() + 1 });
    await w.say({
      type: "agent.hello",
      agent_id: "agt_1",
      name: "a",
      slots: 2,
      prefetch: 0,
      leases: [kept ?? { job_id: "", epoch: 0 }],
      gpus: [],
      versions: [{ model: "m0", version: "b", state: "loading" }],
    });
    expect(w.of("agent.welcome")[0]).toMatchObject({ resumed: [kept], stale: [] });
    expect(w.served.leaseOf(lost?.job_id ?? "")).toMatchObject({ status: "queued" });
  });

  it("a heartbeat after the token expired closes with 4401 and gives every lease back", async () => {
    const w = world();
    await w.hello();
    w.conn.save({ ...w.conn.att, exp: 1 });
    await w.say({ type: "agent.heartbeat", leases: [], gpus: [], credits: 0, draining: false, versions: [] });
    expect(w.closed).toEqual([CLOSE.unauthorized]);
    expect(w.released).toEqual(["preempted"]);
  });

  it("agent.desired follows the welcome, and comes again only when what the agent should serve changed", async () => {
    const w = world();
    const v1 = desiredAfterApply("m0", { version: "v1" }, { stable: "1".repeat(64) }, undefined, 1, 0);
    const other = desiredAfterApply("m9", { version: "x" }, { stable: "9".repeat(64) }, undefined, 1, 0);
    w.desired.push(v1, other);
    await w.hello();
    expect(w.sent.map((m) => m.type)).toEqual(["agent.welcome", "agent.desired"]);
    // Only the models its token allows.
    expect(w.of("agent.desired")[0]?.models).toEqual([
      { model: "m0", stable: { version: "v1", digest: "1".repeat(64) } },
    ]);
    const beat = () =>
      w.say({ type: "agent.heartbeat", leases: [], gpus: [], credits: 0, draining: false, versions: [] });
    await beat();
    await w.frames.desiredChanged(w.conn);
    expect(w.of("agent.desired")).toHaveLength(1);
    // A rollout adds a canary: the registry's push brings it at once.
    const canary = { version: "v2", percent: 10, max_failure_pct: 20, min_jobs: 20 };
    w.desired[0] = desiredAfterApply(
      "m0",
      { version: "v1", canary },
      { stable: "1".repeat(64), canary: "2".repeat(64) },
      v1,
      2,
      1,
    );
    await w.frames.desiredChanged(w.conn);
    expect(w.of("agent.desired")[1]?.models[0]?.canary).toEqual({ version: "v2", digest: "2".repeat(64), percent: 10 });
    await beat();
    expect(w.of("agent.desired")).toHaveLength(2);
    // A change the push did not bring is found on the next heartbeat.
    w.desired[0] = desiredAfterRevert(w.desired[0]!, 2);
    await beat();
    expect(w.of("agent.desired")).toHaveLength(3);
    expect(w.of("agent.desired")[2]?.models[0]).not.toHaveProperty("canary");
  });

  it("an agent's version states of its token's models go to the registry at its hello and then only when they change", async () => {
    const w = world();
    await w.say({
      type: "agent.hello",
      agent_id: "agt_1",
      name: "a",
      slots: 1,
      prefetch: 0,
      leases: [],
      gpus: [],
      versions: [{ model: "m0", version: "v1", state: "serving" }],
    });
    const beat = (versions: VersionState[]) =>
      w.say({ type: "agent.heartbeat", leases: [], gpus: [], credits: 0, draining: false, versions });
    await beat([{ model: "m0", version: "v1", state: "serving" }]);
    await beat([
      { model: "m0", version: "v1", state: "serving" },
      { model: "m0", version: "v2", state: "loading", message: "2/8 pieces" },
    ]);
    await beat([
      { model: "m0", version: "v1", state: "serving" },
      { model: "m0", version: "v2", state: "loading", message: "2/8 pieces" },
    ]);
    await beat([
      { model: "m0", version: "v1", state: "serving" },
      { model: "m0", version: "v2", state: "failed", message: "piece 3: sha256 mismatch" },
      // A model its token does not allow: the agent does not speak for it.
      { model: "m9", version: "x", state: "failed" },
    ]);
    expect(w.reported.map((r) => r.map((v) => `${v.version}:${v.state}`).join(","))).toEqual([
      "v1:serving",
      "v1:serving,v2:loading",
      "v1:serving,v2:failed",
    ]);
  });
});
