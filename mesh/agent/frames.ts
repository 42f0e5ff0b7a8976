/**
 * What an agent's actor does with each frame its agent sends, once decoded and checked: the
 * protocol's decisions (docs/protocol.md, "Session"), over ports to the other actors so that it
 * runs in plain Node as well (frames.test.ts drives it against a real SchedulerCore).
 *
 * The hot path costs: a `job.results` frame is one call to its shard, which ends the attempts
 * and grants the next leases in one commit; progress, previews and logs are fenced by the
 * {@link Session} and go nowhere unless a job actor watches the job; a heartbeat is one call
 * per shard, which writes nothing. The agent's version states reach the registry only when
 * they change, and `agent.desired` is sent after the welcome and whenever it changes.
 *
 * Called by AgentActor.webSocketMessage.
 */
import { assertExhaustive } from "../../shared/errors.ts";
import type { FailureReason } from "../../shared/job.ts";
import {
  AGENT_PROTOCOL_VERSION,
  CLOSE,
  CONTROL_FRAME_CAP,
  leaseFrames,
  PREVIEW_FRAME_CAP,
  type FromAgent,
  type JobResult,
  type LeaseRef,
  type OutputRecord,
  type ToAgent,
  type VersionState,
} from "../../shared/wire.ts";
import type { OutputCheck } from "../outputs.ts";
import {
  DEFAULT_LEASE_TTL_MS,
  type AgentRef,
  type CompleteOutcome,
  type Completion,
  type Lease,
  type Revocation,
} from "../scheduler/core.ts";
import type { DesiredBody } from "../registry/rollouts.ts";
import { desiredSignature } from "./desired.ts";
import { Relay, type RelayKind } from "./relay.ts";
import { HEARTBEAT_MS, TOKEN_CHECK_MS, type Attachment } from "./connection.ts";
import type { Session } from "./session.ts";
import { byShard, type ShardRoute } from "./shards.ts";

/** A shard, as far as an agent's frames reach it (SchedulerActor's RPC). */
export interface ShardPort {
  rejoin(agentId: string, listed: LeaseRef[], connectedAt: number): Promise<{ renewed: LeaseRef[]; stale: LeaseRef[] }>;
  heartbeat(
    agent: AgentRef,
    refs: LeaseRef[],
    capacity: number,
    credits: number,
  ): Promise<{ renewed: LeaseRef[]; stale: LeaseRef[]; leases: Lease[] }>;
  lease(agent: AgentRef, capacity: number, maxNew: number): Promise<Lease[]>;
  settle(
    agent: AgentRef,
    results: (LeaseRef & { result: Completion })[],
    capacity: number,
    credits: number,
  ): Promise<{ outcomes: CompleteOutcome[]; leases: Lease[] }>;
  releaseLeases(agentId: string, refs: LeaseRef[], reason: "drained" | "preempted"): Promise<number>;
  leaseOf(jobId: string): Promise<{ status: string; epoch: number; agent_id: string | null } | null>;
}

/** A lease, with the agent holding it: what the agent's actor vouches for when it passes a message on. */
export type HeldBy = LeaseRef & { agent_id: string };

/** A job actor, as far as an agent's frames reach it (only for watched jobs). */
export interface JobPort {
  progress(ref: HeldBy, p: { phase: string; step: number; total: number }): Promise<unknown>;
  preview(ref: HeldBy, contentType: string, data: Uint8Array): Promise<unknown>;
  log(ref: HeldBy, level: string, message: string): Promise<unknown>;
}

/** Everything outside the frame handler it needs. */
export interface AgentPorts {
  shard(name: string): ShardPort;
  job(jobId: string): JobPort;
  /** The shards this agent serves. */
  routes(att: Attachment): Promise<ShardRoute[]>;
  /**
   * Every shard of the agent's token's models that the registry has, whatever versions the agent
   * serves now: the only shards its leases can be on. Nothing else is asked about its frames.
   */
  shards(att: Attachment): Promise<Set<string>>;
  /** A success's outputs checked against the edge's receipts and the model's policy. */
  checkOutputs(ref: LeaseRef, outputs: OutputRecord[]): Promise<OutputCheck>;
  /** Whether the registry says the token is live (a registry that cannot answer: yes). */
  tokenLive(tokenId: string): Promise<boolean>;
  /** The agent said hello: remember it durably, call off a pending "gone" alarm, tell the registry. */
  joined(att: Attachment): Promise<void>;
  /** What the agent should serve now: the desired versions of its token's models, and what was purged. */
  desired(att: Attachment): Promise<DesiredBody>;
  /** The agent's version states changed (or it said hello): the registry hears them. */
  versionsChanged(att: Attachment, versions: VersionState[]): void;
  /** The token died while connected: every lease goes back (not spending attempts). */
  releaseAll(reason: "preempted"): Promise<void>;
  /** Work that may finish after the frame is handled. */
  waitUntil(p: Promise<unknown>): void;
}

