/**
 * AgentActor: one per connected GPU agent (named by the agent's instance id, which survives
 * reconnects). It holds the agent's WebSocket with the hibernation API — per-connection state
 * lives in the socket attachment so it survives eviction — checks every frame, renews all the
 * agent's leases in one call per scheduler shard per heartbeat, asks schedulers for work on the
 * agent's credits, forwards progress to job actors (never through a scheduler) and reports
 * results to the scheduler that fences them by epoch.
 *
 * Who calls it: the edge Worker (the upgrade), schedulers (`deliver`, `cancel`), the registry
 * (`revoke`) and admins (`info`).
 */
import { DurableObject } from "cloudflare:workers";
import type { ModelConfig } from "../shared/api.ts";
import { parseJobId, schedulerName } from "../shared/ids.ts";
import { outputPolicy } from "../shared/outputs.ts";
import {
  AGENT_ID_HEADER,
  AGENT_INSTANCE_HEADER,
  AGENT_PROTOCOL_VERSION,
  AGENT_SUBPROTOCOL,
  CLOSE,
  CONTROL_FRAME_CAP,
  decodeFrame,
  encodeFrame,
  FromAgent,
  HELLO_TIMEOUT_MS,
  leaseFrames,
  PREVIEW_FRAME_CAP,
  type GpuHealth,
  type LeaseRef,
  type OutputRecord,
  type ToAgent,
} from "../shared/wire.ts";
import type { JobActor } from "./job-actor.ts";
import { checkOutputs, type OutputCheck } from "./outputs.ts";
import type { RegistryActor } from "./registry-actor.ts";
import { actor, type Remote } from "./remote.ts";
import type { SchedulerActor } from "./scheduler-actor.ts";
import type { Lease } from "./scheduler/core.ts";

/** Heartbeat interval the edge asks of agents (ms). */
export const HEARTBEAT_MS = 5_000;
/** Lease lifetime without renewal (ms); matches the scheduler's. */
export const LEASE_TTL_MS = 30_000;
/** After a socket closes, how long the agent has to reconnect before its leases go back (ms). */
export const RECONNECT_GRACE_MS = 2 * HEARTBEAT_MS;
/**
 * How often a connection's heartbeats ask the registry whether its token is still live (ms),
 * besides the first heartbeat: a connection that raced its token's revocation is closed then.
 */
export const TOKEN_CHECK_MS = 15_000;
/**
 * A connection whose last heartbeat is this recent belongs to a live agent process: another
 * process presenting its id is refused (ms).
 */
const LIVE_MS = 3 * HEARTBEAT_MS;
/** Header on the upgrade request carrying the verified token claims (set by the Worker only). */
export const CLAIMS_HEADER = "x-floodgate-claims";

/** What the Worker verified about the connecting agent. */
export interface AgentClaimsLite {
  token_id: string;
  pool: string;
  models: string[];
  exp: number;
}

/** Per-connection state, kept in the socket attachment (≤ 2 KiB) so it survives hibernation. */
interface Attachment extends AgentClaimsLite {
  agent_id: string;
  /** The agent process behind this connection (its AGENT_INSTANCE_HEADER). */
  instance: string;
  /** Refused as a second live process with this id: closing, and deaf to what it sends. */
  refused: boolean;
  hello: boolean;
  name: string;
  slots: number;
  prefetch: number;
  versions: { model: string; version: string }[];
  gpus: GpuHealth[];
  /** Leases held, as of the last heartbeat. */
  running: number;
  last_heartbeat: number;
  connected_at: number;
  /** When the registry last said the token is live (ms); absent until the first heartbeat asks. */
  token_checked_at?: number;
}

function trace(): string {
  return crypto.randomUUID();
}

export class AgentActor extends DurableObject<Env> {
  private models: { at: number; list: ModelConfig[] } | undefined;

