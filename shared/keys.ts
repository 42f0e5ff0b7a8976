/**
 * API keys. A key names its account and its own id, so authentication goes straight to that
 * account's actor with no global lookup; only a SHA-256 hash of the whole key is ever stored.
 *
 *   fgk_<account>.<key id>.<secret>     e.g. fgk_4f9c….k7d2….Zq3…
 */
import { newSecret } from "./ids.ts";

export const API_KEY_PREFIX = "fgk_";
const KEY_RE = /^fgk_([0-9a-z]{16})\.([0-9a-z]{16})\.([A-Za-z0-9_-]{32})$/;

export interface ParsedKey {
  accountId: string;
  keyId: string;
}

/** Mints a new key for an account; the caller stores only {@link hashKey} of it. */
export function newApiKey(accountId: string, keyId: string): string {
  return `${API_KEY_PREFIX}${accountId.slice(4)}.${keyId.slice(4)}.${newSecret(24)}`;
}

/** Reads the account and key id out of a key, or `undefined` when it is not shaped like one. */
export function parseApiKey(key: string): ParsedKey | undefined {
  const m = KEY_RE.exec(key);
  if (!m) return undefined;
  return { accountId: `acc_${m[1]}`, keyId: `key_${m[2]}` };
}

/** SHA-256 of a secret, as lowercase hex. */
export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The stored form of a key. */
export const hashKey = sha256Hex;

/** Compares two strings in time independent of where they differ. */
export function timingSafeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}