/** One connection, as the frame handler sees it. */
export interface Connection {
  /** Its attachment as saved now (frames are handled concurrently: read it after an await). */
  readonly att: Attachment;
  save(att: Attachment): void;
  send(msg: ToAgent): void;
  /** Sends encoded frames as they are. */
  sendRaw(frames: Uint8Array[]): void;
  close(code: number, reason: string): void;
}

const V = AGENT_PROTOCOL_VERSION;

/** The agent this connection speaks for, as a shard of `route` sees it. */
function agentOn(att: Attachment, route: ShardRoute | undefined): AgentRef {
  return {
    id: att.agent_id,
    pool: att.pool,
    versions: route?.versions ?? [],
    ...(att.preemptible ? { preemptible: true } : {}),
  };
}

/** The version states of the models the agent's token allows: it speaks for no others. */
function ownVersions(att: Attachment, versions: readonly VersionState[]): VersionState[] {
  return versions.filter((v) => att.models.includes(v.model));
}

function capacity(att: Attachment): number {
  return att.slots + att.prefetch;
}

export class AgentFrames {
  private readonly ports: AgentPorts;
  private readonly session: Session;
  /** What goes on to the job actors of watched jobs. */
  private readonly relay: Relay;

  constructor(ports: AgentPorts, session: Session) {
    this.ports = ports;
    this.session = session;
    this.relay = new Relay((p) => ports.waitUntil(p));
  }

  /** Handles one decoded frame of a connection. */
  async handle(conn: Connection, msg: FromAgent): Promise<void> {
    const att = conn.att;
    if (att.refused) return;
    if (!att.hello && msg.type !== "agent.hello") {
      conn.close(CLOSE.protocol, "the first message must be agent.hello");
      return;
    }
    switch (msg.type) {
      case "agent.hello":
        return await this.hello(conn, msg);
      case "work.request":
        return await this.requestWork(conn, msg.credits);
      case "agent.heartbeat":
        return await this.heartbeat(conn, msg);
      case "job.progress":
        return await this.onLease(conn, msg, (job, by) =>
          job.progress(by, { phase: msg.phase, step: msg.step, total: msg.total }),
        );
      case "job.preview":
        return await this.onLease(conn, msg, (job, by) => job.preview(by, msg.content_type, msg.data));
      case "job.log":
        return await this.onLease(conn, msg, (job, by) => job.log(by, msg.level, msg.message));
      case "job.results":
        return await this.results(conn, msg.trace, msg.results, msg.credits);
      case "job.release": {
        for (const r of msg.leases) this.session.drop(r);
        const own = await this.ports.shards(att);
        await Promise.all(
          [...byShard(msg.leases)]
            .filter(([name]) => own.has(name))
            .map(([name, refs]) => this.ports.shard(name).releaseLeases(att.agent_id, refs, msg.reason)),
        );
        return;
      }
      default:
        assertExhaustive(msg);
    }
  }

