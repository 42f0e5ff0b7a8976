/**
 * Identifiers. A job id is time-sortable (48-bit milliseconds first, so ids sort by creation),
 * unguessable (80 random bits) and routable: its last characters name the scheduler shard that
 * holds the job, so a read goes straight to one actor with no global lookup.
 *
 * Layout of a job id, after the `job_` prefix, in Crockford base32:
 *   10 chars time (ms) · 16 chars random (80 bits) · 3 chars model number · 1 char shard
 */
const B32 = "0123456789abcdefghjkmnpqrstvwxyz";

function encodeInt(value: number, chars: number): string {
  let out = "";
  let v = value;
  for (let i = 0; i < chars; i++) {
    out = B32[v % 32] + out;
    v = Math.floor(v / 32);
  }
  return out;
}

function decodeInt(text: string): number | undefined {
  let v = 0;
  for (const ch of text) {
    const d = B32.indexOf(ch);
    if (d < 0) return undefined;
    v = v * 32 + d;
  }
  return v;
}

function randomB32(chars: number): string {
  const bytes = new Uint8Array(chars);
  crypto.getRandomValues(bytes);
  let out = "";
  for (const b of bytes) out += B32[b & 31];
  return out;
}

/** The largest model number a job id can carry (3 base32 chars). */
export const MAX_MODEL_NUMBER = 32 ** 3 - 1;
/** The most scheduler shards a model can have (1 base32 char). */
export const MAX_SHARDS = 32;

export const JOB_ID_RE = /^job_[0-9a-hjkmnp-tv-z]{30}$/;

/** Where a job lives: its model's number and the shard. */
export interface JobRoute {
  modelNumber: number;
  shard: number;
}

/** Mints a job id for a model number and shard, at `nowMs`. */
export function newJobId(route: JobRoute, nowMs: number = Date.now()): string {
  return `job_${encodeInt(nowMs, 10)}${randomB32(16)}${encodeInt(route.modelNumber, 3)}${encodeInt(route.shard, 1)}`;
}

/** Reads the route out of a job id, or `undefined` when the text is not a job id. */
export function parseJobId(id: string): JobRoute | undefined {
  if (!JOB_ID_RE.test(id)) return undefined;
  const modelNumber = decodeInt(id.slice(30, 33));
  const shard = decodeInt(id.slice(33, 34));
  if (modelNumber === undefined || shard === undefined) return undefined;
  return { modelNumber, shard };
}

/** The creation time (ms) written into a job id. */
export function jobIdTime(id: string): number | undefined {
  return JOB_ID_RE.test(id) ? decodeInt(id.slice(4, 14)) : undefined;
}

/** The name of the scheduler actor for a route. */
export function schedulerName(route: JobRoute): string {
  return `m${route.modelNumber}.s${route.shard}`;
}

/** A short random id with a prefix, for accounts, keys and tokens (`acc_…`, `key_…`, `tok_…`). */
export function newId(prefix: string, chars = 16): string {
  return `${prefix}_${randomB32(chars)}`;
}

/** A random secret of `bytes` bytes as base64url, for API key secrets. */
export function newSecret(bytes = 24): string {
  const buf = new Uint8Array(bytes);
  crypto.getRandomValues(buf);
  let s = "";
  for (const b of buf) s += String.fromCharCode(b);
  return btoa(s).replaceAll("+", "-").replaceAll("/", "_").replaceAll("=", "");
}
