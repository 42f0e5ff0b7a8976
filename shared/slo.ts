/**
 * SLO scheduling math, shared by the scheduler actor, the fairness benchmark and the tests.
 *
 * Inside a tier, accounts share by start-time fair queuing: each job gets a virtual start tag
 * `tag = max(now, last_tag(account)) + cost` and the tier is served in tag order. Across tiers,
 * the next job is the tier head with the largest `(now − enqueued_at) / slo`, ties to the
 * smaller SLO ("1 minute of API waiting equals 10 minutes of light waiting").
 */
import { z } from "zod";

export const TierName = z
  .string()
  .regex(/^[a-z][a-z0-9_-]{0,31}$/, "a tier name is 1–32 lowercase letters, digits, '-' or '_'");

export const TierConfig = z.strictObject({
  name: TierName,
  /** Waiting-time objective, seconds. */
  slo_s: z
    .number()
    .positive()
    .max(7 * 86400),
  /** Admission multiple: new submits are refused once the projected wait passes k × slo. */
  admission_k: z.number().positive().max(1000),
  /** Default per-account rate limit, requests per minute. */
  rate_limit_per_min: z.number().int().positive().max(1_000_000),
});
export type TierConfig = z.infer<typeof TierConfig>;

export const TierList = z
  .array(TierConfig)
  .min(1)
  .max(16)
  .refine((ts) => new Set(ts.map((t) => t.name)).size === ts.length, "tier names must be unique");

/**
 * The default tiers. Admission multiples fall as SLOs grow so that, under overload, the tiers
 * with the largest SLOs shed first (their projected wait passes k × SLO sooner). Free's is below
 * 1: the pick equalizes wait/SLO across tiers, so free has to shed before that common level
 * reaches 1 for the paid tiers to stay within their SLOs.
 */
export const DEFAULT_TIERS: readonly TierConfig[] = [
  { name: "api", slo_s: 120, admission_k: 8, rate_limit_per_min: 60_000 },
  { name: "enterprise", slo_s: 180, admission_k: 6, rate_limit_per_min: 60_000 },
  { name: "plus", slo_s: 300, admission_k: 4, rate_limit_per_min: 6_000 },
  { name: "light", slo_s: 600, admission_k: 3, rate_limit_per_min: 600 },
  { name: "free", slo_s: 1800, admission_k: 0.5, rate_limit_per_min: 60 },
];

/** Start-time fair queuing tag, in seconds of virtual time. */
export function fairTag(nowS: number, lastTagS: number | undefined, costS: number): number {
  return Math.max(nowS, lastTagS ?? 0) + costS;
}

/** How urgent a tier head is: waited seconds over the tier's SLO. */
export function urgency(nowMs: number, enqueuedAtMs: number, sloS: number): number {
  return Math.max(0, nowMs - enqueuedAtMs) / 1000 / sloS;
}

/** One tier's head, as the pick sees it. */
export interface TierHead {
  tier: string;
  sloS: number;
  enqueuedAtMs: number;
}

/**
 * Picks the head to serve next: largest urgency, ties to the smaller SLO, then to the tier
 * name so the choice is deterministic. O(heads).
 */
export function pickHead<H extends TierHead>(heads: readonly H[], nowMs: number): H | undefined {
  let best: H | undefined;
  let bestU = -1;
  for (const h of heads) {
    const u = urgency(nowMs, h.enqueuedAtMs, h.sloS);
    if (
      best === undefined ||
      u > bestU ||
      (u === bestU && (h.sloS < best.sloS || (h.sloS === best.sloS && h.tier < best.tier)))
    ) {
      best = h;
      bestU = u;
    }
  }
  return best;
}

/**
 * Projected wait (seconds) of a job entering a tier now: depth over drain rate when the tier
 * drains, else how long its oldest job has already waited (nothing drains it yet, so the wait
 * is at least that).
 */
export function projectedWaitS(depth: number, drainPerS: number, oldestWaitS: number): number {
  if (depth === 0) return 0;
  return drainPerS > 0 ? Math.max(depth / drainPerS, oldestWaitS) : oldestWaitS;
}