  /**
   * The upgrade, forwarded by the Worker after it verified the token. Nothing is written before
   * the agent says hello: a socket that never does is closed after {@link HELLO_TIMEOUT_MS}.
   */
  override async fetch(request: Request): Promise<Response> {
    const claims = JSON.parse(request.headers.get(CLAIMS_HEADER) ?? "null") as AgentClaimsLite | null;
    const agentId = request.headers.get(AGENT_ID_HEADER);
    const instance = request.headers.get(AGENT_INSTANCE_HEADER);
    if (!claims || !agentId || !instance) return new Response("missing claims", { status: 400 });
    const now = Date.now();
    // Another process already speaking as this id, and alive, keeps it: the newcomer is a clone.
    const rival = this.ctx.getWebSockets().some((old) => {
      const att = old.deserializeAttachment() as Attachment | null;
      return (
        old.readyState === WebSocket.OPEN &&
        att !== null &&
        att.instance !== instance &&
        now - att.last_heartbeat < LIVE_MS
      );
    });
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    this.ctx.acceptWebSocket(server);
    const att: Attachment = {
      ...claims,
      agent_id: agentId,
      instance,
      hello: false,
      name: agentId,
      slots: 0,
      prefetch: 0,
      versions: [],
      gpus: [],
      running: 0,
      last_heartbeat: now,
      connected_at: now,
      refused: rival,
    };
    server.serializeAttachment(att);
    if (rival) {
      // Closed once the upgrade has been answered: a close sent before the 101 is lost on the
      // way through a proxy, and the agent would wait on a socket that never opens.
      setTimeout(
        () =>
          server.close(CLOSE.id_in_use, `agent id ${agentId} is in use by another live agent process; take a fresh id`),
        0,
      );
    } else {
      for (const old of this.ctx.getWebSockets()) {
        if (old !== server) old.close(CLOSE.replaced, "a newer connection of this agent process took over");
      }
      setTimeout(() => {
        if ((server.deserializeAttachment() as Attachment | null)?.hello === false) {
          server.close(CLOSE.hello_timeout, `no agent.hello within ${HELLO_TIMEOUT_MS / 1000} s`);
        }
      }, HELLO_TIMEOUT_MS);
    }
    return new Response(null, {
      status: 101,
      webSocket: client,
      headers: { "Sec-WebSocket-Protocol": AGENT_SUBPROTOCOL },
    });
  }

  /**
   * Sends leases in as many frames as the control-frame cap needs. A lease too large for any
   * frame (its input predates the input bound) cannot reach any agent: its job fails with
   * `invalid_input`, as the edge's decision, not blamed on this agent, and the others go on.
   */
  private sendLeases(ws: WebSocket, agentId: string, leases: readonly Lease[]): void {
    const { frames, oversized } = leaseFrames(trace(), leases);
    for (const f of frames) {
      try {
        ws.send(f);
      } catch {
        // The socket is closing; its close handler returns the leases.
      }
    }
    for (const l of oversized) {
      this.ctx.waitUntil(
        (
          this.scheduler(l.job_id)
            ?.complete(
              { job_id: l.job_id, epoch: l.epoch },
              {
                status: "failed",
                code: "invalid_input",
                message: `the job's lease is larger than an agent frame (${CONTROL_FRAME_CAP} bytes); its input cannot be delivered`,
                retryable: false,
              },
              agentId,
            )
            .then(() => undefined) ?? Promise.resolve()
        ).catch(() => undefined),
      );
    }
  }

  private send(ws: WebSocket, msg: ToAgent): void {
    try {
      ws.send(encodeFrame(msg));
    } catch {
      // The socket is closing; its close handler returns the leases.
    }
  }

  /** Tells the agent it no longer holds the lease a message named: it abandons the job. */
  private stale(ws: WebSocket, msg: { trace: string; job_id: string; epoch: number }): void {
    this.send(ws, {
      v: AGENT_PROTOCOL_VERSION,
      type: "lease.stale",
      trace: msg.trace,
      job_id: msg.job_id,
      epoch: msg.epoch,
    });
  }

