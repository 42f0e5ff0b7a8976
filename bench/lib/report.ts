/**
 * What a benchmark hands back, and how the dispatcher (bench/run.ts) prints it: a human table,
 * or one JSON object. Every report names what was measured (`target`), so a figure is never
 * read without knowing whether it came from workerd's own port or from in-process code.
 */

/** One table of results: a title, column headers and rows of cells. */
export interface Table {
  title: string;
  columns: string[];
  rows: (string | number)[][];
}

/** A benchmark's result. */
export interface Report {
  /** What was measured, including the port for edge figures ("workerd direct via Miniflare"). */
  target: string;
  /** The synthetic setup: loads, durations, sizes. */
  setup: Record<string, string | number | boolean>;
  tables: Table[];
  /** Headline figures, machine-readable (units in the key: `_ms`, `_per_s`). */
  metrics: Record<string, number | boolean | null>;
  /** What a reader needs to interpret the tables. */
  notes: string[];
  /** Nested results, added as top-level keys of the `--json` object (not shown in the tables). */
  extra?: Record<string, unknown>;
}

/** Options every benchmark takes. */
export interface BenchOptions {
  /** A short run (under 60 s) for smoke checks; smaller sizes and durations. */
  quick: boolean;
  /** Progress lines go here (stderr), never to stdout, so `--json` stays one object. */
  log: (line: string) => void;
}

/** A benchmark module: registered in bench/benchmarks/index.ts. */
export interface Benchmark {
  name: string;
  description: string;
  run(opts: BenchOptions): Promise<Report>;
}

function cell(v: string | number): string {
  if (typeof v === "string") return v;
  if (Number.isInteger(v)) return String(v);
  const abs = Math.abs(v);
  if (abs >= 100) return v.toFixed(0);
  if (abs >= 10) return v.toFixed(1);
  // Up to 3 decimals, trailing zeros dropped: 2.125 commits/job stays exact, 4.19 ms stays short.
  return v.toFixed(3).replace(/\.?0+$/, "");
}

/** Renders a table as GitHub-flavoured Markdown (also readable in a terminal). */
export function renderTable(t: Table): string {
  const rows = t.rows.map((r) => r.map(cell));
  const widths = t.columns.map((c, i) => Math.max(c.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]): string =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join(" | ")} |`;
  const rule = `|${widths.map((w, i) => (i === 0 ? "-".repeat(w + 2) : `${"-".repeat(w + 1)}:`)).join("|")}|`;
  return [`**${t.title}**`, "", line(t.columns), rule, ...rows.map(line)].join("\n");
}

/** The human form of a report. */
export function renderReport(name: string, r: Report): string {
  const out = [`## ${name}`, "", `measured: ${r.target}`, ""];
  for (const [k, v] of Object.entries(r.setup)) out.push(`- ${k}: ${String(v)}`);
  for (const t of r.tables) out.push("", renderTable(t));
  if (r.notes.length > 0) out.push("", ...r.notes.map((n) => `- ${n}`));
  return out.join("\n") + "\n";
}
