/**
 * AgentActor: one per GPU agent (named by the agent's id, which survives its restarts). A shell
 * over mesh/agent/: it holds the agent's WebSocket with the hibernation API — per-connection
 * state lives in the socket attachment so it survives eviction — decodes every frame and hands
 * it to {@link AgentFrames}, and keeps the agent's {@link Session} (its leases and their latest
 * progress) in memory. Progress never passes through a scheduler, and reaches a job actor only
 * when one watches the job.
 *
 * Who calls it: the edge Worker (the upgrade, `progressOf`), schedulers (`deliver`,
 * `takenBack`), job actors (`watch`, `unwatch`), the registry (`revoke`, `desiredChanged`) and
 * admins (`info`, `drain`, `reclaim`).
 */
import { DurableObject } from "cloudflare:workers";
import type { ModelConfig } from "../shared/api.ts";
import type { VersionState } from "../shared/wire.ts";
import { parseJobId } from "../shared/ids.ts";
import { outputPolicy } from "../shared/outputs.ts";
import {
  AGENT_ID_HEADER,
  AGENT_INSTANCE_HEADER,
  AGENT_PROTOCOL_VERSION,
  AGENT_SUBPROTOCOL,
  CLOSE,
  decodeFrame,
  encodeFrame,
  FromAgent,
  HELLO_TIMEOUT_MS,
  type LeaseRef,
  type ToAgent,
} from "../shared/wire.ts";
import { admit, agentView, HEARTBEAT_MS, type AgentClaimsLite, type Attachment } from "./agent/connection.ts";
import { desiredFor } from "./agent/desired.ts";
import { AgentFrames, type Connection } from "./agent/frames.ts";
import { Session, type Progress } from "./agent/session.ts";
import { shardsServed } from "./agent/shards.ts";
import type { JobActor } from "./job-actor.ts";
import { checkOutputs } from "./outputs.ts";
import type { RegistryActor, RegistrySnapshot } from "./registry-actor.ts";
import { actor, type Remote } from "./remote.ts";
import type { SchedulerActor } from "./scheduler-actor.ts";
import type { Lease, Revocation } from "./scheduler/core.ts";

export type { AgentClaimsLite } from "./agent/connection.ts";

/** After a socket closes, how long the agent has to reconnect before its leases go back (ms). */
export const RECONNECT_GRACE_MS = 2 * HEARTBEAT_MS;
/** Header on the upgrade request carrying the verified token claims (set by the Worker only). */
export const CLAIMS_HEADER = "x-floodgate-claims";
/** How long the registry's snapshot (models, desired versions) is used before it is read again (ms). */
const SNAPSHOT_CACHE_MS = 10_000;

/** What is stored from the first hello on, so leases can go back even if the socket never returns. */
interface Stored {
  agent_id: string;
  token_id: string;
  models: string[];
  pool: string;
}

function trace(): string {
  return crypto.randomUUID();
}

export class AgentActor extends DurableObject<Env> {
  private snap: { at: number; snapshot: RegistrySnapshot } | undefined;
  private readonly session = new Session();
  private readonly frames = new AgentFrames(
    {
      shard: (name) => actor<SchedulerActor>(this.env.SCHEDULER, name),
      job: (jobId) => actor<JobActor>(this.env.JOB, jobId),
      routes: async (att) => shardsServed(await this.modelConfigs(), att.models, att.versions),
      shards: async (att) => new Set(shardsServed(await this.modelConfigs(), att.models).map((r) => r.name)),
      checkOutputs: async (ref, records) => {
        const number = parseJobId(ref.job_id)?.modelNumber;
        let model = (await this.modelConfigs()).find((m) => m.number === number);
        if (!model) model = (await this.modelConfigs(true)).find((m) => m.number === number);
        return await checkOutputs(records, ref, outputPolicy(model?.outputs), this.env.FILE_SIGNING_KEY ?? "");
      },
      tokenLive: async (tokenId) =>
        await actor<RegistryActor>(this.env.REGISTRY, "global")
          .tokenLive(tokenId)
          .catch(() => true),
      joined: async (att) => {
        const stored: Stored = { agent_id: att.agent_id, token_id: att.token_id, models: att.models, pool: att.pool };
        await this.ctx.storage.put("agent", stored);
        await this.ctx.storage.deleteAlarm();
        this.ctx.waitUntil(
          actor<RegistryActor>(this.env.REGISTRY, "global")
            .agentSeen({ agent_id: att.agent_id, token_id: att.token_id, pool: att.pool, name: att.name })
            .catch(() => undefined),
        );
      },
      desired: async (att) => {
        const snap = await this.snapshot();
        return desiredFor(snap.desired, att.models, snap.purged ?? []);
      },
      versionsChanged: (att, versions) => this.versionsChanged(att.agent_id, versions),
      releaseAll: async (reason) => void (await this.releaseAll(reason)),
      waitUntil: (p) => this.ctx.waitUntil(p),
    },
    this.session,
  );