  private open(): { ws: WebSocket; att: Attachment } | undefined {
    for (const ws of this.ctx.getWebSockets()) {
      const att = ws.deserializeAttachment() as Attachment | null;
      if (att?.hello && ws.readyState === WebSocket.OPEN) return { ws, att };
    }
    return undefined;
  }

  private async modelConfigs(): Promise<ModelConfig[]> {
    if (!this.models || Date.now() - this.models.at > 10_000) {
      const snap = await actor<RegistryActor>(this.env.REGISTRY, "global").snapshot();
      this.models = { at: Date.now(), list: snap.models };
    }
    return this.models.list;
  }

  private scheduler(jobId: string) {
    const route = parseJobId(jobId);
    return route ? actor<SchedulerActor>(this.env.SCHEDULER, schedulerName(route)) : undefined;
  }

  /** A `job.complete`'s outputs checked against the edge's receipts and the model's policy. */
  private async checkCompletion(ref: LeaseRef, records: OutputRecord[]): Promise<OutputCheck> {
    const number = parseJobId(ref.job_id)?.modelNumber;
    let model = (await this.modelConfigs()).find((m) => m.number === number);
    if (!model) {
      // A model registered since the snapshot was taken.
      this.models = undefined;
      model = (await this.modelConfigs()).find((m) => m.number === number);
    }
    return await checkOutputs(records, ref, outputPolicy(model?.outputs), this.env.FILE_SIGNING_KEY ?? "");
  }

  /** Whether the registry says the token is live; a registry that cannot answer changes nothing. */
  private async tokenLive(tokenId: string): Promise<boolean> {
    return await actor<RegistryActor>(this.env.REGISTRY, "global")
      .tokenLive(tokenId)
      .catch(() => true);
  }

  /** Groups lease refs by the scheduler shard that holds them. */
  private byShard(refs: readonly LeaseRef[]): Map<string, LeaseRef[]> {
    const out = new Map<string, LeaseRef[]>();
    for (const r of refs) {
      const route = parseJobId(r.job_id);
      if (!route) continue;
      const name = schedulerName(route);
      out.set(name, [...(out.get(name) ?? []), r]);
    }
    return out;
  }

  /** Renews every lease the agent names, one call per shard; answers the stale ones. */
  private async renewAll(
    agentId: string,
    refs: readonly LeaseRef[],
  ): Promise<{ renewed: LeaseRef[]; stale: LeaseRef[] }> {
    const renewed: LeaseRef[] = [];
    const stale: LeaseRef[] = [];
    const known = new Set<LeaseRef>();
    await Promise.all(
      [...this.byShard(refs)].map(async ([name, group]) => {
        const out = await actor<SchedulerActor>(this.env.SCHEDULER, name).renew(agentId, group);
        renewed.push(...out.renewed);
        stale.push(...out.stale);
        for (const r of group) known.add(r);
      }),
    );
    for (const r of refs) if (!known.has(r)) stale.push(r);
    return { renewed, stale };
  }

  /** Asks the agent's models' schedulers for up to `credits` jobs; what is short waits parked. */
  private async requestWork(ws: WebSocket, att: Attachment, credits: number): Promise<void> {
    const loaded = new Set(att.versions.map((v) => v.model));
    const models = (await this.modelConfigs()).filter(
      (m) => att.models.includes(m.name) && (loaded.size === 0 || loaded.has(m.name)),
    );
    const capacity = att.slots + att.prefetch;
    let left = credits;
    const granted: Lease[] = [];
    // Random order spreads agents over models and shards; every shard is asked so each parks
    // the agent (an agent that receives more than its credits gives the extra back at once).
    // Each model's shards learn the versions of that model the agent serves: a job pinned to
    // another version is not leased to it.
    const shards = models.flatMap((m) =>
      Array.from({ length: m.shards }, (_, shard) => ({
        route: { modelNumber: m.number, shard },
        versions: att.versions.filter((v) => v.model === m.name).map((v) => v.version),
      })),
    );
    shards.sort(() => Math.random() - 0.5);
    for (const { route, versions } of shards) {
      const agent = { id: att.agent_id, pool: att.pool, versions };
      const leases = await actor<SchedulerActor>(this.env.SCHEDULER, schedulerName(route)).lease(agent, capacity, left);
      granted.push(...leases);
      left = Math.max(0, left - leases.length);
    }
    if (granted.length > 0) this.sendLeases(ws, att.agent_id, granted);
  }

