/**
 * API keys. A key names its account and its own id, so authentication goes straight to that
 * account's actor with no global lookup; only a SHA-256 hash of the whole key is ever stored.
 * Its last segment is a MAC by the edge's `KEY_SIGNING_KEY` over the rest, so the Worker refuses
 * a key it did not mint — a random or forged one — before any actor is asked or created.
 *
 *   fgk_<account>.<key id>.<secret>.<mac>     e.g. fgk_4f9c….k7d2….Zq3….Hk8…
 */
import { newSecret } from "./ids.ts";
import { sign, timingSafeEqual } from "./signing.ts";

export const API_KEY_PREFIX = "fgk_";
const KEY_RE = /^fgk_([0-9a-z]{16})\.([0-9a-z]{16})\.([A-Za-z0-9_-]{32})\.([A-Za-z0-9_-]{22})$/;
/**
 * Characters of the MAC: 22 of base64url, the first 132 bits of an HMAC-SHA256 (RFC 2104 §5
 * allows truncation to no less than half the hash).
 */
const MAC_CHARS = 22;

export interface ParsedKey {
  accountId: string;
  keyId: string;
}

function macMessage(body: string): string {
  return `apikey\n${body}`;
}

/**
 * Mints a new key for an account, with its MAC by `secret` (the edge's `KEY_SIGNING_KEY`); the
 * caller stores only {@link hashKey} of it.
 */
export async function newApiKey(secret: string, accountId: string, keyId: string): Promise<string> {
  const body = `${API_KEY_PREFIX}${accountId.slice(4)}.${keyId.slice(4)}.${newSecret(24)}`;
  return `${body}.${(await sign(secret, macMessage(body))).slice(0, MAC_CHARS)}`;
}

/**
 * Reads the account and key id out of a key, or `undefined` when it is not shaped like one.
 * The shape only: {@link verifyApiKey} also checks the MAC.
 */
export function parseApiKey(key: string): ParsedKey | undefined {
  const m = KEY_RE.exec(key);
  if (!m) return undefined;
  return { accountId: `acc_${m[1]}`, keyId: `key_${m[2]}` };
}

/**
 * The account and key id of a key the edge minted with `secret`, or `undefined` for a key that
 * is malformed or whose MAC does not match (random, forged, or from another deployment). Says
 * nothing of whether the key still exists: its account's actor knows that.
 */
export async function verifyApiKey(secret: string, key: string): Promise<ParsedKey | undefined> {
  const parsed = parseApiKey(key);
  if (!parsed) return undefined;
  const dot = key.lastIndexOf(".");
  const mac = (await sign(secret, macMessage(key.slice(0, dot)))).slice(0, MAC_CHARS);
  return timingSafeEqual(key.slice(dot + 1), mac) ? parsed : undefined;
}

/** SHA-256 of a secret, as lowercase hex. */
export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The stored form of a key. */
export const hashKey = sha256Hex;
