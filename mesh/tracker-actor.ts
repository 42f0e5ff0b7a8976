/**
 * TrackerActor: one per model version (named `<model>@<version>`), the version's swarm tracker.
 * It keeps who is in the swarm, where peers reach them and a bitfield per agent (./tracker/logic.ts),
 * and answers announces with peers; no weight bytes pass through it, and it decides nothing per
 * piece. Called by the edge's swarm route (edge/routes/swarm.ts), which checks the agent's token
 * and the version before asking, and signs the swarm token itself.
 *
 * Its state is soft and in memory only: agents announce every second while fetching, so a tracker
 * evicted or restarted knows its swarm again within one interval; nothing is written to storage.
 * What it knows of the version (its digest and piece count) the edge tells it once
 * ({@link TrackerActor.describe}), so an announce costs no read of the version's record.
 */
import { DurableObject } from "cloudflare:workers";
import { fail, type Failure } from "../shared/errors.ts";
import { decodeBitfield } from "../shared/swarm.ts";
import { type Announced, type Member, Swarm } from "./tracker/logic.ts";

/** The tracker's name for a version. */
export function trackerName(model: string, version: string): string {
  return `${model}@${version}`;
}

export type AnnounceOutcome = ({ ok: true } & Announced) | { ok: false; unknown: true } | Failure;

export class TrackerActor extends DurableObject<Env> {
  private readonly swarm = new Swarm();
  private version: { digest: string; pieces: number } | undefined;

  /** What the tracker must know of its version before an announce: its digest and distinct pieces. */
  describe(digest: string, pieces: number): void {
    this.version = { digest, pieces };
  }

  /**
   * Records what `agentId` holds and answers its peers, or `unknown` when the edge has not
   * described the version yet (it does so and asks again).
   */
  announce(
    agentId: string,
    a: { digest: string; addr?: string; have: string; fetching?: string; event: "update" | "stopped" },
  ): AnnounceOutcome {
    const v = this.version;
    if (!v) return { ok: false, unknown: true };
    if (a.digest !== v.digest) {
      return fail("version_not_found", `this version has digest ${v.digest}, not ${a.digest}`);
    }
    const bits = decodeBitfield(a.have, v.pieces);
    if (!bits) {
      return fail(
        "invalid_body",
        `have: a bitfield of ${v.pieces} piece(s) is ${Math.ceil((Math.ceil(v.pieces / 8) * 8) / 6)} base64url characters with no bit past the last piece`,
      );
    }
    if (a.fetching !== undefined && !decodeBitfield(a.fetching, v.pieces)) {
      return fail("invalid_body", `fetching: a bitfield of ${v.pieces} piece(s), like have`);
    }
    const out = this.swarm.announce(
      agentId,
      {
        ...(a.addr === undefined ? {} : { addr: a.addr }),
        ...(a.fetching === undefined ? {} : { fetching: a.fetching }),
        have: a.have,
        complete: bits.every(Boolean),
        stopped: a.event === "stopped",
      },
      Date.now(),
    );
    return { ok: true, ...out };
  }

  /** The swarm's members (admin listings and tests). */
  members(): Member[] {
    return this.swarm.list();
  }
}