  override async webSocketMessage(ws: WebSocket, message: ArrayBuffer | string): Promise<void> {
    if (typeof message === "string") {
      ws.close(CLOSE.malformed, "text frames are not part of floodgate.v1");
      return;
    }
    const frame = decodeFrame(new Uint8Array(message), FromAgent);
    if (!frame.ok) {
      ws.close(frame.close, frame.reason.slice(0, 120));
      return;
    }
    const msg = frame.msg;
    const att = ws.deserializeAttachment() as Attachment;
    if (att.refused) return;
    if (!att.hello && msg.type !== "agent.hello") {
      ws.close(CLOSE.protocol, "the first message must be agent.hello");
      return;
    }
    switch (msg.type) {
      case "agent.hello": {
        // A second hello would re-run the lease reconciliation of a first one mid-session.
        if (att.hello) {
          ws.close(CLOSE.protocol, "agent.hello comes once per connection");
          return;
        }
        if (msg.agent_id !== att.agent_id) {
          ws.close(CLOSE.protocol, "agent.hello names another agent id than the connection");
          return;
        }
        const next: Attachment = {
          ...att,
          hello: true,
          name: msg.name.slice(0, 64),
          slots: msg.slots,
          prefetch: msg.prefetch,
          versions: msg.versions.slice(0, 16),
          gpus: msg.gpus.slice(0, 8),
          last_heartbeat: Date.now(),
        };
        ws.serializeAttachment(next);
        // Remembered durably from the first hello on, so leases can be returned even if the
        // socket is gone for good; a pending "gone for good" alarm is called off.
        await this.ctx.storage.put("agent", {
          agent_id: att.agent_id,
          token_id: att.token_id,
          models: att.models,
          pool: att.pool,
        });
        await this.ctx.storage.deleteAlarm();
        const { renewed, stale } = await this.renewAll(att.agent_id, msg.leases);
        // What this id holds but its hello does not name was lost with its previous process or
        // connection: back to the queues now, not at the lease deadline.
        await this.eachShard((s, agentId) => s.releaseUnlisted(agentId, msg.leases, att.connected_at));
        this.send(ws, {
          v: AGENT_PROTOCOL_VERSION,
          type: "agent.welcome",
          trace: msg.trace,
          heartbeat_ms: HEARTBEAT_MS,
          lease_ttl_ms: LEASE_TTL_MS,
          control_frame_cap: CONTROL_FRAME_CAP,
          preview_frame_cap: PREVIEW_FRAME_CAP,
          resumed: renewed,
          stale,
        });
        this.ctx.waitUntil(
          actor<RegistryActor>(this.env.REGISTRY, "global")
            .agentSeen({ agent_id: att.agent_id, token_id: att.token_id, pool: att.pool, name: next.name })
            .catch(() => undefined),
        );
        return;
      }
      case "work.request":
        await this.requestWork(ws, att, msg.credits);
        return;
      case "agent.heartbeat": {
        const now = Date.now();
        const check = now - (att.token_checked_at ?? 0) >= TOKEN_CHECK_MS;
        const dead =
          att.exp * 1000 < now
            ? "the agent token expired"
            : check && !(await this.tokenLive(att.token_id))
              ? "the agent token was revoked"
              : undefined;
        if (dead) {
          ws.close(CLOSE.unauthorized, dead);
          await this.releaseAll("preempted");
          return;
        }
        ws.serializeAttachment({
          ...att,
          gpus: msg.gpus.slice(0, 8),
          running: msg.leases.length,
          last_heartbeat: now,
          token_checked_at: check ? now : att.token_checked_at,
        });
        const { stale } = await this.renewAll(att.agent_id, msg.leases);
        this.send(ws, { v: AGENT_PROTOCOL_VERSION, type: "agent.heartbeat_ack", trace: msg.trace, stale });
        if (msg.credits > 0 && !msg.draining) await this.requestWork(ws, att, msg.credits);
        return;
      }
      case "job.progress": {
        const ok = await actor<JobActor>(this.env.JOB, msg.job_id).progress(
          { job_id: msg.job_id, epoch: msg.epoch, agent_id: att.agent_id },
          { phase: msg.phase, step: msg.step, total: msg.total },
        );
        if (!ok) this.stale(ws, msg);
        return;
      }
      case "job.preview": {
        const ok = await actor<JobActor>(this.env.JOB, msg.job_id).preview(
          { job_id: msg.job_id, epoch: msg.epoch, agent_id: att.agent_id },
          msg.content_type,
          msg.data,
        );
        if (!ok) this.stale(ws, msg);
        return;
      }
      case "job.log": {
        const ok = await actor<JobActor>(this.env.JOB, msg.job_id).log(
          { job_id: msg.job_id, epoch: msg.epoch, agent_id: att.agent_id },
          msg.level,
          msg.message,
        );
        if (!ok) this.stale(ws, msg);
        return;
      }
      case "job.complete":
      case "job.fail": {
        const sched = this.scheduler(msg.job_id);
        const ref = { job_id: msg.job_id, epoch: msg.epoch };
        // Outputs are recorded only as the edge verified them; anything else fails the attempt.
        const checked = msg.type === "job.complete" ? await this.checkCompletion(ref, msg.outputs) : undefined;
        const out = sched
          ? await sched.complete(
              ref,
              msg.type === "job.fail"
                ? { status: "failed", code: msg.code, message: msg.message, retryable: msg.retryable }
                : checked?.ok
                  ? { status: "succeeded", outputs: checked.outputs }
                  : { status: "failed", code: "invalid_output", message: checked?.message ?? "", retryable: true },
              att.agent_id,
            )
          : undefined;
        if (!out?.ok) {
          this.stale(ws, msg);
          return;
        }
        if (checked && !checked.ok) {
          const refused = { code: "invalid_output" as const, message: checked.message.slice(0, 4096) };
          this.send(ws, { v: AGENT_PROTOCOL_VERSION, type: "job.refused", trace: msg.trace, ...ref, ...refused });
        }
        this.ctx.waitUntil(
          actor<JobActor>(this.env.JOB, msg.job_id)
            .ended(ref, out.status)
            .catch(() => undefined),
        );
        return;
      }
      case "job.release": {
        await Promise.all(
          [...this.byShard(msg.leases)].map(([name, refs]) =>
            actor<SchedulerActor>(this.env.SCHEDULER, name).releaseLeases(att.agent_id, refs, msg.reason),
          ),
        );
        return;
      }
    }
  }