  private async hello(conn: Connection, msg: Extract<FromAgent, { type: "agent.hello" }>): Promise<void> {
    const att = conn.att;
    // A second hello would re-run the lease reconciliation of a first one mid-session.
    if (att.hello) return conn.close(CLOSE.protocol, "agent.hello comes once per connection");
    if (msg.agent_id !== att.agent_id) {
      return conn.close(CLOSE.protocol, "agent.hello names another agent id than the connection");
    }
    // Leases held before now were granted to an earlier connection; the ones pushed to this one
    // while the shards answer below are kept whatever the answer says.
    const since = this.session.mark();
    const next: Attachment = {
      ...att,
      hello: true,
      name: msg.name.slice(0, 64),
      slots: msg.slots,
      prefetch: msg.prefetch,
      preemptible: msg.preemptible ?? false,
      versions: msg.versions.slice(0, 16),
      gpus: msg.gpus.slice(0, 8),
      last_heartbeat: Date.now(),
    };
    conn.save(next);
    await this.ports.joined(next);
    // Every shard of its token's models hears which of its leases the agent still runs, whether
    // or not a version of the model serves there this moment: those are renewed, the ones it
    // held but did not name were lost with its previous process or connection and go back.
    const listed = byShard(msg.leases);
    const renewed: LeaseRef[] = [];
    const stale: LeaseRef[] = [];
    await Promise.all(
      [...(await this.ports.shards(next))].map(async (name) => {
        const out = await this.ports.shard(name).rejoin(att.agent_id, listed.get(name) ?? [], att.connected_at);
        renewed.push(...out.renewed);
        stale.push(...out.stale);
        listed.delete(name);
      }),
    );
    // Leases of shards of no model of its token are not its.
    for (const refs of listed.values()) stale.push(...refs);
    this.session.sync(renewed, stale, since);
    conn.send({
      v: V,
      type: "agent.welcome",
      trace: msg.trace,
      heartbeat_ms: HEARTBEAT_MS,
      lease_ttl_ms: DEFAULT_LEASE_TTL_MS,
      control_frame_cap: CONTROL_FRAME_CAP,
      preview_frame_cap: PREVIEW_FRAME_CAP,
      resumed: renewed,
      stale,
    });
    this.ports.versionsChanged(next, ownVersions(next, next.versions));
    await this.tellDesired(conn, true);
  }

  /**
   * Sends `agent.desired` (what the agent should serve) when it differs from what the agent was
   * last told on this connection, or `always` (after the welcome).
   */
  private async tellDesired(conn: Connection, always: boolean): Promise<void> {
    const body = await this.ports.desired(conn.att);
    const sig = desiredSignature(body);
    if (!always && conn.att.desired_sig === sig) return;
    conn.save({ ...conn.att, desired_sig: sig });
    conn.send({ v: V, type: "agent.desired", trace: crypto.randomUUID(), ...body });
  }

  /** The registry says a model's desired versions changed: the agent hears it if it concerns it. */
  async desiredChanged(conn: Connection | undefined): Promise<void> {
    if (conn?.att.hello && !conn.att.refused) await this.tellDesired(conn, false);
  }

  /**
   * Asks the agent's shards, in random order, for up to `credits` jobs; what is short waits
   * parked at each (an agent given more than its credits gives the extra back at once).
   */
  private async requestWork(conn: Connection, credits: number): Promise<void> {
    const routes = await this.ports.routes(conn.att);
    routes.sort(() => Math.random() - 0.5);
    let left = credits;
    const granted: Lease[] = [];
    for (const r of routes) {
      const leases = await this.ports.shard(r.name).lease(agentOn(conn.att, r), capacity(conn.att), left);
      granted.push(...leases);
      left = Math.max(0, left - leases.length);
    }
    this.granted(conn, granted);
  }

  private granted(conn: Connection, leases: Lease[]): void {
    if (leases.length === 0) return;
    this.session.add(leases);
    this.sendLeases(conn, leases);
  }

  /**
   * Leases a scheduler granted while the agent waited for work, pushed to its connection; with
   * no connection open, answers them all as undelivered (the scheduler takes them back).
   */
  deliver(conn: Connection | undefined, leases: Lease[]): LeaseRef[] {
    if (!conn) return leases.map((l) => ({ job_id: l.job_id, epoch: l.epoch }));
    this.granted(conn, leases);
    return [];
  }

  /**
   * A scheduler ended leases of this agent without its asking: cancelled by their owners, or
   * their deadlines passed. The agent is told to stop them; what it sends about them is stale.
   */
  takenBack(conn: Connection | undefined, refs: readonly Revocation[]): void {
    for (const r of refs) {
      this.session.drop(r);
      const ref = { job_id: r.job_id, epoch: r.epoch };
      const type = r.why === "cancelled" ? "job.cancel" : "lease.stale";
      conn?.send({ v: V, type, trace: crypto.randomUUID(), ...ref });
    }
  }

