/**
 * A version's pieces from the swarm: peers first, the origin (the edge) for what no peer holds.
 * Called by ./fetch.ts for the pieces a version lacks in the cache, when the agent takes part in
 * swarms ({@link Swarm}); after the fetch the session stays, announcing and serving the version
 * (./peer-server.ts) until the agent stops.
 *
 * The session announces to the version's tracker (`POST /v1/agent/swarm/{model}/{version}`,
 * docs/protocol.md) every `interval_ms` and soon after each verified piece, and gets the peers'
 * bitfields, its place among the first agents and a swarm token. It asks each peer for up to
 * {@link PER_PEER} pieces at once, chosen by ./picker.ts (rarest first, endgame duplicates), and
 * the origin for the pieces of its place nobody holds. Every piece must hash to its name: one
 * that does not is discarded and its sender never asked again; the piece is fetched elsewhere.
 * Nothing from a peer is fatal; the origin's refusals are (as without peers).
 */
import { createHash } from "node:crypto";
import { AGENT_ID_HEADER } from "../../shared/wire.ts";
import { PIECE_BYTES, piecesOf, type VersionRecord } from "../../shared/repository.ts";
import { decodeBitfield, encodeBitfield, PEER_PIECE_PATH, SwarmAnswer, type SwarmPeer } from "../../shared/swarm.ts";
import { type ByteBucket, paced } from "./bucket.ts";
import type { EdgeAccess } from "./fetch.ts";
import type { PieceServer } from "./peer-server.ts";
import { ORIGIN, ORPHAN_MS, pickFromOrigin, pickFromPeer, type PeerView } from "./picker.ts";

/** Pieces asked of one peer at once. */
export const PER_PEER = 3;
/** Pieces asked of the origin at once while the agent splits it with others (alone: {@link ORIGIN_ALONE}). */
const ORIGIN_SHARED = 2;
const ORIGIN_ALONE = 4;
/** How often the fetch looks again without an event (ms): orphaned pieces, peers out of backoff. */
const TICK_MS = 250;
/** Shortest gap between two announces (ms). */
const MIN_ANNOUNCE_GAP_MS = 200;
/** Waits after a peer failed to answer (ms, doubling per failure in a row). */
const PEER_BACKOFF_MS = 500;
const PEER_BACKOFF_MAX_MS = 8_000;
/** A peer answering nothing for this long is given up on for this request (ms). */
const PEER_REQUEST_TIMEOUT_MS = 30_000;

/** How an agent takes part in swarms: `floodgate agent --peer-addr/--peer-port` and the rate limits. */
export interface SwarmOptions {
  /** Where peers reach this agent; absent: it only downloads. */
  addr?: string;
  /** The piece server that serves what this agent shares (with `addr`). */
  server?: PieceServer;
  /** `--max-download-mibps`, for peers and the origin together. */
  download?: ByteBucket;
}

/** What the origin and the cache do for the swarm fetch (./fetch.ts gives them). */
export interface PieceIo {
  /** The piece from the edge, verified; rejects with the fetch's failure. */
  fromOrigin: (sha: string, signal: AbortSignal) => Promise<Uint8Array>;
  /** Keeps a verified piece in the cache (atomically). */
  store: (sha: string, bytes: Uint8Array) => Promise<void>;
  /** Whether the cache holds the piece (another agent of the host may have written it). */
  held: (sha: string) => Promise<boolean>;
}

/** How a swarm fetch went. */
export interface SwarmStats {
  originBytes: number;
  peerBytes: number;
  /** Pieces from peers that did not hash to their name (discarded). */
  corrupt: number;
  /** Peers that sent one (never asked again). */
  badPeers: string[];
  /** Peers known at the last announce. */
  peers: number;
}

interface Peer extends PeerView {
  id: string;
  addr: string;
  have: boolean[];
  active: number;
  failures: number;
  backoffUntil: number;
}

class PieceRefused extends Error {}

/**
 * One version's session in its swarm: fetches what the version lacks, then keeps announcing
 * and serving it until {@link SwarmSession.stop}.
 */