  override async webSocketClose(ws: WebSocket, code: number, _reason: string, _clean: boolean): Promise<void> {
    // Always answer the peer's close (RFC 6455 §5.5.1); 1005/1006 cannot be sent back.
    try {
      ws.close(code === 1005 || code === 1006 ? 1000 : code, "closed");
    } catch {
      // already closed
    }
    await this.disconnected(ws);
  }

  override async webSocketError(ws: WebSocket): Promise<void> {
    await this.disconnected(ws);
  }

  /** The agent has RECONNECT_GRACE_MS to come back and resume its leases; then they go back. */
  private async disconnected(closed: WebSocket): Promise<void> {
    const others = this.ctx.getWebSockets().filter((w) => w !== closed && w.readyState === WebSocket.OPEN);
    if (others.length > 0) return;
    // An agent that never said hello holds nothing and has nothing stored.
    if ((await this.ctx.storage.get("agent")) === undefined) return;
    await this.ctx.storage.setAlarm(Date.now() + RECONNECT_GRACE_MS);
    // It stops waiting for new work at once, so no scheduler hands it a job it cannot receive.
    await this.eachShard((s, agentId) => s.unpark(agentId));
  }

  /** Calls every scheduler shard of this agent's models. */
  private async eachShard<T>(fn: (s: Remote<SchedulerActor>, agentId: string) => Promise<T>): Promise<T[]> {
    const stored = await this.ctx.storage.get<{ agent_id: string; models: string[] }>("agent");
    if (!stored) return [];
    const models = (await this.modelConfigs()).filter((m) => stored.models.includes(m.name));
    return await Promise.all(
      models.flatMap((m) =>
        Array.from({ length: m.shards }, (_, shard) =>
          fn(
            actor<SchedulerActor>(this.env.SCHEDULER, schedulerName({ modelNumber: m.number, shard })),
            stored.agent_id,
          ),
        ),
      ),
    );
  }

