/**
 * What `floodgate rollout` reads and prints: a rollout file parsed with the `yaml` package and
 * checked by the shared schema, every mistake named by its file, line and column; and the
 * status and history tables. The commands themselves are in cli/client-commands.ts.
 */
import { isMap, isScalar, LineCounter, parseDocument, type Document, type Node } from "yaml";
import type { z } from "zod";
import type { ModelRollout, RolloutFile } from "../shared/repository.ts";
import { CheckedRolloutFile, type RolloutEntry, type RolloutStatus } from "../shared/rollouts.ts";
import { table } from "./table.ts";

/** A rollout or pools file that cannot be applied: the message names the file, line and column. */
export class RolloutFileError extends Error {}

type Path = readonly PropertyKey[];

/** The node at `path`, or the nearest ancestor that exists (a missing key points at its map). */
function nodeAt(doc: Document, path: Path): { node: Node | undefined; depth: number } {
  for (let depth = path.length; depth >= 0; depth--) {
    const node = depth === 0 ? doc.contents : doc.getIn(path.slice(0, depth) as unknown[], true);
    if (node && typeof node === "object" && "range" in node) return { node: node as Node, depth };
  }
  return { node: undefined, depth: 0 };
}

/** The key node named `key` in the map at `path`, if any. */
function keyAt(doc: Document, path: Path, key: string): Node | undefined {
  const map = path.length === 0 ? doc.contents : doc.getIn(path as unknown[], true);
  if (!isMap(map)) return undefined;
  const pair = map.items.find((p) => isScalar(p.key) && String(p.key.value) === key);
  return isScalar(pair?.key) ? pair.key : undefined;
}

/**
 * Parses a YAML file and checks it against `schema`: a syntax error, a value that breaks the
 * schema or an unknown key is a {@link RolloutFileError} naming `file:line:col`. `top` is the
 * key the file starts with, named when the file is empty. Shared by the rollout and pools files.
 */
export function parseYamlFile<S extends z.ZodType>(schema: S, text: string, file: string, top: string): z.infer<S> {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  const at = (offset: number): string => {
    const { line, col } = lines.linePos(offset);
    return `${file}:${line}:${col}`;
  };
  const syntax = doc.errors[0];
  if (syntax) throw new RolloutFileError(`${at(syntax.pos[0])}: ${syntax.message.split("\n")[0]}`);
  if (doc.contents === null) throw new RolloutFileError(`${file}:1:1: the file is empty; it starts with "${top}:"`);
  const parsed = schema.safeParse(doc.toJS());
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const path: Path = issue?.path ?? [];
  const where = path.map(String).join(".") || "(the file)";
  // An unknown key points at itself; a bad key of a map (a model name) too; anything else at its value.
  const unknown = issue?.code === "unrecognized_keys" ? issue.keys[0] : undefined;
  let node: Node | undefined;
  let shown = where;
  if (unknown !== undefined) {
    node = keyAt(doc, path, unknown);
    shown = [...path.map(String), unknown].join(".");
  } else if (issue?.code === "invalid_key" && path.length > 0) {
    node = keyAt(doc, path.slice(0, -1), String(path.at(-1)));
  }
  node ??= nodeAt(doc, path).node;
  const offset = node?.range?.[0] ?? 0;
  const value: unknown = doc.getIn(path as unknown[]);
  let message = issue?.message ?? "invalid";
  if (issue?.code === "invalid_key") message = issue.issues[0]?.message ?? message;
  else if (issue?.code === "invalid_type" && value === undefined) message = "required, and missing";
  // YAML reads 2026.12 as a number: a version is a string.
  else if (issue?.code === "invalid_type" && typeof value === "number") message += ' (quote it: "…")';
  throw new RolloutFileError(`${at(offset)}: ${shown}: ${message}`);
}

/**
 * Parses and checks a rollout file (YAML): the models, each with its stable version and
 * optional canary. A syntax error, a value that breaks the schema, an unknown key or a canary
 * that names the stable version is a {@link RolloutFileError} naming `file:line:col`.
 *
 * @example
 * const rollout = parseRolloutFile(readFileSync("rollout.yaml", "utf8"), "rollout.yaml");
 */
export function parseRolloutFile(text: string, file: string): RolloutFile {
  return parseYamlFile(CheckedRolloutFile, text, file, "models");
}

/** One model's entry in a line: `demo → v2 (canary v3 10%, reverts past 20% after 20 jobs)`. */
export function describeEntry(model: string, e: ModelRollout): string {
  const c = e.canary;
  const canary = c
    ? ` (canary ${c.version} ${c.percent}%, reverts past ${c.max_failure_pct}% failed after ${c.min_jobs} jobs)`
    : "";
  return `${model} → ${e.version}${canary}`;
}

/**
 * The human view of `rollout status`: per model and version, its role, how many agents load,
 * serve or failed it, and its figures over its window; then each model's reverts.
 */
export function statusText(status: RolloutStatus): string {
  const models = Object.entries(status.models);
  if (models.length === 0) return "no rollouts applied yet\n";
  const rows: string[][] = [];
  const notes: string[] = [];
  for (const [model, s] of models) {
    const versions = [s.stable.version, ...(s.canary ? [s.canary.version] : [])];
    for (const v of Object.keys(s.agents)) if (!versions.includes(v)) versions.push(v);
    for (const v of versions) {
      const role =
        v === s.stable.version ? "stable" : v === s.canary?.version ? `canary ${s.canary.percent}%` : "not desired";
      const a = s.agents[v] ?? { loading: 0, serving: 0, failed: 0 };
      const agents = [
        a.serving > 0 ? `${a.serving} serving` : "",
        a.loading > 0 ? `${a.loading} loading` : "",
        a.failed > 0 ? `${a.failed} failed` : "",
      ].filter(Boolean);
      const w = s.window[v];
      rows.push([
        model,
        v,
        role,
        agents.join(", ") || "none",
        w ? String(w.jobs) : "—",
        w ? `${w.failed} (${w.failure_pct}%)` : "—",
      ]);
    }
    for (const failed of s.agent_versions.filter((a) => a.state === "failed" && a.message)) {
      notes.push(`${model} ${failed.version} failed to load on ${failed.agent_id}: ${failed.message}`);
    }
    for (const r of s.reverts) {
      const why =
        r.reason === "operator"
          ? "by an operator"
          : r.reason === "load_failed"
            ? "it failed to load"
            : "its failure rate";
      notes.push(
        `${model}: canary ${r.version} reverted at ${r.at} (${why}): ${r.failed} of ${r.jobs} jobs failed (${r.failure_pct}%)`,
      );
    }
  }
  const head = ["MODEL", "VERSION", "ROLE", "AGENTS", "JOBS", "FAILED"];
  return table(head, rows) + (notes.length > 0 ? `\n${notes.join("\n")}\n` : "");
}

/** The human view of `rollout history`: one line per model of each entry, newest first. */
export function historyText(entries: readonly RolloutEntry[]): string {
  if (entries.length === 0) return "no rollouts applied yet\n";
  return table(
    ["ID", "APPLIED", "KIND", "MODEL", "WHAT"],
    entries.flatMap((e) =>
      Object.entries(e.models).map(([model, m]) => [
        String(e.id),
        e.applied_at,
        e.kind,
        model,
        describeEntry(model, m),
      ]),
    ),
  );
}