export class SwarmSession {
  readonly stats: SwarmStats = { originBytes: 0, peerBytes: 0, corrupt: 0, badPeers: [], peers: 0 };
  private readonly edge: EdgeAccess;
  private readonly record: VersionRecord;
  private readonly opts: SwarmOptions;
  private readonly log: (line: string) => void;
  private readonly pieces: string[];
  private readonly index = new Map<string, number>();
  private readonly have: boolean[];
  private readonly peers = new Map<string, Peer>();
  private readonly inflight = new Map<number, Map<string, AbortController>>();
  private readonly orphanSince = new Map<number, number>();
  private split: { place?: number; fetchers: number; alone: boolean } = { fetchers: 0, alone: true };
  private token = "";
  private intervalMs = 1_000;
  private announcing = false;
  private announceAgain = false;
  private lastAnnounce = 0;
  private timer: NodeJS.Timeout | undefined;
  private ticker: NodeJS.Timeout | undefined;
  private stopped = false;
  private io: PieceIo | undefined;
  private finish: ((err?: unknown) => void) | undefined;
  private onPiece: ((bytes: number) => void) | undefined;
  private originActive = 0;
  /** Tracker answers heard: until the second, the origin is asked for one piece at a time. */
  private answers = 0;
  /** How long a piece nobody holds waits before this agent takes it anyway (ms). */
  private readonly orphanMs = ORPHAN_MS * (1 + Math.random());

  constructor(edge: EdgeAccess, record: VersionRecord, opts: SwarmOptions, log: (line: string) => void) {
    this.edge = edge;
    this.record = record;
    this.opts = opts;
    this.log = log;
    this.pieces = piecesOf(record.files);
    this.pieces.forEach((sha, i) => this.index.set(sha, i));
    this.have = this.pieces.map(() => false);
  }

  private get name(): string {
    return `${this.record.manifest.model}@${this.record.manifest.version}`;
  }

  /** Pieces held here, as a count. */
  get held(): number {
    return this.have.filter(Boolean).length;
  }

  /**
   * Fetches every piece not yet `held`, from peers and the origin; resolves once all are in the
   * cache, rejects with the origin's failure. `onPiece` hears each piece's bytes as it is kept.
   */
  async fetch(io: PieceIo, onPiece?: (bytes: number) => void): Promise<void> {
    this.io = io;
    this.onPiece = onPiece;
    for (let i = 0; i < this.pieces.length; i++) this.have[i] = await io.held(this.pieces[i]!);
    const done = new Promise<void>((resolve, reject) => {
      this.finish = (err) => (err === undefined ? resolve() : reject(err));
    });
    await this.announce();
    this.ticker = setInterval(() => this.schedule(), TICK_MS);
    this.ticker.unref();
    this.schedule();
    try {
      await done;
    } finally {
      clearInterval(this.ticker);
      this.ticker = undefined;
      for (const copies of this.inflight.values()) for (const c of copies.values()) c.abort();
      this.inflight.clear();
    }
    void this.announce();
  }

  /** Stays in the swarm holding every piece (a version found whole in the cache). */
  seed(): void {
    this.have.fill(true);
    void this.announce();
  }

  /** Leaves the swarm: no more announces, and the tracker is told (best effort). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.ticker);
    this.finish?.(new PieceRefused(`${this.name}: the swarm fetch was stopped`));
    this.opts.server?.unshare(this.record.manifest.model, this.record.manifest.version);
    await this.post("stopped").catch(() => undefined);
  }

  private async post(event: "update" | "stopped"): Promise<SwarmAnswer | undefined> {
    const { model, version } = this.record.manifest;
    const doFetch = this.edge.fetch ?? fetch;
    const res = await doFetch(
      `${this.edge.baseUrl}/v1/agent/swarm/${encodeURIComponent(model)}/${encodeURIComponent(version)}`,
      {
        method: "POST",
        headers: {
          authorization: `Bearer ${this.edge.token}`,
          [AGENT_ID_HEADER]: this.edge.agentId(),
          "content-type": "application/json",
        },
        body: JSON.stringify({
          digest: this.record.digest,
          have: encodeBitfield(this.have),
          fetching: encodeBitfield(this.pieces.map((_, i) => this.inflight.get(i)?.has(ORIGIN) === true)),
          event,
          ...(this.opts.addr === undefined ? {} : { addr: this.opts.addr }),
        }),
        signal: AbortSignal.timeout(10_000),
      },
    );
    const body: unknown = await res.json().catch(() => undefined);
    if (!res.ok) {
      throw new Error(`the tracker answered ${res.status} ${JSON.stringify(body).slice(0, 200)}`);
    }
    const parsed = SwarmAnswer.safeParse(body);
    if (!parsed.success) throw new Error("the tracker's answer is malformed");
    return parsed.data;
  }

  /** Announces now, or right after the announce in flight; then again after the interval. */
  private async announce(): Promise<void> {
    if (this.stopped) return;
    if (this.announcing) {
      this.announceAgain = true;
      return;
    }
    this.announcing = true;
    clearTimeout(this.timer);
    try {
      this.lastAnnounce = Date.now();
      const answer = await this.post("update");
      if (answer) this.heard(answer);
    } catch (err) {
      // A tracker never heard is no swarm: the origin serves everything, as without peers. One
      // heard before still stands for what it said last.
      if (this.answers === 0) {
        this.log(`${this.name}: announce failed (${(err as Error).message}); fetching from the origin meanwhile`);
        this.split = { fetchers: 0, alone: true };
        this.answers = 2;
      } else {
        this.log(`${this.name}: announce failed (${(err as Error).message}); trying again`);
      }
    } finally {
      this.announcing = false;
    }
    if (this.stopped) return;
    if (this.announceAgain) {
      this.announceAgain = false;
      this.announceSoon();
    } else {
      // The second announce comes soon: agents that joined together see each other's places
      // and origin fetches before taking more than one piece each from the origin.
      this.timer = setTimeout(() => void this.announce(), this.answers === 1 ? MIN_ANNOUNCE_GAP_MS : this.intervalMs);
      this.timer.unref();
    }
    this.schedule();
  }

