/**
 * The weights swarm's contracts: how an agent announces what it holds of a version to the
 * version's tracker (`POST /v1/agent/swarm/{model}/{version}`), what the tracker answers (peers
 * with their bitfields, the agent's place among the first agents, a swarm token), and the swarm
 * token itself, which peers check before serving a piece. Imported by the edge, the tracker
 * actor and the agent; docs/protocol.md ("Weights peer to peer") describes the exchange.
 *
 * A bitfield covers a version's distinct pieces in first-use order ({@link piecesOf}): bit `i`
 * (most significant bit first, as BitTorrent) is set when the agent holds piece `i`, verified.
 * On the wire it is base64url without padding.
 */
import { z } from "zod";
import { Sha256 } from "./repository.ts";

/** Where peers reach an agent's piece server: `HOST:PORT` (a name, IPv4, or `[IPv6]`). */
export const PeerAddr = z
  .string()
  .max(262)
  .regex(
    /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?):(?:[1-9]\d{0,4})$/,
    "a peer address is HOST:PORT",
  )
  .refine((a) => Number(a.slice(a.lastIndexOf(":") + 1)) <= 65535, "a port is at most 65535");
export type PeerAddr = z.infer<typeof PeerAddr>;

/** A bitfield on the wire: base64url, no padding (the tracker checks its length against the version). */
export const Bitfield = z
  .string()
  .max(200_000)
  .regex(/^[A-Za-z0-9_-]*$/, "a bitfield is base64url without padding");

/** What an agent tells a version's tracker. */
export const SwarmAnnounce = z.strictObject({
  /** The version's digest as the agent was told it: an announce for another digest is refused. */
  digest: Sha256,
  /** Where peers reach this agent's piece server; absent: the agent only downloads. */
  addr: PeerAddr.optional(),
  /** The pieces it holds, verified. */
  have: Bitfield,
  /**
   * The pieces it is fetching from the origin now: others leave them to it and fetch them from
   * it once it holds them (absent: none).
   */
  fetching: Bitfield.optional(),
  /** `stopped`: it leaves the swarm (it stops serving the version, or shuts down). */
  event: z.enum(["update", "stopped"]).default("update"),
});
export type SwarmAnnounce = z.input<typeof SwarmAnnounce>;

/** A peer in the tracker's answer. */
export const SwarmPeer = z.object({
  agent_id: z.string(),
  addr: PeerAddr,
  have: Bitfield,
  /** What it is fetching from the origin now, when it said. */
  fetching: Bitfield.optional(),
});
export type SwarmPeer = z.infer<typeof SwarmPeer>;

/** A public key that verifies swarm tokens (an Ed25519 JWK without its private part). */
export const SwarmKey = z.looseObject({
  kid: z.string().min(1),
  kty: z.literal("OKP"),
  crv: z.literal("Ed25519"),
  x: z.string(),
});
export type SwarmKey = z.infer<typeof SwarmKey>;

/** The tracker's answer to an announce. */
export const SwarmAnswer = z.object({
  /** Peers that serve pieces (never the asker), at most {@link MAX_SWARM_PEERS}. */
  peers: z.array(SwarmPeer),
  /**
   * The asker's place among the serving agents of the swarm, in the order they joined (0 =
   * first), and how many those are: they split the pieces nobody holds so the origin sends about
   * one copy (piece `i` is taken from the origin by the place `i mod fetchers`; an agent holding
   * everything keeps its place, its share being held already). Absent when the asker serves
   * nothing (no `addr`).
   */
  place: z.number().int().min(0).optional(),
  fetchers: z.number().int().min(0),
  /** Lets its bearer fetch this version's pieces from peers, until it expires. */
  token: z.string(),
  /** When the token expires (Unix seconds). */
  token_exp: z.number().int(),
  /** The keys that verify the swarm tokens of peers (a piece server checks a token with one of them). */
  keys: z.array(SwarmKey).min(1),
  /** Announce again within this long (ms), sooner when a piece is verified. */
  interval_ms: z.number().int().min(100),
});
export type SwarmAnswer = z.infer<typeof SwarmAnswer>;

/** Peers a tracker answers at most. */
export const MAX_SWARM_PEERS = 64;
/** Lifetime of a swarm token (s): an agent announces far more often, and gets a fresh one each time. */
export const SWARM_TOKEN_TTL_S = 600;
export const SWARM_TOKEN_AUDIENCE = "floodgate.swarm";
export const SWARM_TOKEN_TYPE = "floodgate-swarm+jwt";

/** What a swarm token says: this agent may fetch pieces of this one version. */
export const SwarmClaims = z.object({
  iss: z.literal("floodgate"),
  aud: z.literal(SWARM_TOKEN_AUDIENCE),
  /** The agent's id. */
  sub: z.string().min(1),
  model: z.string(),
  version: z.string(),
  digest: Sha256,
  exp: z.number().int(),
  nbf: z.number().int(),
  iat: z.number().int(),
});
export type SwarmClaims = z.infer<typeof SwarmClaims>;

/**
 * A piece server's route: `GET /v1/pieces/{sha256}?model=&version=` with `Authorization: Bearer
 * <swarm token>` answers the piece's bytes.
 */
export const PEER_PIECE_PATH = "/v1/pieces";

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** Encodes a bitfield of `bits.length` pieces as base64url (MSB first, no padding). */
export function encodeBitfield(bits: ArrayLike<boolean>): string {
  const bytes = new Uint8Array(Math.ceil(bits.length / 8));
  for (let i = 0; i < bits.length; i++) if (bits[i]) bytes[i >> 3]! |= 0x80 >> (i & 7);
  let out = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    const chars = Math.min(4, Math.ceil(((bytes.length - i) * 8) / 6));
    for (let c = 0; c < chars; c++) out += B64[(n >> (18 - 6 * c)) & 63];
  }
  return out;
}

/**
 * Decodes a bitfield of `count` pieces, or undefined when it is not exactly that long (its
 * byte length is `ceil(count / 8)`) or sets a bit past the last piece.
 */
export function decodeBitfield(text: string, count: number): boolean[] | undefined {
  const byteLength = Math.ceil(count / 8);
  if (text.length !== Math.ceil((byteLength * 8) / 6)) return undefined;
  const bytes = new Uint8Array(byteLength);
  let bits = 0;
  let acc = 0;
  let at = 0;
  for (const ch of text) {
    const v = B64.indexOf(ch);
    if (v < 0) return undefined;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (at < byteLength) bytes[at++] = (acc >> bits) & 0xff;
      acc &= (1 << bits) - 1;
    }
  }
  if (acc !== 0) return undefined;
  const out: boolean[] = [];
  for (let i = 0; i < byteLength * 8; i++) {
    const set = (bytes[i >> 3]! & (0x80 >> (i & 7))) !== 0;
    if (i >= count) {
      if (set) return undefined;
    } else out.push(set);
  }
  return out;
}
