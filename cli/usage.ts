/**
 * `floodgate usage`: the account's usage (or, with `--account` and the admin key, any
 * account's) as a table, CSV or JSON. A thin shell over the SDK's `usage` (client/usage.ts).
 */
import { z } from "zod";
import { UsageGroupBy, type UsageAnswer, type UsageFigures, type UsageRow } from "../shared/usage.ts";
import {
  admin,
  Conn,
  CONN_USER,
  connection,
  connHelp,
  help,
  JSON_FLAG,
  jsonOut,
  user,
  type Runner,
} from "./client-commands.ts";
import { parseFlags, UsageError } from "./flags.ts";
import { table } from "./table.ts";

export const USAGE_HELP = `Usage:
  floodgate usage [--from T] [--to T] [--group-by model|version|day] [--csv | --json]
      Your usage: GPU-seconds billed (executing seconds × the replica's GPUs), executing
      seconds, attempts, jobs by outcome, output bytes; and apart, GPU-seconds of attempts
      lost with their agents (not billed). Default: the last 30 days, per model.
  floodgate usage --account acc_… [...]      any account's usage (admin)

Options:
  --from T, --to T         ISO 8601 times (--from counts its hour whole; --to is exclusive)
  --group-by G             model (default), version or day (UTC)
  --csv                    the rows as CSV, a header first
  --json                   the answer as JSON
  --account ID             an account's usage, with the admin key
${connHelp("user")}
  --admin-key KEY          with --account (or FLOODGATE_ADMIN_KEY)
`;

const COLUMNS = [
  "model",
  "version",
  "day",
  "gpu_s",
  "executing_s",
  "lost_gpu_s",
  "attempts",
  "succeeded",
  "failed",
  "cancelled",
  "expired",
  "output_bytes",
] as const;

function cells(r: UsageRow): string[] {
  return [
    r.model,
    r.version ?? "",
    r.day ?? "",
    String(r.gpu_s),
    String(r.executing_s),
    String(r.lost_gpu_s),
    String(r.attempts),
    String(r.jobs.succeeded),
    String(r.jobs.failed),
    String(r.jobs.cancelled),
    String(r.jobs.expired),
    String(r.output_bytes),
  ];
}

/** RFC 4180: a field with a comma, quote or line break is quoted, its quotes doubled. */
function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** The rows as CSV, with a header line. */
export function usageCsv(a: UsageAnswer): string {
  const lines = [COLUMNS.join(","), ...a.usage.map((r) => cells(r).map(csvField).join(","))];
  return lines.join("\r\n") + "\r\n";
}

function totalsRow(t: UsageFigures): UsageRow {
  return { ...t, model: "total", version: null, day: null };
}

/** The rows and their totals as a table, for people. */
export function usageTable(a: UsageAnswer): string {
  const span = `${a.account}, ${a.from} to ${a.to}\n`;
  if (a.usage.length === 0) return `${span}no usage in this span\n`;
  const head = [
    "MODEL",
    "VERSION",
    "DAY",
    "GPU-S",
    "EXEC-S",
    "LOST-GPU-S",
    "ATTEMPTS",
    "OK",
    "FAILED",
    "CANCELLED",
    "EXPIRED",
    "OUT-BYTES",
  ];
  const keep = head.map((_, i) => (i === 1 ? a.group_by === "version" : i === 2 ? a.group_by === "day" : true));
  const pick = (r: string[]) => r.filter((_, i) => keep[i]);
  const rows = [...a.usage, totalsRow(a.totals)].map((r) => pick(cells(r)));
  return span + table(pick(head), rows);
}

const Time = z.iso.datetime({ offset: true });

export const usage: Runner = async (argv, io) => {
  const parsed = parseFlags(
    argv,
    {
      ...CONN_USER,
      ...JSON_FLAG,
      "admin-key": { type: "string" },
      from: { type: "string" },
      to: { type: "string" },
      "group-by": { type: "string" },
      csv: { type: "boolean" },
      account: { type: "string" },
    },
    z.strictObject({
      ...Conn,
      from: Time.optional(),
      to: Time.optional(),
      "group-by": UsageGroupBy.optional(),
      csv: z.boolean().optional(),
      account: z
        .string()
        .regex(/^acc_[0-9a-z]{16}$/, "an account id, acc_…")
        .optional(),
    }),
  );
  if (!parsed) return help(io, USAGE_HELP);
  const { flags } = parsed;
  if (flags.csv && flags.json) throw new UsageError("--csv and --json: choose one");
  const ctx = connection(flags, io);
  const opts = { from: flags.from, to: flags.to, groupBy: flags["group-by"] };
  const answer =
    flags.account === undefined ? await user(ctx, io).fg.usage(opts) : await admin(ctx, io).usage(flags.account, opts);
  if (flags.json) jsonOut(io, answer);
  else io.stdout(flags.csv ? usageCsv(answer) : usageTable(answer));
  return 0;
};