  /**
   * Sends leases in as many frames as the control-frame cap needs. A lease too large for any
   * frame (its input predates the input bound) cannot reach any agent: its job fails with
   * `invalid_input`, as the edge's decision, not blamed on this agent, and the others go on.
   */
  private sendLeases(conn: Connection, leases: readonly Lease[]): void {
    // What the agent is sent is the lease itself: whether a job actor watches is the edge's.
    const grants = leases.map(({ watched: _watched, ...grant }) => grant);
    const { frames, oversized } = leaseFrames(crypto.randomUUID(), grants);
    conn.sendRaw(frames);
    const message = `the job's lease is larger than an agent frame (${CONTROL_FRAME_CAP} bytes); its input cannot be delivered`;
    for (const [name, refs] of byShard(oversized)) {
      for (const r of refs) this.session.drop(r);
      const results = refs.map((r) => ({
        ...r,
        result: { status: "failed" as const, code: "invalid_input" as const, message },
      }));
      const agent = { id: conn.att.agent_id, pool: conn.att.pool };
      this.ports.waitUntil(
        this.ports
          .shard(name)
          .settle(agent, results, 0, 0)
          .catch(() => undefined),
      );
    }
  }

  private async heartbeat(conn: Connection, msg: Extract<FromAgent, { type: "agent.heartbeat" }>): Promise<void> {
    const att = conn.att;
    const now = Date.now();
    const check = now - (att.token_checked_at ?? 0) >= TOKEN_CHECK_MS;
    const dead =
      att.exp * 1000 < now
        ? "the agent token expired"
        : check && !(await this.ports.tokenLive(att.token_id))
          ? "the agent token was revoked"
          : undefined;
    if (dead) {
      conn.close(CLOSE.unauthorized, dead);
      await this.ports.releaseAll("preempted");
      return;
    }
    // What the heartbeat says now counts for this heartbeat's grants: an agent sends one at once
    // when a version starts serving, so that its jobs come without waiting a period.
    const versions = msg.versions.slice(0, 16);
    const next: Attachment = {
      // As saved now: another frame may have saved it while the token was checked.
      ...conn.att,
      gpus: msg.gpus.slice(0, 8),
      versions,
      slots: msg.slots ?? att.slots,
      running: msg.leases.length,
      last_heartbeat: now,
      token_checked_at: check ? now : att.token_checked_at,
    };
    conn.save(next);
    if (JSON.stringify(versions) !== JSON.stringify(att.versions)) {
      this.ports.versionsChanged(next, ownVersions(next, versions));
    }
    const routes = (await this.ports.routes(next)).sort(() => Math.random() - 0.5);
    const refs = byShard(msg.leases);
    let left = msg.credits > 0 && !msg.draining ? msg.credits : 0;
    const renewed: LeaseRef[] = [];
    const stale: LeaseRef[] = [];
    const granted: Lease[] = [];
    for (const r of routes) {
      const mine = refs.get(r.name) ?? [];
      refs.delete(r.name);
      // A draining agent is told to every shard, so none keeps it parked for work.
      if (mine.length === 0 && left === 0 && !msg.draining) continue;
      const out = await this.ports.shard(r.name).heartbeat(agentOn(next, r), mine, capacity(next), left);
      renewed.push(...out.renewed);
      stale.push(...out.stale);
      granted.push(...out.leases);
      left = Math.max(0, left - out.leases.length);
    }
    // Leases on a shard of the token's models whose version serves nowhere on the agent this
    // moment (it is swapping versions, or its runner restarts) are still its own: they are
    // renewed, and that shard grants nothing. Only shards outside the token's models are stale.
    const own = refs.size > 0 ? await this.ports.shards(next) : new Set<string>();
    for (const [name, mine] of refs) {
      if (!own.has(name)) {
        stale.push(...mine);
        continue;
      }
      const out = await this.ports.shard(name).heartbeat(agentOn(next, undefined), mine, capacity(next), 0);
      renewed.push(...out.renewed);
      stale.push(...out.stale);
    }
    this.session.sync(renewed, stale);
    conn.send({ v: V, type: "agent.heartbeat_ack", trace: msg.trace, stale });
    this.granted(conn, granted);
    // A change the registry's push did not bring (an actor that was asleep, a lost call).
    await this.tellDesired(conn, false);
  }