  private announceSoon(): void {
    if (this.stopped) return;
    const wait = this.lastAnnounce + MIN_ANNOUNCE_GAP_MS - Date.now();
    if (wait <= 0) {
      void this.announce();
      return;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.announce(), wait);
    this.timer.unref();
  }

  private heard(a: SwarmAnswer): void {
    this.answers += 1;
    this.token = a.token;
    this.intervalMs = a.interval_ms;
    this.split = {
      ...(a.place === undefined ? {} : { place: a.place }),
      fetchers: a.fetchers,
      alone: a.fetchers <= 1 && a.peers.length === 0,
    };
    if (this.opts.server && this.opts.addr !== undefined) {
      const { model, version } = this.record.manifest;
      this.opts.server.share({
        model,
        version,
        digest: this.record.digest,
        pieces: new Set(this.pieces),
        keys: a.keys,
      });
    }
    const seen = new Set<string>();
    for (const p of a.peers) {
      seen.add(p.agent_id);
      this.updatePeer(p);
    }
    // A peer the tracker no longer lists is gone, unless a request to it is still running.
    for (const [id, p] of this.peers) if (!seen.has(id) && !p.bad && p.active === 0) this.peers.delete(id);
    this.stats.peers = this.peers.size;
  }

  private updatePeer(p: SwarmPeer): void {
    const have = decodeBitfield(p.have, this.pieces.length);
    if (!have) return;
    const known = this.peers.get(p.agent_id);
    if (known) {
      known.addr = p.addr;
      known.have = have;
    } else {
      this.peers.set(p.agent_id, {
        id: p.agent_id,
        addr: p.addr,
        have,
        bad: false,
        active: 0,
        failures: 0,
        backoffUntil: 0,
      });
    }
  }

  private state() {
    const inflight = new Map<number, Set<string>>();
    for (const [i, copies] of this.inflight) inflight.set(i, new Set(copies.keys()));
    return { have: this.have, inflight, peers: this.peers };
  }

  /** Starts what can start now: requests to idle peers, and to the origin. */
  private schedule(): void {
    if (!this.io || !this.finish || this.stopped) return;
    if (this.have.every(Boolean)) {
      const f = this.finish;
      this.finish = undefined;
      f();
      return;
    }
    const now = Date.now();
    let s = this.state();
    for (let i = 0; i < this.pieces.length; i++) {
      const orphan = !this.have[i] && ![...this.peers.values()].some((p) => !p.bad && (p.have[i] || p.fetching?.[i]));
      if (!orphan) this.orphanSince.delete(i);
      else if (!this.orphanSince.has(i)) this.orphanSince.set(i, now);
    }
    for (const peer of this.peers.values()) {
      while (!peer.bad && peer.active < PER_PEER && peer.backoffUntil <= now && this.token !== "") {
        const piece = pickFromPeer(s, peer.id);
        if (piece === undefined) break;
        this.start(piece, peer.id, (signal) => this.fromPeer(peer, piece, signal));
        s = this.state();
      }
    }
    const limit = this.answers < 2 ? 1 : this.split.alone ? ORIGIN_ALONE : ORIGIN_SHARED;
    while (this.originActive < limit) {
      const piece = pickFromOrigin(s, this.split, this.orphanSince, now, this.orphanMs);
      if (piece === undefined) break;
      this.originActive += 1;
      this.start(piece, ORIGIN, async (signal) => {
        try {
          const bytes = await this.io!.fromOrigin(this.pieces[piece]!, signal);
          this.stats.originBytes += bytes.length;
          return bytes;
        } finally {
          this.originActive -= 1;
        }
      });
      s = this.state();
      // Others leave a piece to whoever says it is fetching it from the origin.
      this.announceSoon();
    }
  }

