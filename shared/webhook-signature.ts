/**
 * Signatures of outgoing webhooks, as the Standard Webhooks specification defines them, so that
 * receivers verify with that specification's own libraries: the signed content is
 * `<webhook-id>.<webhook-timestamp>.<body>`, HMAC-SHA256 keyed with the secret's bytes (the base64
 * after `whsec_`), sent base64 in `webhook-signature` as `v1,<signature>`, several separated by
 * spaces while a rotated secret overlaps the new one.
 *
 * Used by every webhook the edge sends: job events and provisioner calls.
 */

/** The secret's prefix, as the specification writes it. */
export const WEBHOOK_SECRET_PREFIX = "whsec_";

/** The three headers a signed webhook carries. */
export interface WebhookHeaders {
  "webhook-id": string;
  "webhook-timestamp": string;
  "webhook-signature": string;
}

function base64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

/** A new secret: 32 random bytes, base64, with the specification's prefix. */
export function newWebhookSecret(): string {
  return WEBHOOK_SECRET_PREFIX + base64(crypto.getRandomValues(new Uint8Array(32)));
}

function secretBytes(secret: string): Uint8Array<ArrayBuffer> {
  const raw = atob(secret.startsWith(WEBHOOK_SECRET_PREFIX) ? secret.slice(WEBHOOK_SECRET_PREFIX.length) : secret);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

/** One secret's signature of a message: `v1,<base64>`. */
async function signOne(secret: string, content: Uint8Array<ArrayBuffer>): Promise<string> {
  const key = await crypto.subtle.importKey("raw", secretBytes(secret), { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  return `v1,${base64(new Uint8Array(await crypto.subtle.sign("HMAC", key, content)))}`;
}

/**
 * The headers of a webhook whose message id is `id`, sent at `at` (seconds since the epoch) with
 * this body, signed with each of `secrets` (the current one first, then any still overlapping).
 */
export async function signWebhook(
  secrets: readonly string[],
  id: string,
  at: number,
  body: string,
): Promise<WebhookHeaders> {
  const timestamp = String(Math.floor(at));
  const content = new Uint8Array(new TextEncoder().encode(`${id}.${timestamp}.${body}`));
  const signatures = await Promise.all(secrets.map((s) => signOne(s, content)));
  return { "webhook-id": id, "webhook-timestamp": timestamp, "webhook-signature": signatures.join(" ") };
}