  override async alarm(): Promise<void> {
    if (this.ctx.getWebSockets().some((w) => w.readyState === WebSocket.OPEN)) return;
    await this.releaseAll("worker_lost");
  }

  /** Returns every lease this agent holds on every shard of its models. */
  private async releaseAll(reason: "worker_lost" | "preempted"): Promise<number> {
    const counts = await this.eachShard((s, agentId) => s.release(agentId, reason));
    const stored = await this.ctx.storage.get<{ agent_id: string }>("agent");
    if (stored) {
      await actor<RegistryActor>(this.env.REGISTRY, "global")
        .agentGone(stored.agent_id)
        .catch(() => undefined);
    }
    return counts.reduce((x, y) => x + y, 0);
  }

  /** Leases a scheduler granted while this agent was parked; answers those it could not send. */
  async deliver(leases: Lease[]): Promise<LeaseRef[]> {
    const open = this.open();
    if (!open) return leases.map((l) => ({ job_id: l.job_id, epoch: l.epoch }));
    this.sendLeases(open.ws, open.att.agent_id, leases);
    return [];
  }

  /** The client cancelled a job this agent runs. */
  async cancel(jobId: string, epoch: number): Promise<void> {
    const open = this.open();
    if (open)
      this.send(open.ws, { v: AGENT_PROTOCOL_VERSION, type: "job.cancel", trace: trace(), job_id: jobId, epoch });
  }

  /** The agent's token was revoked: close its sockets and fence its leases. */
  async revoke(tokenId: string): Promise<number> {
    const stored = await this.ctx.storage.get<{ token_id: string }>("agent");
    if (stored?.token_id !== tokenId) return 0;
    for (const ws of this.ctx.getWebSockets()) ws.close(CLOSE.unauthorized, "the agent token was revoked");
    return await this.releaseAll("preempted");
  }

  /** Asks a connected agent to drain: finish its jobs and take no new ones. */
  async drain(reason: string): Promise<boolean> {
    const open = this.open();
    if (!open) return false;
    this.send(open.ws, { v: AGENT_PROTOCOL_VERSION, type: "agent.drain", trace: trace(), reason });
    return true;
  }

  /** What admins see of this agent. */
  async info() {
    const open = this.open();
    if (!open) return { connected: false as const };
    const { att } = open;
    return {
      connected: true as const,
      agent_id: att.agent_id,
      name: att.name,
      pool: att.pool,
      models: att.models,
      versions: att.versions,
      slots: att.slots,
      prefetch: att.prefetch,
      gpus: att.gpus,
      running: att.running,
      last_heartbeat: new Date(att.last_heartbeat).toISOString(),
      connected_at: new Date(att.connected_at).toISOString(),
    };
  }
}
