/**
 * `floodgate webhooks …`: the account's webhook endpoints (add, list, remove, rotate), the
 * secret of its jobs' own webhooks, and a job's deliveries (each message, every attempt) with a
 * manual redelivery. A thin shell over the SDK's `webhooks` (client/webhooks.ts).
 */
import { z } from "zod";
import { WEBHOOK_EVENTS, WebhookEvent, type Delivery, type WebhookView } from "../shared/webhooks.ts";
import {
  ago,
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

export const WEBHOOKS_HELP = `Usage:
  floodgate webhooks add URL [--events e1,e2] [--json]
      Add an endpoint told of your jobs; prints its secret (whsec_…) this once. Without
      --events it gets every event: ${WEBHOOK_EVENTS.join(", ")}.
  floodgate webhooks list [--json]           your endpoints; a disabled one says why
  floodgate webhooks remove ID               remove an endpoint
  floodgate webhooks rotate ID [--json]      a new secret; the old one signs beside it for 24 h
  floodgate webhooks job-secret [--json]     make (or rotate) the secret of jobs' own webhooks
  floodgate webhooks deliveries JOB [--json] a job's messages and every attempt, with its status
  floodgate webhooks redeliver JOB [--event E] [--json]
      Send the job's settled messages (of one event, or all) again, with the same ids.

Receivers verify each delivery with a Standard Webhooks library (the SDK's verifyWebhook).

Options:
  --events LIST            comma-separated events
  --event E                one event
  --json                   the answer as JSON
${connHelp("user")}`;

const Events = z
  .string()
  .transform((s) => s.split(",").map((e) => e.trim()))
  .pipe(z.array(WebhookEvent).min(1));

/** The endpoints as a table. */
export function webhookTable(list: readonly WebhookView[], now: number): string {
  if (list.length === 0) return "no webhooks; add one with `floodgate webhooks add URL`\n";
  return table(
    ["ID", "URL", "EVENTS", "CREATED", "STATE"],
    list.map((w) => [
      w.id,
      w.url,
      w.events.length === WEBHOOK_EVENTS.length ? "all" : w.events.join(","),
      ago(w.created_at, now),
      w.disabled_at === null ? "live" : `disabled ${ago(w.disabled_at, now)}: ${w.disabled_reason ?? ""}`,
    ]),
  );
}

/** A job's deliveries as a table: one row per attempt, under its message. */
export function deliveryTable(list: readonly Delivery[], now: number): string {
  if (list.length === 0) return "no webhook messages for this job\n";
  const rows: string[][] = [];
  for (const d of list) {
    const next = d.next_attempt_at === null ? "" : ` (next ${d.next_attempt_at})`;
    rows.push([d.id, d.type, d.endpoint, `${d.state}${next}`, "", ""]);
    d.attempts.forEach((a, i) =>
      rows.push([
        "",
        `  attempt ${i + 1}`,
        ago(a.at, now),
        a.status === null ? "no answer" : String(a.status),
        `${a.duration_ms} ms`,
        a.error ?? "",
      ]),
    );
  }
  return table(["MESSAGE", "EVENT", "ENDPOINT", "STATE", "TOOK", "ERROR"], rows);
}

export const webhooks: Runner = async (argv, io) => {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === "-h" || sub === "--help" || sub === "help") return help(io, WEBHOOKS_HELP);
  const names: Record<string, string | undefined> = {
    add: "the URL",
    remove: "the webhook id",
    rotate: "the webhook id",
    deliveries: "the job id",
    redeliver: "the job id",
    list: undefined,
    "job-secret": undefined,
  };
  if (!Object.hasOwn(names, sub)) {
    throw new UsageError(`unknown webhooks command ${JSON.stringify(sub)} (try: ${Object.keys(names).join(", ")})`);
  }
  const name = names[sub];
  const parsed = parseFlags(
    rest,
    {
      ...CONN_USER,
      ...JSON_FLAG,
      ...(sub === "add" ? { events: { type: "string" } } : {}),
      ...(sub === "redeliver" ? { event: { type: "string" } } : {}),
    },
    z.strictObject({ ...Conn, events: Events.optional(), event: WebhookEvent.optional() }),
    name === undefined ? { min: 0, max: 0, names: "" } : { min: 1, max: 1, names: name },
  );
  if (!parsed) return help(io, WEBHOOKS_HELP);
  const { flags, args } = parsed;
  const arg = args[0] as string;
  const api = user(connection(flags, io), io).fg.webhooks;
  const out = (value: unknown, text: string): number => {
    if (flags.json) jsonOut(io, value);
    else io.stdout(text);
    return 0;
  };
  switch (sub) {
    case "add": {
      const w = await api.add(arg, flags.events);
      return out(
        w,
        `added ${w.id} → ${w.url}\nsecret ${w.secret}\n  (shown this once: keep it where your receiver reads it)\n`,
      );
    }
    case "list": {
      const l = await api.list();
      return out(l, webhookTable(l.webhooks, io.now()));
    }
    case "remove":
      await api.remove(arg);
      return out({ removed: arg }, `removed ${arg}\n`);
    case "rotate": {
      const w = await api.rotate(arg);
      return out(w, `rotated ${w.id}\nsecret ${w.secret}\n  (the previous secret signs beside it for 24 h)\n`);
    }
    case "job-secret": {
      const s = await api.jobSecret();
      const overlap = s.previous_valid_until
        ? `\n  (the previous secret signs beside it until ${s.previous_valid_until})`
        : "";
      return out(s, `secret ${s.secret}${overlap}\n`);
    }
    case "deliveries": {
      const d = await api.deliveries(arg);
      return out(d, deliveryTable(d.deliveries, io.now()));
    }
    default: {
      const r = await api.redeliver(arg, flags.event);
      return out(r, `queued ${r.redelivered} message(s) again\n`);
    }
  }
};