  private start(piece: number, source: string, get: (signal: AbortSignal) => Promise<Uint8Array>): void {
    const ctl = new AbortController();
    let copies = this.inflight.get(piece);
    if (!copies) this.inflight.set(piece, (copies = new Map()));
    copies.set(source, ctl);
    const fail = (err: unknown): void => {
      const f = this.finish;
      this.finish = undefined;
      f?.(err);
    };
    void get(ctl.signal)
      .then(
        async (bytes) => {
          if (this.have[piece] || this.stopped) return;
          await this.io!.store(this.pieces[piece]!, bytes);
          this.have[piece] = true;
          for (const [other, c] of this.inflight.get(piece) ?? []) if (other !== source) c.abort();
          this.inflight.delete(piece);
          this.onPiece?.(bytes.length);
          this.announceSoon();
        },
        (err: unknown) => {
          // The origin's failures end the fetch, as without peers; a peer's never do.
          if (source === ORIGIN && !ctl.signal.aborted) fail(err);
        },
      )
      // The cache could not keep the piece (a full disk): the fetch fails, to be tried again.
      .catch(fail)
      .finally(() => {
        this.inflight.get(piece)?.delete(source);
        if (this.inflight.get(piece)?.size === 0) this.inflight.delete(piece);
        this.schedule();
      });
  }

  /** One piece from a peer, verified; a corrupt one marks the peer bad. */
  private async fromPeer(peer: Peer, piece: number, signal: AbortSignal): Promise<Uint8Array> {
    const sha = this.pieces[piece]!;
    const { model, version } = this.record.manifest;
    peer.active += 1;
    try {
      const res = await fetch(
        `http://${peer.addr}${PEER_PIECE_PATH}/${sha}?model=${encodeURIComponent(model)}&version=${encodeURIComponent(version)}`,
        {
          headers: { authorization: `Bearer ${this.token}` },
          signal: AbortSignal.any([signal, AbortSignal.timeout(PEER_REQUEST_TIMEOUT_MS)]),
        },
      );
      if (res.status === 404) {
        // Its bitfield was stale: it does not hold this piece (yet).
        await res.body?.cancel();
        peer.have[piece] = false;
        throw new PieceRefused(`${peer.id} does not hold piece ${piece}`);
      }
      if (!res.ok) {
        await res.body?.cancel();
        throw new Error(`${peer.id} answered ${res.status}`);
      }
      const hash = createHash("sha256");
      const chunks: Uint8Array[] = [];
      let size = 0;
      for await (const chunk of paced(this.opts.download, res.body ?? new ReadableStream<Uint8Array>())) {
        size += chunk.length;
        if (size > PIECE_BYTES) break;
        hash.update(chunk);
        chunks.push(chunk);
      }
      const got = hash.digest("hex");
      if (size > PIECE_BYTES || got !== sha) {
        peer.bad = true;
        this.stats.corrupt += 1;
        this.stats.badPeers.push(peer.id);
        this.log(
          `${this.name}: piece ${sha} from peer ${peer.id} (${peer.addr}) ${size > PIECE_BYTES ? "is larger than a piece" : `hashes to ${got}`}: discarded, and that peer is not asked again`,
        );
        throw new PieceRefused("corrupt");
      }
      peer.failures = 0;
      this.stats.peerBytes += size;
      return Buffer.concat(chunks, size);
    } catch (err) {
      if (!(err instanceof PieceRefused) && !signal.aborted) {
        peer.failures += 1;
        peer.backoffUntil = Date.now() + Math.min(PEER_BACKOFF_MAX_MS, PEER_BACKOFF_MS * 2 ** (peer.failures - 1));
      }
      throw err;
    } finally {
      peer.active -= 1;
    }
  }
}

/** The swarm sessions of one agent, one per version it fetched or serves. */
export class Swarm {
  readonly opts: SwarmOptions;
  private readonly sessions = new Map<string, SwarmSession>();

  constructor(opts: SwarmOptions) {
    this.opts = opts;
  }

  /** The session of `record`'s version, made on first use. */
  session(edge: EdgeAccess, record: VersionRecord, log: (line: string) => void): SwarmSession {
    const key = `${record.manifest.model}@${record.manifest.version}`;
    let s = this.sessions.get(key);
    if (!s) {
      s = new SwarmSession(edge, record, this.opts, log);
      this.sessions.set(key, s);
    }
    return s;
  }

  /** Leaves every swarm and closes the piece server. */
  async close(): Promise<void> {
    await Promise.all([...this.sessions.values()].map((s) => s.stop()));
    this.sessions.clear();
    await this.opts.server?.close();
  }
}
