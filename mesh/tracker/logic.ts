/**
 * A version's swarm as its tracker keeps it (mesh/tracker-actor.ts): who is in it, where peers
 * reach them, and which pieces each holds (a bitfield). Pure: the actor passes the clock in.
 *
 * The tracker makes no per-piece decision: it answers peers and bitfields, and each agent's place
 * among the serving agents (in the order they joined), from which the agents
 * themselves split what they take from the origin. Soft state: a member not heard from for
 * {@link MEMBER_TTL_MS} ({@link FETCHING_TTL_MS} while it fetches) is gone, and a tracker that lost its memory has it back once every agent
 * announced again (within one {@link FETCHING_INTERVAL_MS} for those fetching).
 */
import { MAX_SWARM_PEERS, type SwarmPeer } from "../../shared/swarm.ts";

/** Announce interval while an agent still fetches (ms): agents also announce when a piece is verified. */
export const FETCHING_INTERVAL_MS = 1_000;
/** Announce interval of an agent holding every piece (ms). */
export const COMPLETE_INTERVAL_MS = 10_000;
/** A member holding everything not heard from for this long has left (ms): three of its intervals. */
export const MEMBER_TTL_MS = 3 * COMPLETE_INTERVAL_MS;
/**
 * A member still fetching not heard from for this long has left (ms): the pieces it would have
 * taken from the origin pass to the others' places within seconds of its death.
 */
export const FETCHING_TTL_MS = 4 * FETCHING_INTERVAL_MS;

export interface Member {
  agentId: string;
  addr?: string;
  /** Its bitfield as announced (base64url). */
  have: string;
  /** What it fetches from the origin now (base64url), when it said. */
  fetching?: string;
  complete: boolean;
  joinedAt: number;
  seenAt: number;
}

export interface Announced {
  peers: SwarmPeer[];
  place?: number;
  fetchers: number;
  interval_ms: number;
}

export class Swarm {
  private readonly members = new Map<string, Member>();
  /** Joins counted so far: ties of the clock keep the order agents joined in. */
  private joins = 0;

  /**
   * Records an announce and answers the peers, the asker's place and its interval. A `stopped`
   * announce removes the member and answers no peers.
   *
   * @example
   * const a = swarm.announce("agt_1", { addr: "10.0.0.1:7000", have: "AA", complete: false }, Date.now());
   */
  announce(
    agentId: string,
    a: { addr?: string; have: string; fetching?: string; complete: boolean; stopped?: boolean },
    now: number,
    random: () => number = Math.random,
  ): Announced {
    this.expire(now);
    if (a.stopped) {
      this.members.delete(agentId);
      return { peers: [], fetchers: this.fetchers().length, interval_ms: COMPLETE_INTERVAL_MS };
    }
    const known = this.members.get(agentId);
    const joinedAt = known?.joinedAt ?? now * 1_000 + (this.joins++ % 1_000);
    this.members.set(agentId, {
      agentId,
      ...(a.addr === undefined ? {} : { addr: a.addr }),
      have: a.have,
      ...(a.fetching === undefined ? {} : { fetching: a.fetching }),
      complete: a.complete,
      joinedAt,
      seenAt: now,
    });
    const serving = [...this.members.values()].filter((m) => m.addr !== undefined && m.agentId !== agentId);
    // Beyond the cap, a random sample: every asker sees a different part of a large swarm.
    for (let i = serving.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [serving[i], serving[j]] = [serving[j]!, serving[i]!];
    }
    const peers = serving.slice(0, MAX_SWARM_PEERS).map((m) => ({
      agent_id: m.agentId,
      addr: m.addr!,
      have: m.have,
      ...(m.fetching === undefined ? {} : { fetching: m.fetching }),
    }));
    const fetchers = this.fetchers();
    const place = fetchers.findIndex((m) => m.agentId === agentId);
    return {
      peers,
      ...(place >= 0 ? { place } : {}),
      fetchers: fetchers.length,
      interval_ms: a.complete ? COMPLETE_INTERVAL_MS : FETCHING_INTERVAL_MS,
    };
  }

  /** Members now (for inspection and tests). */
  list(): Member[] {
    return [...this.members.values()];
  }

  /** Forgets everyone (the version was purged). */
  clear(): void {
    this.members.clear();
  }

  /**
   * Serving members, in the order they joined. One holding everything keeps its place: places
   * move only when members join or leave, so agents whose answers are a moment apart agree on
   * who takes which piece from the origin (a complete member's share is held already).
   */
  private fetchers(): Member[] {
    return [...this.members.values()].filter((m) => m.addr !== undefined).sort((x, y) => x.joinedAt - y.joinedAt);
  }

  private expire(now: number): void {
    for (const [id, m] of this.members) {
      if (now - m.seenAt > (m.complete ? MEMBER_TTL_MS : FETCHING_TTL_MS)) this.members.delete(id);
    }
  }
}
