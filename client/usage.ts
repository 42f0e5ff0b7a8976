/**
 * Usage in the SDK: `client.usage()` reads the caller's own, `admin.usage(account)` any
 * account's (GPU-seconds executing, attempts, jobs by outcome, output bytes; lost GPU-seconds
 * apart).
 */
import type { UsageGroupBy } from "../shared/usage.ts";

export interface UsageOptions {
  /** Start (a Date or ISO 8601); its hour counts whole. Default: 30 days before `to`. */
  from?: Date | string | undefined;
  /** End, exclusive. Default: now. */
  to?: Date | string | undefined;
  /** `model` (default), `version` or `day`. */
  groupBy?: UsageGroupBy | undefined;
  signal?: AbortSignal | undefined;
}

function iso(t: Date | string): string {
  return typeof t === "string" ? t : t.toISOString();
}

/** The usage route with its query: `base` is `/v1/usage` or `/v1/admin/usage?account=…`. */
export function usagePath(base: string, o: UsageOptions, extra: Record<string, string> = {}): string {
  const q = new URLSearchParams(extra);
  if (o.from !== undefined) q.set("from", iso(o.from));
  if (o.to !== undefined) q.set("to", iso(o.to));
  if (o.groupBy !== undefined) q.set("group_by", o.groupBy);
  const qs = q.toString();
  return `${base}${qs ? `?${qs}` : ""}`;
}
