/**
 * Usage, as an account reads it (`GET /v1/usage`) and admins read any account's
 * (`GET /v1/admin/usage`): per model (and version, and day, as asked), GPU-seconds executing,
 * attempts, jobs by outcome, output bytes, and apart from them the GPU-seconds of attempts lost
 * with their agents (not billed). Shards keep hourly buckets; the edge sums them.
 */
import { z } from "zod";

/** The longest span one usage query may cover (days). */
export const MAX_USAGE_DAYS = 93;
/** The span a usage query covers when it names none (days, up to now). */
export const DEFAULT_USAGE_DAYS = 30;

export const UsageGroupBy = z
  .enum(["model", "version", "day"])
  .describe("`model`: one row per model; `version`: per model and version; `day`: per model and UTC day.");
export type UsageGroupBy = z.infer<typeof UsageGroupBy>;

export const UsageQuery = z.strictObject({
  from: z.iso
    .datetime({ offset: true })
    .optional()
    .describe(`Start, ISO 8601 (its hour counts whole); default ${DEFAULT_USAGE_DAYS} days before \`to\`.`),
  to: z.iso.datetime({ offset: true }).optional().describe("End, ISO 8601, exclusive; default now."),
  group_by: UsageGroupBy.default("model"),
});
export type UsageQuery = z.infer<typeof UsageQuery>;

export const AdminUsageQuery = UsageQuery.extend({ account: z.string().regex(/^acc_[0-9a-z]{16}$/) });

/** What a usage row or the totals count. */
export const UsageFigures = z.object({
  gpu_s: z
    .number()
    .describe("GPU-seconds billed: each attempt's executing seconds × max(1, its replica's GPUs), to the millisecond."),
  executing_s: z.number().describe("Seconds the billed attempts executed (runner start to its answer)."),
  lost_gpu_s: z
    .number()
    .describe("GPU-seconds of attempts lost with their agents (worker_lost): not billed, reported for the provider."),
  attempts: z.number().int().describe("Attempts that ended, lost ones included."),
  jobs: z
    .object({
      succeeded: z.number().int(),
      failed: z.number().int(),
      cancelled: z.number().int(),
      expired: z.number().int(),
    })
    .describe("Jobs that ended, by outcome."),
  output_bytes: z.number().int().describe("Bytes of the outputs of succeeded jobs."),
});
export type UsageFigures = z.infer<typeof UsageFigures>;

export const UsageRow = UsageFigures.extend({
  model: z.string(),
  version: z.string().nullable().describe("With `group_by=version`; null otherwise (and for jobs that never ran)."),
  day: z.string().nullable().describe("With `group_by=day`: the UTC day, YYYY-MM-DD; null otherwise."),
});
export type UsageRow = z.infer<typeof UsageRow>;

export const UsageAnswer = z.object({
  account: z.string(),
  from: z.string().describe("The span's start, floored to its hour (ISO 8601)."),
  to: z.string(),
  group_by: UsageGroupBy,
  usage: z.array(UsageRow),
  totals: UsageFigures,
});
export type UsageAnswer = z.infer<typeof UsageAnswer>;

/** One hourly bucket of one model's shard, as the shards answer them. */
export interface UsageBucket {
  model: string;
  version: string;
  hour: number;
  gpu_ms: number;
  executing_ms: number;
  lost_gpu_ms: number;
  attempts: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  expired: number;
  output_bytes: number;
}

type Sums = Omit<UsageBucket, "model" | "version" | "hour">;

function zero(): Sums {
  return {
    gpu_ms: 0,
    executing_ms: 0,
    lost_gpu_ms: 0,
    attempts: 0,
    succeeded: 0,
    failed: 0,
    cancelled: 0,
    expired: 0,
    output_bytes: 0,
  };
}

function add(into: Sums, b: Sums): void {
  for (const k of Object.keys(into) as (keyof Sums)[]) into[k] += b[k];
}

function figures(s: Sums): UsageFigures {
  return {
    gpu_s: s.gpu_ms / 1000,
    executing_s: s.executing_ms / 1000,
    lost_gpu_s: s.lost_gpu_ms / 1000,
    attempts: s.attempts,
    jobs: { succeeded: s.succeeded, failed: s.failed, cancelled: s.cancelled, expired: s.expired },
    output_bytes: s.output_bytes,
  };
}

/**
 * Sums hourly buckets into rows as `groupBy` asks, sorted by model, then version or day, with the
 * totals. Milliseconds are summed as integers and turned into seconds once, so sums are exact.
 */
export function summarizeUsage(
  buckets: readonly UsageBucket[],
  groupBy: UsageGroupBy,
): { usage: UsageRow[]; totals: UsageFigures } {
  const rows = new Map<string, { model: string; version: string | null; day: string | null; sums: Sums }>();
  const total = zero();
  for (const b of buckets) {
    const version = groupBy === "version" ? b.version || null : null;
    const day = groupBy === "day" ? new Date(b.hour).toISOString().slice(0, 10) : null;
    const key = `${b.model}\n${version ?? ""}\n${day ?? ""}`;
    let row = rows.get(key);
    if (!row) {
      row = { model: b.model, version, day, sums: zero() };
      rows.set(key, row);
    }
    add(row.sums, b);
    add(total, b);
  }
  const usage = [...rows.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, r]) => ({ model: r.model, version: r.version, day: r.day, ...figures(r.sums) }));
  return { usage, totals: figures(total) };
}
