/**
 * The generated parts of docs/protocol.md and docs/runner-protocol.md, rendered from the schemas
 * so the docs cannot drift from them: a table per message (every field, with its type, whether it
 * is required, its constraints and its description), the job event stream's events, a job's
 * `progress`, the error-code table (shared/errors.ts) and the close-code table (shared/wire.ts).
 * Each part lives in its doc between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->`;
 * `test/gen-golden.ts` rewrites them and shared/protocol-doc.test.ts fails when a doc is stale.
 */
import type { z } from "zod";
import { JobProgressView } from "../api.ts";
import { ERROR_CODES, ERROR_WHEN, type ErrorCode } from "../errors.ts";
import { JobEvent } from "../events.ts";
import { AgentFailure, FAILURE_WHEN, FailureReason, RETRY } from "../job.ts";
import { FromRunner, ToRunner } from "../runner.ts";
import { CLOSE, CLOSE_WHEN, FromAgent, ToAgent } from "../wire.ts";
import { directionSchema } from "./runner-golden.ts";

/** The JSON Schema keywords zod writes that the tables show. */
interface Schema {
  type?: string | string[];
  const?: unknown;
  enum?: unknown[];
  description?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  anyOf?: Schema[];
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minItems?: number;
  maxItems?: number;
  "x-msgpack-type"?: string;
}

/** How types are named: msgpack for the agent and runner protocols, JSON for what clients read. */
type Dialect = "msgpack" | "json";

const TYPE_NAMES: Record<Dialect, Record<string, string>> = {
  msgpack: {
    string: "str",
    integer: "int",
    number: "number",
    boolean: "bool",
    null: "nil",
    object: "map",
    array: "array",
  },
  json: {
    string: "string",
    integer: "integer",
    number: "number",
    boolean: "boolean",
    null: "null",
    object: "object",
    array: "array",
  },
};

function schemaOf(s: z.ZodType): Schema {
  return directionSchema(s) as Schema;
}

const code = (text: string): string => `\`${text}\``;

/** `s` without a `null` alternative, and whether it had one. */
function unwrapNullable(s: Schema): { inner: Schema; nullable: boolean } {
  const alternatives = s.anyOf ?? [];
  const other = alternatives.filter((a) => a.type !== "null");
  if (alternatives.length === 2 && other.length === 1 && other[0]) return { inner: other[0], nullable: true };
  return { inner: s, nullable: false };
}

function typeName(s: Schema, dialect: Dialect): string {
  const names = TYPE_NAMES[dialect];
  if (s["x-msgpack-type"] === "bin") return "bin";
  if (s.anyOf) return s.anyOf.map((a) => typeName(a, dialect)).join(" or ");
  if (s.const !== undefined) {
    if (typeof s.const === "number") return (Number.isInteger(s.const) ? names.integer : names.number) ?? "";
    return names[typeof s.const] ?? typeof s.const;
  }
  if (s.type === "array") return `array of ${s.items ? typeName(s.items, dialect) : "any"}`;
  if (s.type === undefined) return "any";
  return (Array.isArray(s.type) ? s.type : [s.type]).map((t) => names[t] ?? t).join(" or ");
}

/** `min–max unit`, `≥ min unit` or `≤ max unit`; bounds zod adds to every integer are left out. */
function range(min: number | undefined, max: number | undefined, unit = ""): string | undefined {
  const lo = min === undefined || min === Number.MIN_SAFE_INTEGER ? undefined : min;
  const hi = max === undefined || max === Number.MAX_SAFE_INTEGER ? undefined : max;
  const tail = unit ? ` ${unit}` : "";
  if (lo !== undefined && hi !== undefined) return lo < 0 ? `${lo} to ${hi}${tail}` : `${lo}–${hi}${tail}`;
  if (lo !== undefined) return `≥ ${lo}${tail}`;
  if (hi !== undefined) return `≤ ${hi}${tail}`;
  return undefined;
}

function constraints(s: Schema): string {
  const out: string[] = [];
  if (s.const !== undefined) out.push(`always ${code(String(s.const))}`);
  if (s.enum) out.push(`one of ${s.enum.map((v) => code(String(v))).join(", ")}`);
  const length = range(s.minLength, s.maxLength, "chars");
  if (length) out.push(length);
  if (s.pattern) out.push(`matches ${code(s.pattern)}`);
  const value = range(s.minimum, s.maximum);
  if (value) out.push(value);
  if (s.exclusiveMinimum !== undefined) out.push(`> ${s.exclusiveMinimum}`);
  if (s.exclusiveMaximum !== undefined) out.push(`< ${s.exclusiveMaximum}`);
  const items = range(s.minItems, s.maxItems, "items");
  if (items) out.push(items);
  return out.join("; ");
}

interface Row {
  field: string;
  type: string;
  required: boolean;
  constraints: string;
  description: string;
}

/** One row per field of `obj`, and of the maps it holds (`a.b`) or lists (`a[].b`), depth first. */
function rows(obj: Schema, dialect: Dialect, prefix = ""): Row[] {
  const out: Row[] = [];
  for (const [name, field] of Object.entries(obj.properties ?? {})) {
    const { inner } = unwrapNullable(field);
    const fallback = prefix === "" && name === "type" ? "The message type." : "";
    out.push({
      field: `${prefix}${name}`,
      type: typeName(field, dialect),
      required: obj.required?.includes(name) ?? false,
      constraints: constraints(inner),
      description: field.description ?? inner.description ?? fallback,
    });
    if (inner.properties) out.push(...rows(inner, dialect, `${prefix}${name}.`));
    if (inner.items?.properties) out.push(...rows(inner.items, dialect, `${prefix}${name}[].`));
  }
  return out;
}

