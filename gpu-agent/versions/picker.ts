/**
 * Which piece to ask for next, and from whom: the swarm fetch's decisions (./swarm.ts), pure so
 * they are tested exhaustively in plain Node.
 *
 * - From a peer: the rarest piece it holds that this agent lacks and nobody is fetching (fewest
 *   holders among the peers, ties broken at random so agents spread out). In the endgame, when
 *   every missing piece is already being fetched, a piece in flight from elsewhere may be asked
 *   of this peer too (the first copy verified wins, the others are cancelled), at most
 *   {@link ENDGAME_COPIES} at once.
 * - From the origin: only pieces no peer holds, nor fetches from the origin, and this agent
 *   is not fetching. A serving agent has a
 *   place among the serving agents (the tracker's order of joining): piece `i` is its to
 *   take when `i mod fetchers` is its place, so the first agents take about one copy from the
 *   origin between them. A piece nobody held for {@link ORPHAN_MS} is taken by anyone (its
 *   taker died or is slow); an agent alone, or the tracker unreachable, takes them all.
 */

/** Copies of one piece in flight at once in the endgame. */
export const ENDGAME_COPIES = 2;
/**
 * A piece no peer has held for this long is taken from the origin by whoever lacks it (ms). The
 * swarm session adds up to as much again at random, so agents that lost the same peer do not all
 * take its pieces at once (the tracker's new places give them an owner before that, as a rule).
 */
export const ORPHAN_MS = 8_000;

export interface PeerView {
  have: readonly boolean[];
  /** What it fetches from the origin now: coming, so not taken from the origin again. */
  fetching?: readonly boolean[];
  /** The peer sent a piece that did not hash to its name: never asked again. */
  bad: boolean;
}

export interface PickState {
  /** Pieces verified here. */
  have: readonly boolean[];
  /** Sources each piece is being fetched from now (`origin` or a peer's id). */
  inflight: ReadonlyMap<number, ReadonlySet<string>>;
  peers: ReadonlyMap<string, PeerView>;
}

export const ORIGIN = "origin";

/** Whether a peer (not a bad one) is fetching the piece from the origin now. */
function coming(s: PickState, piece: number): boolean {
  for (const p of s.peers.values()) if (!p.bad && p.fetching?.[piece]) return true;
  return false;
}

function holders(s: PickState, piece: number): number {
  let n = 0;
  for (const p of s.peers.values()) if (!p.bad && p.have[piece]) n++;
  return n;
}

/**
 * The piece to ask `peerId` for, or undefined when it holds nothing useful now.
 *
 * @example
 * const piece = pickFromPeer(state, "agt_1");
 */
export function pickFromPeer(s: PickState, peerId: string, random: () => number = Math.random): number | undefined {
  const peer = s.peers.get(peerId);
  if (!peer || peer.bad) return undefined;
  let best: number | undefined;
  let bestRarity = Infinity;
  let bestTie = 0;
  let endgame = true;
  for (let i = 0; i < s.have.length; i++) {
    if (s.have[i]) continue;
    const flying = s.inflight.get(i);
    if (!flying || flying.size === 0) endgame = false;
    if (!peer.have[i] || (flying && flying.size > 0)) continue;
    const rarity = holders(s, i);
    const tie = random();
    if (rarity < bestRarity || (rarity === bestRarity && tie < bestTie)) {
      best = i;
      bestRarity = rarity;
      bestTie = tie;
    }
  }
  if (best !== undefined || !endgame) return best;
  // Endgame: every missing piece is in flight; the one with the fewest copies in flight that
  // this peer holds and is not already sending.
  let fewest = ENDGAME_COPIES;
  for (let i = 0; i < s.have.length; i++) {
    const flying = s.inflight.get(i);
    if (s.have[i] || !peer.have[i] || !flying || flying.has(peerId)) continue;
    if (flying.size < fewest) {
      best = i;
      fewest = flying.size;
    }
  }
  return best;
}

/**
 * The piece to take from the origin now, or undefined. `place`/`fetchers` are the tracker's
 * (absent place: this agent takes nothing for others); `orphanSince` says since when each piece
 * has had no holder among the peers (ms, on the caller's clock).
 */
export function pickFromOrigin(
  s: PickState,
  split: { place?: number; fetchers: number; alone: boolean },
  orphanSince: ReadonlyMap<number, number>,
  now: number,
  orphanMs: number = ORPHAN_MS,
): number | undefined {
  let orphan: number | undefined;
  for (let i = 0; i < s.have.length; i++) {
    if (s.have[i] || (s.inflight.get(i)?.size ?? 0) > 0 || holders(s, i) > 0 || coming(s, i)) continue;
    if (split.alone) return i;
    if (split.place !== undefined && split.fetchers > 0 && i % split.fetchers === split.place) return i;
    const since = orphanSince.get(i);
    if (orphan === undefined && since !== undefined && now - since >= orphanMs) orphan = i;
  }
  return orphan;
}