  /**
   * A progress, preview or log about a lease: kept (progress, coalesced) and passed on to the
   * job's actor only when one watches the job; about a lease the agent does not hold, answered
   * `lease.stale`. After the actor woke up, a lease it does not know yet is checked once with
   * its shard.
   */
  private async onLease(
    conn: Connection,
    msg: Extract<FromAgent, { type: "job.progress" | "job.preview" | "job.log" }>,
    forward: (job: JobPort, by: HeldBy) => Promise<unknown>,
  ): Promise<void> {
    const ref = { job_id: msg.job_id, epoch: msg.epoch };
    let holding = this.session.holds(ref);
    if (holding === "unknown") {
      const shard = byShard([ref]).keys().next().value;
      const own = shard !== undefined && (await this.ports.shards(conn.att)).has(shard);
      const lease = own ? await this.ports.shard(shard).leaseOf(ref.job_id) : null;
      const mine = lease?.status === "running" && lease.epoch === ref.epoch && lease.agent_id === conn.att.agent_id;
      if (mine) this.session.add([ref]);
      holding = mine ? "held" : "stale";
    }
    if (holding === "stale") {
      conn.send({ v: V, type: "lease.stale", trace: msg.trace, ...ref });
      return;
    }
    if (msg.type === "job.progress") {
      this.session.progress(ref, { phase: msg.phase, step: msg.step, total: msg.total, at: Date.now() });
    }
    if (this.session.isWatched(ref.job_id)) {
      const kind = msg.type === "job.progress" ? "progress" : "other";
      this.forward({ ...ref, agent_id: conn.att.agent_id }, kind, forward);
    }
  }

  /** Passes a message on to a job's actor, after the job's earlier ones (mesh/agent/relay.ts). */
  private forward(by: HeldBy, kind: RelayKind, send: (job: JobPort, by: HeldBy) => Promise<unknown>): void {
    this.relay.send(by.job_id, kind, () => send(this.ports.job(by.job_id), by));
  }

  /**
   * A job actor watches a job this agent runs at `epoch`: what comes about it is passed on from
   * now on, starting with the newest progress kept while nobody watched (in order with the rest).
   */
  watch(jobId: string, epoch: number, agentId: string): void {
    this.session.watch(jobId);
    const p = this.session.latest(jobId, epoch);
    if (p) this.forward({ job_id: jobId, epoch, agent_id: agentId }, "progress", (job, by) => job.progress(by, p));
  }

  /**
   * How attempts ended, with the agent's room for more: each success's outputs are checked
   * first (only what the edge stored and hashed for the lease counts), then one call per shard
   * ends the attempts and grants the next leases in the same commit.
   */
  private async results(conn: Connection, trace: string, all: JobResult[], credits: number): Promise<void> {
    const att = conn.att;
    // A result on a shard none of its leases can be on (a made-up job id) is stale at once.
    const own = await this.ports.shards(att);
    const results = all.filter((r) => {
      const name = byShard([r]).keys().next().value;
      if (name !== undefined && own.has(name)) return true;
      conn.send({ v: V, type: "lease.stale", trace, job_id: r.job_id, epoch: r.epoch });
      return false;
    });
    const checked = await Promise.all(
      results.map(async (r): Promise<{ r: JobResult; result: Completion; refused?: string }> => {
        const run = { executing_ms: r.executing_ms, gpus: r.gpus };
        if (r.status === "failed") return { r, result: { status: "failed", code: r.code, message: r.message, ...run } };
        const out = await this.ports.checkOutputs(r, r.outputs);
        if (out.ok) return { r, result: { status: "succeeded", outputs: out.outputs, ...run } };
        const code: FailureReason = "invalid_output";
        return { r, result: { status: "failed", code, message: out.message, ...run }, refused: out.message };
      }),
    );
    const routes = await this.ports.routes(att);
    let left = credits;
    const granted: Lease[] = [];
    for (const [name, group] of byShard(checked.map((c) => ({ ...c, job_id: c.r.job_id })))) {
      // A shard the agent does not serve settles its results but grants it nothing.
      const route = routes.find((r) => r.name === name);
      const out = await this.ports.shard(name).settle(
        agentOn(att, route),
        group.map((c) => ({ job_id: c.r.job_id, epoch: c.r.epoch, result: c.result })),
        route ? capacity(att) : 0,
        route ? left : 0,
      );
      out.outcomes.forEach((o, i) => {
        const c = group[i];
        if (!c) return;
        const ref = { job_id: c.r.job_id, epoch: c.r.epoch };
        this.session.drop(ref);
        if (!o.ok) conn.send({ v: V, type: "lease.stale", trace, ...ref });
        else if (c.refused !== undefined) {
          conn.send({
            v: V,
            type: "job.refused",
            trace,
            ...ref,
            code: "invalid_output",
            message: c.refused.slice(0, 4096),
          });
        }
      });
      granted.push(...out.leases);
      left = Math.max(0, left - out.leases.length);
    }
    this.granted(conn, granted);
    // Room left over: the agent's other shards hear of it (and park it) too.
    if (left > 0 && routes.length > 1) await this.requestWork(conn, left);
  }
}
