/**
 * One attempt at one webhook message: the address checked again (a URL allowed at registration
 * is checked at every send), the body's output URLs signed afresh, the Standard Webhooks headers
 * signed, one POST with a 15 s deadline that follows no redirect, and the answer read up to a
 * cap. Called by the WebhookActor; answers how the attempt ended, never throws.
 */
import { signWebhook } from "../../shared/webhook-signature.ts";
import { webhookUrlProblem } from "../../shared/webhooks.ts";
import { retryAfterS, type AttemptResult } from "./logic.ts";

/** A receiver has this long to answer (ms). */
export const SEND_TIMEOUT_MS = 15_000;
/** Bytes of a receiver's answer read at most; the rest is dropped. */
export const MAX_ANSWER_BYTES = 64 * 1024;
/** Characters of a failed answer's body kept with its attempt. */
const ERROR_EXCERPT = 200;

/** Reads a body up to {@link MAX_ANSWER_BYTES}, then stops reading. */
async function readCapped(res: Response): Promise<string> {
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    while (total < MAX_ANSWER_BYTES) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      total += value.byteLength;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  const all = new Uint8Array(Math.min(total, MAX_ANSWER_BYTES));
  let at = 0;
  for (const c of chunks) {
    const part = c.subarray(0, all.length - at);
    all.set(part, at);
    at += part.length;
    if (at >= all.length) break;
  }
  return new TextDecoder().decode(all);
}

export interface SendRequest {
  /** The message's `webhook-id`. */
  id: string;
  url: string;
  body: string;
  secrets: readonly string[];
  allowLocal: boolean;
}

/** Sends one attempt; answers its result and, for a failure, why. */
export async function sendWebhook(
  r: SendRequest,
  fetcher: typeof fetch = fetch,
): Promise<AttemptResult & { error?: string | undefined }> {
  const problem = webhookUrlProblem(r.url, r.allowLocal);
  if (problem !== undefined) return { status: null, error: `address refused: ${problem}` };
  const headers = await signWebhook(r.secrets, r.id, Date.now() / 1000, r.body);
  try {
    const res = await fetcher(r.url, {
      method: "POST",
      headers: { ...headers, "content-type": "application/json", "user-agent": "Floodgate-Webhooks/1" },
      body: r.body,
      redirect: "manual",
      signal: AbortSignal.timeout(SEND_TIMEOUT_MS),
    });
    const text = await readCapped(res);
    const ok = res.status >= 200 && res.status < 300;
    return {
      status: res.status,
      retryAfterS: retryAfterS(res.headers.get("retry-after"), Date.now()),
      ...(ok ? {} : { error: text.slice(0, ERROR_EXCERPT) || `HTTP ${res.status}` }),
    };
  } catch (err) {
    const timedOut = err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError");
    return { status: null, error: timedOut ? `no answer within ${SEND_TIMEOUT_MS / 1000} s` : String(err) };
  }
}