  /**
   * The upgrade, forwarded by the Worker after it verified the token. Nothing is written before
   * the agent says hello: a socket that never does is closed after {@link HELLO_TIMEOUT_MS}.
   */
  override async fetch(request: Request): Promise<Response> {
    const claims = JSON.parse(request.headers.get(CLAIMS_HEADER) ?? "null") as AgentClaimsLite | null;
    const agentId = request.headers.get(AGENT_ID_HEADER);
    const instance = request.headers.get(AGENT_INSTANCE_HEADER);
    if (!claims || !agentId || !instance) return new Response("missing claims", { status: 400 });
    const open = this.ctx
      .getWebSockets()
      .filter((ws) => ws.readyState === WebSocket.OPEN)
      .flatMap((ws) => (ws.deserializeAttachment() as Attachment | null) ?? []);
    const att = admit(open, claims, agentId, instance, Date.now());
    const rival = att.refused;
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    this.ctx.acceptWebSocket(server);
    server.serializeAttachment(att);
    if (rival) {
      // Closed once the upgrade has been answered: a close sent before the 101 is lost on the
      // way through a proxy, and the agent would wait on a socket that never opens.
      const why = `agent id ${agentId} is in use by another live agent process; take a fresh id`;
      setTimeout(() => server.close(CLOSE.id_in_use, why), 0);
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

  override async webSocketMessage(ws: WebSocket, message: ArrayBuffer | string): Promise<void> {
    if (typeof message === "string") {
      ws.close(CLOSE.malformed, `text frames are not part of ${AGENT_SUBPROTOCOL}`);
      return;
    }
    const frame = decodeFrame(new Uint8Array(message), FromAgent);
    if (!frame.ok) {
      ws.close(frame.close, frame.reason.slice(0, 120));
      return;
    }
    await this.frames.handle(this.connection(ws), frame.msg);
  }

  private connection(ws: WebSocket): Connection {
    return {
      // Read each time: a frame handled alongside this one may have saved it since.
      get att() {
        return ws.deserializeAttachment() as Attachment;
      },
      save: (att) => ws.serializeAttachment(att),
      send: (msg) => this.send(ws, msg),
      sendRaw: (frames) => {
        try {
          for (const f of frames) ws.send(f);
        } catch {
          // The socket is closing; its close handler returns the leases.
        }
      },
      close: (code, reason) => ws.close(code, reason),
    };
  }

  private send(ws: WebSocket, msg: ToAgent): void {
    try {
      ws.send(encodeFrame(msg));
    } catch {
      // The socket is closing; its close handler returns the leases.
    }
  }

  private openConnection(): Connection | undefined {
    const open = this.open();
    return open ? this.connection(open.ws) : undefined;
  }

  private open(): { ws: WebSocket; att: Attachment } | undefined {
    for (const ws of this.ctx.getWebSockets()) {
      const att = ws.deserializeAttachment() as Attachment | null;
      if (att?.hello && ws.readyState === WebSocket.OPEN) return { ws, att };
    }
    return undefined;
  }

  private async snapshot(fresh = false): Promise<RegistrySnapshot> {
    if (fresh || !this.snap || Date.now() - this.snap.at > SNAPSHOT_CACHE_MS) {
      const snapshot = await actor<RegistryActor>(this.env.REGISTRY, "global").snapshot();
      this.snap = { at: Date.now(), snapshot };
    }
    return this.snap.snapshot;
  }

  private async modelConfigs(fresh = false): Promise<ModelConfig[]> {
    return (await this.snapshot(fresh)).models;
  }

  /** The agent's version states changed: the registry hears them (not awaited by the frame). */
  private versionsChanged(agentId: string, versions: VersionState[]): void {
    this.ctx.waitUntil(
      actor<RegistryActor>(this.env.REGISTRY, "global")
        .agentVersions(agentId, versions)
        .catch(() => undefined),
    );
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
    if (this.ctx.getWebSockets().some((w) => w !== closed && w.readyState === WebSocket.OPEN)) return;
    // An agent that never said hello holds nothing and has nothing stored.
    const stored = await this.ctx.storage.get<Stored>("agent");
    if (!stored) return;
    await this.ctx.storage.setAlarm(Date.now() + RECONNECT_GRACE_MS);
    // It stops waiting for new work at once, so no scheduler hands it a job it cannot receive.
    await this.eachShard(stored, (s) => s.unpark(stored.agent_id));
  }

  /** Calls every scheduler shard of the stored agent's models. */
  private async eachShard<T>(stored: Stored, fn: (s: Remote<SchedulerActor>) => Promise<T>): Promise<T[]> {
    const routes = shardsServed(await this.modelConfigs(), stored.models);
    return await Promise.all(routes.map((r) => fn(actor<SchedulerActor>(this.env.SCHEDULER, r.name))));
  }

  override async alarm(): Promise<void> {
    if (this.ctx.getWebSockets().some((w) => w.readyState === WebSocket.OPEN)) return;
    await this.releaseAll("worker_lost");
  }

  /** Returns every lease this agent holds on every shard of its models. */
  private async releaseAll(reason: "worker_lost" | "preempted"): Promise<number> {
    const stored = await this.ctx.storage.get<Stored>("agent");
    if (!stored) return 0;
    const counts = await this.eachShard(stored, (s) => s.release(stored.agent_id, reason));
    await actor<RegistryActor>(this.env.REGISTRY, "global")
      .agentGone(stored.agent_id)
      .catch(() => undefined);
    return counts.reduce((x, y) => x + y, 0);
  }

  /** Leases a scheduler granted while this agent waited for work; answers those it could not send. */
  async deliver(leases: Lease[]): Promise<LeaseRef[]> {
    return this.frames.deliver(this.openConnection(), leases);
  }

  /** A scheduler ended leases of this agent without its asking (see AgentFrames.takenBack). */
  async takenBack(refs: Revocation[]): Promise<void> {
    this.frames.takenBack(this.openConnection(), refs);
  }

  /** A job actor follows a job this agent runs: its progress, previews and logs are passed on. */
  async watch(jobId: string, epoch: number): Promise<void> {
    const open = this.open();
    if (open) this.frames.watch(jobId, epoch, open.att.agent_id);
  }

  async unwatch(jobId: string): Promise<void> {
    this.session.unwatch(jobId);
  }

  /** A running job's latest progress, as its agent last reported it (for `GET /v1/jobs/{id}`). */
  async progressOf(jobId: string, epoch: number): Promise<Progress | null> {
    return this.session.latest(jobId, epoch) ?? null;
  }

  /** The agent's token was revoked: close its sockets and fence its leases. */
  async revoke(tokenId: string): Promise<number> {
    const stored = await this.ctx.storage.get<Stored>("agent");
    if (stored?.token_id !== tokenId) return 0;
    for (const ws of this.ctx.getWebSockets()) ws.close(CLOSE.unauthorized, "the agent token was revoked");
    return await this.releaseAll("preempted");
  }

  /**
   * The registry: a model's desired versions changed (a rollout, an undo, a revert). The
   * snapshot it sends replaces the cached one, and the agent hears what concerns it at once.
   */
  async desiredChanged(snapshot: RegistrySnapshot): Promise<void> {
    this.snap = { at: Date.now(), snapshot };
    await this.frames.desiredChanged(this.openConnection());
  }

  /** Asks a connected agent to drain: finish its jobs and take no new ones. */
  async drain(reason: string): Promise<boolean> {
    const open = this.open();
    if (!open) return false;
    this.send(open.ws, { v: AGENT_PROTOCOL_VERSION, type: "agent.drain", trace: trace(), reason });
    return true;
  }

  /**
   * Takes the agent's machine back (`floodgate agents reclaim`): the socket is closed first
   * (4411, so the agent asks for nothing more and exits), then every lease it holds goes back to
   * the head of its queue as `preempted`, which spends no attempt (shared/job.ts, RETRY). The
   * reconnect grace that a closed socket starts then finds nothing left to release. Answers how
   * many leases went back, or null when the agent is not connected.
   */
  async reclaim(reason: string): Promise<number | null> {
    const open = this.open();
    if (!open) return null;
    for (const ws of this.ctx.getWebSockets()) ws.close(CLOSE.reclaimed, reason.slice(0, 120));
    return await this.releaseAll("preempted");
  }

  /** What admins see of this agent. */
  async info() {
    const open = this.open();
    return open ? agentView(open.att) : { connected: false as const };
  }
}