/** Characters a cell is wide, as the formatter counts them (the docs use no wide characters). */
const width = (s: string): number => [...s].length;

/** A Markdown table, columns padded as oxfmt pads them. */
function table(head: readonly string[], body: readonly (readonly string[])[]): string {
  const cells = [head, ...body].map((row) => row.map((c) => c.replaceAll("|", "\\|").replaceAll("\n", " ")));
  const widths = head.map((_, i) => Math.max(3, ...cells.map((row) => width(row[i] ?? ""))));
  const line = (row: readonly string[]): string =>
    `| ${row.map((c, i) => c + " ".repeat((widths[i] ?? 0) - width(c))).join(" | ")} |`;
  const rule = `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`;
  return [line(cells[0] ?? []), rule, ...cells.slice(1).map(line)].join("\n");
}

function fieldTable(fields: readonly Row[]): string {
  return table(
    ["field", "type", "required", "constraints", "description"],
    fields.map((r) => [code(r.field), r.type, r.required ? "yes" : "no", r.constraints, r.description]),
  );
}

/**
 * A section per message of a discriminated union, each under a heading of `level`: its type,
 * what it is for, and its fields.
 */
function messages(union: { options: readonly z.ZodType[] }, dialect: Dialect, level: number): string {
  return union.options
    .map((option) => {
      const json = schemaOf(option);
      const type = String(json.properties?.type?.const);
      return [`${"#".repeat(level)} ${code(type)}`, json.description ?? "", fieldTable(rows(json, dialect))]
        .filter(Boolean)
        .join("\n\n");
    })
    .join("\n\n");
}

/** The job event stream: the frame's fields, then each event's `data`. */
function jobEvents(): string {
  const options = JobEvent.options.map(schemaOf);
  const first = options[0]?.properties ?? {};
  const frame = table(
    ["field", "type", "description"],
    [
      [code("id"), "string", first.id?.description ?? ""],
      [
        code("event"),
        "string",
        `The event's name: ${options.map((o) => code(String(o.properties?.event?.const))).join(", ")}.`,
      ],
      [code("data"), "object", "What happened: below, per event."],
    ],
  );
  const events = options.map((o) => {
    const data = o.properties?.data ?? {};
    const fields = rows(data, "json");
    return [
      `#### ${code(String(o.properties?.event?.const))}`,
      data.description ?? "",
      fields.length ? fieldTable(fields) : "",
    ]
      .filter(Boolean)
      .join("\n\n");
  });
  return [frame, ...events].join("\n\n");
}

function errorCodes(): string {
  return table(
    ["code", "status", "when"],
    (Object.keys(ERROR_CODES) as ErrorCode[]).map((c) => [code(c), String(ERROR_CODES[c]), ERROR_WHEN[c]]),
  );
}

function closeCodes(): string {
  return table(
    ["code", "name", "when"],
    (Object.keys(CLOSE) as (keyof typeof CLOSE)[]).map((name) => [String(CLOSE[name]), code(name), CLOSE_WHEN[name]]),
  );
}

function failureReasons(): string {
  const fromAgent = new Set<string>(AgentFailure.options);
  return table(
    ["code", "reported by", "retried", "when"],
    FailureReason.options.map((r) => [
      code(r),
      fromAgent.has(r) ? "agent, in `job.results`" : RETRY[r] === "free" ? "agent, in `job.release`; or edge" : "edge",
      { spend: "yes, spending an attempt", free: "yes, no attempt spent", final: "no" }[RETRY[r]],
      FAILURE_WHEN[r],
    ]),
  );
}

/** The docs with generated parts, each part by name. */
export function docRegions(): Record<string, Record<string, string>> {
  return {
    "docs/protocol.md": {
      "error-codes": errorCodes(),
      "job-progress": fieldTable(rows(schemaOf(JobProgressView), "json")),
      "job-events": jobEvents(),
      "close-codes": closeCodes(),
      "failure-reasons": failureReasons(),
      "agent-to-edge": messages(FromAgent, "msgpack", 5),
      "edge-to-agent": messages(ToAgent, "msgpack", 5),
    },
    "docs/runner-protocol.md": {
      "runner-to-agent": messages(FromRunner, "msgpack", 4),
      "agent-to-runner": messages(ToRunner, "msgpack", 4),
    },
  };
}

/** The opening marker of a generated part; anything may follow its name before `-->`. */
function openMarker(name: string): RegExp {
  return new RegExp(`<!-- generated:${name}(?:\\s[^>]*)?-->`);
}

/**
 * `text` with each named part between its markers replaced by `regions`' content. Throws when a
 * part's markers are missing, so a doc cannot lose a generated part unnoticed.
 */
export function fillRegions(text: string, regions: Record<string, string>, file: string): string {
  let out = text;
  for (const [name, body] of Object.entries(regions)) {
    const open = openMarker(name).exec(out);
    const close = `<!-- /generated:${name} -->`;
    const end = out.indexOf(close);
    if (!open || end < open.index) throw new Error(`${file} has no <!-- generated:${name} --> … ${close} part`);
    out = `${out.slice(0, open.index + open[0].length)}\n\n${body}\n\n${out.slice(end)}`;
  }
  return out;
}
