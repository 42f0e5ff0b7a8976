/**
 * HMAC-SHA256 signatures (Web Crypto, available to the Worker and Node alike) for the URLs,
 * tokens and receipts the edge hands out: output files, previews, job stream tokens, output
 * receipts and the MAC of API keys (shared/keys.ts). Each kind signs its own labelled message,
 * so a signature of one kind is never valid as another. Signatures are base64url; comparisons
 * are constant-time.
 */
import { FloodgateError } from "./errors.ts";

/** Compares two strings in time independent of where they differ. */
export function timingSafeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

const keys = new Map<string, CryptoKey>();

async function hmacKey(secret: string): Promise<CryptoKey> {
  let k = keys.get(secret);
  if (!k) {
    k = await crypto.subtle.importKey(
      "raw",
      new TextEncoder().encode(secret),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    keys.set(secret, k);
  }
  return k;
}

function b64url(bytes: ArrayBuffer): string {
  let s = "";
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replaceAll("+", "-").replaceAll("/", "_").replaceAll("=", "");
}

/** Signs `message` with `secret`. */
export async function sign(secret: string, message: string): Promise<string> {
  return b64url(await crypto.subtle.sign("HMAC", await hmacKey(secret), new TextEncoder().encode(message)));
}

/** Whether `signature` is `message` signed with `secret`. */
export async function verify(secret: string, message: string, signature: string): Promise<boolean> {
  return timingSafeEqual(signature, await sign(secret, message));
}

/**
 * The origin signed URLs start with: the configured public URL's (`PUBLIC_URL`), never the
 * request's `Host`, which any caller sets. With none configured it is `""`, and URLs are
 * relative to the API (`/v1/files/…`), resolved by clients against the URL they called.
 */
export function publicOrigin(configured: string | undefined): string {
  const value = configured?.trim() ?? "";
  if (value === "") return "";
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== "https:" && url.protocol !== "http:")) {
    throw new FloodgateError("unavailable", "the edge's PUBLIC_URL is not an http(s) URL");
  }
  return url.origin;
}

/** Lifetime of a signed output or preview URL (s). */
export const URL_TTL_S = 3600;

/** A signed, expiring URL for an output key. */
export async function signedOutputUrl(secret: string, origin: string, key: string, ttlS = URL_TTL_S): Promise<string> {
  const exp = Math.floor(Date.now() / 1000) + ttlS;
  return `${origin}/v1/files/${key}?exp=${exp}&sig=${await sign(secret, `file\n${key}\n${exp}`)}`;
}

/** A signed, expiring URL for a job's latest preview frame. */
export async function signedPreviewUrl(
  secret: string,
  origin: string,
  jobId: string,
  ttlS = URL_TTL_S,
): Promise<string> {
  const exp = Math.floor(Date.now() / 1000) + ttlS;
  return `${origin}/v1/jobs/${jobId}/preview?exp=${exp}&sig=${await sign(secret, `preview\n${jobId}\n${exp}`)}`;
}

/** Lifetime of a job stream token (s). */
export const STREAM_TOKEN_TTL_S = 600;

/** What a stream token is good for: one job of one account, while the key that minted it lives. */
export interface StreamClaims {
  jobId: string;
  accountId: string;
  /** The API key that minted the token: revoking it ends the token too. */
  keyId: string;
}

/**
 * A token that lets its bearer read one job's events (`?token=`), for browsers:
 * `fgs.<job id>.<account id>.<key id>.<exp>.<signature>`.
 */
export async function streamToken(
  secret: string,
  claims: StreamClaims,
  ttlS = STREAM_TOKEN_TTL_S,
): Promise<{ token: string; exp: number }> {
  const exp = Math.floor(Date.now() / 1000) + ttlS;
  const body = `${claims.jobId}.${claims.accountId}.${claims.keyId}.${exp}`;
  return { token: `fgs.${body}.${await sign(secret, `stream\n${body}`)}`, exp };
}

/**
 * The job, account and minting key a stream token is good for, or undefined when it is bad or
 * expired. Whether the key is still live is for the caller to ask.
 */
export async function readStreamToken(secret: string, token: string): Promise<StreamClaims | undefined> {
  const m = /^fgs\.(job_[0-9a-z]{30})\.(acc_[0-9a-z]{16})\.(key_[0-9a-z]{16})\.(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(
    token,
  );
  if (!m) return undefined;
  const [, jobId, accountId, keyId, exp, sig] = m as unknown as [string, string, string, string, string, string];
  if (Number(exp) < Date.now() / 1000) return undefined;
  if (!(await verify(secret, `stream\n${jobId}.${accountId}.${keyId}.${exp}`, sig))) return undefined;
  return { jobId, accountId, keyId };
}

/** What an output receipt covers: the output as the edge stored and hashed it. */
export interface ReceiptFields {
  key: string;
  size: number;
  sha256: string;
  content_type: string;
}

function receiptMessage(o: ReceiptFields): string {
  return `output-receipt\n${o.key}\n${o.size}\n${o.sha256}\n${o.content_type}`;
}

/**
 * The edge's receipt for an output it stored and hashed itself: agents carry it back in
 * a succeeded `job.results` entry, and the edge records only outputs whose receipt it verifies, so a record
 * cannot name bytes the edge never checked, another size or digest, or another job's object.
 */
export async function outputReceipt(secret: string, o: ReceiptFields): Promise<string> {
  return await sign(secret, receiptMessage(o));
}

/** Whether `receipt` is the edge's receipt for exactly this output. */
export async function verifyOutputReceipt(secret: string, o: ReceiptFields, receipt: string): Promise<boolean> {
  return await verify(secret, receiptMessage(o), receipt);
}
