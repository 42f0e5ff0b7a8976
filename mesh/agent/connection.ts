/**
 * An agent's connection as its actor keeps it: the attachment each socket carries (so it
 * survives hibernation), who may take an agent id's connection over, and what admins see of it.
 * Pure: the actor (mesh/agent-actor.ts) applies what these decide.
 */
import type { GpuHealth, VersionState } from "../../shared/wire.ts";

/** Heartbeat interval the edge asks of agents (ms). */
export const HEARTBEAT_MS = 5_000;
/**
 * How often a connection's heartbeats ask the registry whether its token is still live (ms),
 * besides the first heartbeat: a connection that raced its token's revocation is closed then.
 */
export const TOKEN_CHECK_MS = 15_000;

/** What the Worker verified about the connecting agent. */
export interface AgentClaimsLite {
  token_id: string;
  pool: string;
  models: string[];
  exp: number;
}

/** Per-connection state, kept in the socket attachment (≤ 2 KiB) so it survives hibernation. */
export interface Attachment extends AgentClaimsLite {
  agent_id: string;
  /** The agent process behind this connection (its AGENT_INSTANCE_HEADER). */
  instance: string;
  /** Refused as a second live process with this id: closing, and deaf to what it sends. */
  refused: boolean;
  hello: boolean;
  name: string;
  slots: number;
  prefetch: number;
  /** Its machine may be taken back at short notice (its hello said so). */
  preemptible: boolean;
  /** The model versions on the agent and their states (its last hello or heartbeat's). */
  versions: VersionState[];
  gpus: GpuHealth[];
  /** Leases held, as of the last heartbeat. */
  running: number;
  last_heartbeat: number;
  connected_at: number;
  /** When the registry last said the token is live (ms); absent until the first heartbeat asks. */
  token_checked_at?: number;
  /** The signature of the last `agent.desired` sent (mesh/agent/desired.ts); absent before the first. */
  desired_sig?: string;
}

/**
 * A connection whose last heartbeat is this recent belongs to a live agent process: another
 * process presenting its id is refused (ms).
 */
export const LIVE_MS = 3 * HEARTBEAT_MS;

/**
 * A new connection's attachment, and whether it is refused: another process already speaking as
 * this id and alive (heartbeating within {@link LIVE_MS}) keeps it, so the newcomer is a clone
 * that must take a fresh id. The same process (a reconnect the edge has not noticed the end of)
 * or a silent one is taken over.
 */
export function admit(
  open: readonly Attachment[],
  claims: AgentClaimsLite,
  agentId: string,
  instance: string,
  now: number,
): Attachment {
  const refused = open.some((att) => att.instance !== instance && now - att.last_heartbeat < LIVE_MS);
  return {
    ...claims,
    agent_id: agentId,
    instance,
    refused,
    hello: false,
    name: agentId,
    slots: 0,
    prefetch: 0,
    preemptible: false,
    versions: [],
    gpus: [],
    running: 0,
    last_heartbeat: now,
    connected_at: now,
  };
}

/** What admins see of a connected agent. */
export function agentView(att: Attachment) {
  return {
    connected: true as const,
    agent_id: att.agent_id,
    name: att.name,
    pool: att.pool,
    models: att.models,
    versions: att.versions,
    slots: att.slots,
    prefetch: att.prefetch,
    preemptible: att.preemptible,
    gpus: att.gpus,
    running: att.running,
    last_heartbeat: new Date(att.last_heartbeat).toISOString(),
    connected_at: new Date(att.connected_at).toISOString(),
  };
}
