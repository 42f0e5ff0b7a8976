/**
 * The client commands of `floodgate`: submit, watch, status, cancel, jobs, and the admin
 * commands (accounts, tokens, agents, queues, rollout). A thin layer over client/: flags are parsed
 * strictly (a wrong flag is a message and exit code 2), the edge and keys come from
 * cli/config.ts, people get summaries and tables, scripts get `--json`. Called by cli/main.ts.
 *
 * Exit codes: 0 done (a watched job succeeded), 1 an error or a job that failed, was cancelled or
 * expired, 2 a usage or configuration error, 130 interrupted (detached or cancelled by Ctrl-C).
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import type { ParseArgsOptionsConfig } from "node:util";
import { createLogUpdate } from "log-update";
import { z } from "zod";
import {
  createAdminClient,
  createClient,
  FloodgateApiError,
  FloodgateNetworkError,
  MalformedAnswerError,
  type AgentView,
  type FloodgateClient,
  type JobEvent,
  type JobView,
  type QueueStats,
} from "../client/index.ts";
import { AccountCreateBody, AgentTokenBody, IdempotencyKey, SubmitBody } from "../shared/api.ts";
import { assertExhaustive } from "../shared/errors.ts";
import { JobStatus } from "../shared/job.ts";
import { uploadProgress, withLocalFiles } from "./local-files.ts";
import { stderrStream } from "./stderr.ts";
import { parseFlags, UsageError } from "./flags.ts";
import { describeEntry, historyText, parseRolloutFile, RolloutFileError, statusText } from "./rollout.ts";
import { table } from "./table.ts";
import { adminConfig, ConfigError, resolveConfig, userConfig, type ResolvedConfig } from "./config.ts";
import {
  formatBytes,
  formatDuration,
  initialProgress,
  liveLine,
  logLines,
  noteLines,
  reduce,
  type Progress,
} from "./progress.ts";

// ---- the world the commands touch, replaceable in tests ----

export interface Io {
  stdout(s: string): void;
  stderr(s: string): void;
  /** stderr is a terminal: draw the live progress line there. */
  tty: boolean;
  /** Width of that terminal. */
  columns: number;
  /** A person can answer a prompt (stdin and stderr are terminals). */
  interactive: boolean;
  /** Reads one key press for a prompt. */
  readKey(): Promise<string>;
  /** Calls `fn` on Ctrl-C; returns what stops that. */
  onInterrupt(fn: () => void): () => void;
  env: Record<string, string | undefined>;
  cwd: string;
  now(): number;
  fetch: typeof fetch;
}

/** The real terminal and process. */
export function processIo(): Io {
  return {
    stdout: (s) => void process.stdout.write(s),
    stderr: (s) => void process.stderr.write(s),
    tty: process.stderr.isTTY === true,
    // Read on every draw: the terminal may be resized. 0 when the size is unknown.
    get columns() {
      return process.stderr.columns || 80;
    },
    interactive: process.stdin.isTTY === true && process.stderr.isTTY === true,
    readKey: () =>
      new Promise((res) => {
        const stdin = process.stdin;
        stdin.setRawMode(true);
        stdin.resume();
        stdin.once("data", (b: Buffer) => {
          stdin.setRawMode(false);
          stdin.pause();
          res(b.toString("utf8"));
        });
      }),
    onInterrupt: (fn) => {
      process.on("SIGINT", fn);
      return () => void process.off("SIGINT", fn);
    },
    env: process.env,
    cwd: process.cwd(),
    now: () => Date.now(),
    fetch: (input, init) => globalThis.fetch(input, init),
  };
}

// ---- flags ----

export const CONN_USER = {
  url: { type: "string" },
  "api-key": { type: "string" },
  state: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsOptionsConfig;

export const CONN_ADMIN = {
  url: { type: "string" },
  "admin-key": { type: "string" },
  state: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsOptionsConfig;

export const JSON_FLAG = { json: { type: "boolean" } } as const satisfies ParseArgsOptionsConfig;

export const Conn = {
  url: z.string().min(1).optional(),
  "api-key": z.string().min(1).optional(),
  "admin-key": z.string().min(1).optional(),
  state: z.string().min(1).optional(),
  help: z.boolean().optional(),
  json: z.boolean().optional(),
};

const required = (what: string) => ({
  error: (iss: { input: unknown }) => (iss.input === undefined ? `required (${what})` : undefined),
});

function parseJsonFlag(name: string, text: string, cwd: string): Record<string, unknown> {
  let source = text;
  let where = `--${name}`;
  if (text.startsWith("@")) {
    const file = resolve(cwd, text.slice(1));
    try {
      source = readFileSync(file, "utf8");
    } catch (err) {
      throw new UsageError(
        `--${name} ${text}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
    where = `--${name} ${text}`;
  }
  let value: unknown;
  try {
    value = JSON.parse(source);
  } catch (err) {
    throw new UsageError(`${where} is not JSON: ${(err as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new UsageError(`${where} must be a JSON object, e.g. '{"prompt":"a red fox"}'`);
  }
  return value as Record<string, unknown>;
}

// ---- output helpers ----

export function ago(iso: string | null | undefined, now: number): string {
  if (!iso) return "—";
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return iso;
  return `${formatDuration((now - at) / 1000)} ago`;
}

export function jsonOut(io: Io, value: unknown): void {
  io.stdout(JSON.stringify(value, null, 2) + "\n");
}

/** One line on what a job is doing now. */
function jobState(j: JobView): string {
  switch (j.status) {
    case "queued": {
      const q = j.queue;
      if (!q) return "queued";
      const eta = q.eta_s === null ? "" : ` · ETA ${formatDuration(q.eta_s)}`;
      return `queued · ${q.position} ahead${eta}${q.reason === "capacity" ? "" : ` · ${q.reason.replace("_", " ")}`}`;
    }
    case "running": {
      const p = j.progress;
      const step = p && typeof p.step === "number" && typeof p.total === "number" ? ` ${p.step}/${p.total}` : "";
      return `running · ${j.phase}${step}`;
    }
    case "succeeded":
      return `succeeded · ${j.outputs?.length ?? 0} output${j.outputs?.length === 1 ? "" : "s"}`;
    case "failed":
    case "expired":
      return `${j.status} · ${j.error ? `${j.error.code}: ${j.error.message}` : ""}`;
    case "cancelled":
      return "cancelled";
    default:
      return assertExhaustive(j.status);
  }
}

/** The human summary of `floodgate status`. */
export function describeJob(j: JobView, now: number): string {
  const rows: [string, string][] = [
    ["job", `${j.id} · ${j.model} · tier ${j.tier}${j.version ? ` · version ${j.version}` : ""}`],
    ["status", jobState(j)],
    ["created", `${j.created_at} (${ago(j.created_at, now)})`],
  ];
  const t = j.timings;
  const times = [
    t.queued_s === null ? undefined : `queued ${formatDuration(t.queued_s)}`,
    t.running_s === null ? undefined : `ran ${formatDuration(t.running_s)}`,
  ].filter((x) => x !== undefined);
  if (times.length > 0) rows.push(["timings", times.join(" · ")]);
  for (const a of j.attempts) {
    const span = a.executing_s === null ? `since ${a.started_at}` : formatDuration(a.executing_s);
    rows.push([`attempt ${a.n}`, `${a.outcome} · ${span}${a.reason ? ` · ${a.reason}` : ""}`]);
  }
  for (const o of j.outputs ?? []) {
    const size = typeof o.size === "number" ? ` ${formatBytes(o.size)}` : "";
    rows.push([
      "output",
      `${String(o.name)} ${String(o.content_type ?? "")}${size}${typeof o.url === "string" ? `\n${" ".repeat(10)}${o.url}` : ""}`,
    ]);
  }
  if (j.metadata && Object.keys(j.metadata).length > 0) rows.push(["metadata", JSON.stringify(j.metadata)]);
  return rows.map(([k, v]) => `${k.padEnd(10)}${v}`).join("\n") + "\n";
}

/** Queue rows summed over shards, one per model and tier. */
export function queueTable(rows: QueueStats[]): string {
  const by = new Map<string, QueueStats>();
  for (const r of rows) {
    const key = `${r.model}\u0000${r.tier}`;
    const held = by.get(key);
    by.set(
      key,
      held
        ? {
            ...held,
            depth: held.depth + r.depth,
            running: held.running + r.running,
            oldest_wait_s: Math.max(held.oldest_wait_s, r.oldest_wait_s),
            max_wait_over_slo: Math.max(held.max_wait_over_slo, r.max_wait_over_slo),
            drain_per_s: held.drain_per_s + r.drain_per_s,
          }
        : r,
    );
  }
  return table(
    ["MODEL", "TIER", "DEPTH", "RUNNING", "OLDEST WAIT", "WAIT/SLO", "DRAIN/S"],
    [...by.values()].map((q) => [
      q.model,
      q.tier,
      String(q.depth),
      String(q.running),
      q.depth > 0 ? formatDuration(q.oldest_wait_s) : "—",
      q.max_wait_over_slo.toFixed(2),
      q.drain_per_s.toFixed(2),
    ]),
  );
}

function gpuText(a: AgentView): string {
  const g = a.gpus[0];
  if (!g) return "none";
  const parts = [`${a.gpus.length}× ${g.name ?? "GPU"}`];
  if (g.util_pct !== undefined) parts.push(`${Math.round(g.util_pct)}%`);
  if (g.vram_used_mb !== undefined && g.vram_total_mb !== undefined) {
    parts.push(`${(g.vram_used_mb / 1024).toFixed(1)}/${(g.vram_total_mb / 1024).toFixed(0)} GiB`);
  }
  if (g.temp_c !== undefined) parts.push(`${Math.round(g.temp_c)}°C`);
  return parts.join(" ");
}

/** The agents table: name, pool, models, slots, GPU, last heartbeat. */
export function agentTable(agents: AgentView[], now: number): string {
  return table(
    ["NAME", "POOL", "MODELS", "SLOTS", "GPU", "LAST HEARTBEAT"],
    agents.map((a) => [a.name, a.pool, a.models.join(","), String(a.slots), gpuText(a), ago(a.last_heartbeat, now)]),
  );
}

/** The jobs table of `floodgate jobs`. */
export function jobTable(jobs: JobView[], now: number): string {
  return table(
    ["ID", "MODEL", "STATUS", "CREATED", "DETAIL"],
    jobs.map((j) => [j.id, j.model, j.status, ago(j.created_at, now), jobState(j).replace(/^\w+( · )?/, "")]),
  );
}

// ---- watching a job ----

const EXT: Record<string, string> = {
  "image/png": "png",
  "image/jpeg": "jpg",
  "image/gif": "gif",
  "image/webp": "webp",
  "image/apng": "png",
  "video/mp4": "mp4",
  "video/webm": "webm",
};

/** The file extension for a content type (`bin` when unknown). */
export function extensionOf(contentType: string): string {
  return EXT[contentType.split(";")[0]?.trim().toLowerCase() ?? ""] ?? "bin";
}

/** A safe file name for an output: its own name when that is one plain file name. */
export function outputFileName(name: string, index: number, contentType: string): string {
  return /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(name) ? name : `output-${index + 1}.${extensionOf(contentType)}`;
}

/**
 * The one live line on a terminal, redrawn in place by log-update, and plain lines printed
 * above it. Without a terminal nothing is drawn: plain lines are all there is.
 */
export class Screen {
  private readonly io: Io;
  private readonly draw: ReturnType<typeof createLogUpdate> | undefined;

  constructor(io: Io) {
    this.io = io;
    // The cursor stays as it is: a Ctrl-C question may follow.
    this.draw = io.tty ? createLogUpdate(stderrStream(io), { showCursor: true }) : undefined;
  }

  line(s: string): void {
    if (this.draw) this.draw.persist(s);
    else this.io.stderr(s + "\n");
  }

  live(s: string): void {
    this.draw?.(s);
  }

  clear(): void {
    this.draw?.clear();
  }
}

class Interrupted extends Error {}
class WatchTimeout extends Error {}

interface WatchOptions {
  out: string | undefined;
  json: boolean;
  timeoutS: number;
  cancelOnInterrupt: boolean;
}

type Output = Extract<JobEvent, { event: "succeeded" }>["data"]["outputs"][number];

/** Streams `url` into `file` through a `.part` file, checking size and sha256 when known. */
async function download(
  io: Io,
  url: string,
  file: string,
  expect: { size?: number; sha256?: string },
  signal: AbortSignal,
): Promise<number> {
  const res = await io.fetch(url, { signal });
  if (!res.ok || res.body === null) {
    await res.body?.cancel().catch(() => undefined);
    throw Object.assign(new Error(`GET ${url.split("?")[0]} answered ${res.status}`), { status: res.status });
  }
  const tmp = `${file}.part`;
  const fh = await open(tmp, "w");
  const hash = createHash("sha256");
  let size = 0;
  try {
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      hash.update(value);
      size += value.length;
      await fh.write(value);
    }
  } catch (err) {
    await fh.close();
    rmSync(tmp, { force: true });
    throw err;
  }
  await fh.close();
  const digest = hash.digest("hex");
  if (
    (expect.size !== undefined && size !== expect.size) ||
    (expect.sha256 !== undefined && digest !== expect.sha256)
  ) {
    rmSync(tmp, { force: true });
    throw new Error(
      `${file}: the download does not match the job's record (size ${size}, sha256 ${digest.slice(0, 12)}…)`,
    );
  }
  renameSync(tmp, file);
  return size;
}

/**
 * Downloads a job's outputs into `dir`; a URL that expired is refreshed by reading the job.
 * URLs are resolved against the edge's URL (an edge without a configured public URL signs them
 * relative to itself).
 */
async function saveOutputs(
  io: Io,
  fg: FloodgateClient,
  baseUrl: string,
  jobId: string,
  outputs: Output[],
  dir: string,
  signal: AbortSignal,
  screen: Screen,
): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const saved: string[] = [];
  let fresh: JobView | undefined;
  for (const [i, o] of outputs.entries()) {
    const file = join(dir, outputFileName(o.name, i, o.content_type));
    const expect = { size: o.size, sha256: o.sha256 };
    let size: number;
    try {
      size = await download(io, new URL(o.url, baseUrl).href, file, expect, signal);
    } catch (err) {
      const status = (err as { status?: number }).status;
      if (status !== 403 && status !== 404) throw err;
      // Signed URLs last an hour; a job read signs them afresh.
      fresh ??= await fg.jobs.get(jobId, { signal });
      const again = fresh.outputs?.find((x) => x.name === o.name)?.url;
      if (typeof again !== "string") throw err;
      size = await download(io, new URL(again, baseUrl).href, file, expect, signal);
    }
    screen.line(`saved ${relative(io.cwd, file) || file} (${formatBytes(size)})`);
    saved.push(file);
  }
  return saved;
}

async function savePreview(
  io: Io,
  baseUrl: string,
  e: Extract<JobEvent, { event: "preview" }>,
  n: number,
  dir: string,
  signal: AbortSignal,
): Promise<string | undefined> {
  let bytes: Uint8Array;
  if (e.data.data_base64 !== undefined) bytes = Buffer.from(e.data.data_base64, "base64");
  else if (e.data.url !== undefined) {
    const res = await io.fetch(new URL(e.data.url, baseUrl), { signal });
    if (!res.ok) throw new Error(`preview ${n}: GET answered ${res.status}`);
    bytes = new Uint8Array(await res.arrayBuffer());
  } else return undefined;
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `preview-${n}.${extensionOf(e.data.content_type)}`);
  writeFileSync(file, bytes);
  return file;
}

/** What Ctrl-C does: ask on a terminal, else detach (or cancel with --cancel-on-interrupt). */
async function onInterrupt(io: Io, fg: FloodgateClient, jobId: string, cancelOnInterrupt: boolean): Promise<number> {
  let cancel = cancelOnInterrupt;
  if (!cancel && io.interactive) {
    io.stderr("cancel the job or detach? [c/D] ");
    const key = await io.readKey();
    cancel = key.trim().toLowerCase() === "c";
    io.stderr(cancel ? "c\n" : "d\n");
  }
  if (cancel) {
    const job = await fg.jobs.cancel(jobId);
    io.stderr(
      job.status === "cancelled"
        ? `cancelled ${jobId}\n`
        : `cancel requested: ${jobId} is ${job.status}; its agent stops it at the next step\n`,
    );
  } else {
    io.stderr(`detached; ${jobId} goes on. Follow it again: floodgate watch ${jobId}\n`);
  }
  io.stdout(`${jobId}\n`);
  return 130;
}

/**
 * Follows a job to its end: live progress on stderr, previews and outputs saved, `--json` events
 * on stdout. Exit code 0 when it succeeded, 1 otherwise, 130 when interrupted.
 */
async function watchJob(io: Io, fg: FloodgateClient, baseUrl: string, jobId: string, o: WatchOptions): Promise<number> {
  const dir = resolve(io.cwd, o.out ?? join("floodgate-out", jobId));
  const screen = new Screen(io);
  const stop = new AbortController();
  let p: Progress = initialProgress(jobId, io.now());
  const deadline = setTimeout(() => stop.abort(new WatchTimeout()), o.timeoutS * 1000);
  // The first Ctrl-C is ours; a second one gets Node's default (exit) once this handler is gone.
  const off = io.onInterrupt(() => {
    off();
    stop.abort(new Interrupted());
  });
  const ticker = io.tty ? setInterval(() => screen.live(liveLine(p, io.now(), io.columns)), 100) : undefined;
  ticker?.unref?.();
  try {
    for await (const e of fg.jobs.events(jobId, { signal: stop.signal })) {
      const prev = p;
      p = reduce(p, e, io.now());
      if (o.json) io.stdout(JSON.stringify(e) + "\n");
      for (const l of io.tty ? noteLines(e) : logLines(prev, p, e)) screen.line(l);
      switch (e.event) {
        case "preview": {
          try {
            const file = await savePreview(io, baseUrl, e, p.previews, dir, stop.signal);
            if (file !== undefined && !io.tty)
              screen.line(`preview ${p.previews} saved: ${relative(io.cwd, file) || file}`);
          } catch (err) {
            if (stop.signal.aborted) throw err;
            screen.line(`(preview not saved: ${(err as Error).message})`);
          }
          break;
        }
        case "succeeded": {
          screen.clear();
          clearInterval(ticker);
          const saved = await saveOutputs(io, fg, baseUrl, jobId, e.data.outputs, dir, stop.signal, screen);
          if (!o.json) for (const f of saved) io.stdout(`${f}\n`);
          return 0;
        }
        case "failed":
        case "cancelled":
        case "expired":
          return 1;
        case "status":
        case "progress":
        case "log":
          break;
        default:
          assertExhaustive(e);
      }
      screen.live(liveLine(p, io.now(), io.columns));
    }
    throw new Error(`the event stream of ${jobId} ended without the job's end`);
  } catch (err) {
    // Stop redrawing before anything else is written (the Ctrl-C question above all).
    clearInterval(ticker);
    screen.clear();
    const why: unknown = stop.signal.reason;
    if (why instanceof Interrupted) {
      if (p.end !== undefined) {
        io.stderr("interrupted; not every output was saved\n");
        return 130;
      }
      return await onInterrupt(io, fg, jobId, o.cancelOnInterrupt);
    }
    if (why instanceof WatchTimeout) {
      io.stderr(
        `stopped watching after ${formatDuration(o.timeoutS)}; ${jobId} is still ${p.status ?? "pending"} and goes on. ` +
          `Follow it again: floodgate watch ${jobId}\n`,
      );
      return 1;
    }
    throw err;
  } finally {
    screen.clear();
    clearTimeout(deadline);
    clearInterval(ticker);
    off();
  }
}

// ---- commands ----

const SUBMIT_HELP = `floodgate submit — submit a job, and with --watch follow it to the end

Usage:
  floodgate submit <model> --input '<json>' [options]
  floodgate submit <model> --input @input.json [options]

Options:
  --input JSON|@FILE       the job's input: a JSON object, or @ and a file holding one (required).
                           A top-level value "@PATH" is a local image or video, uploaded first
                           (a progress bar on a terminal) and sent as its file id, for a model
                           field that takes a file: --input '{"video":"@clip.mp4"}'. "@@…" is a
                           literal "@…"
  --metadata JSON          an object of strings, numbers and booleans kept with the job
  --idempotency-key KEY    the same key and body within 24 h return the same job
  --webhook URL            a URL told of the job's status changes, signed with the account's
                           job-webhook secret (floodgate webhooks job-secret)
  --watch                  follow the job: progress on stderr (a live bar on a terminal), previews
                           and outputs saved to --out; exit 0 when it succeeds, 1 otherwise
  --out DIR                where --watch saves previews and outputs (default ./floodgate-out/<job id>)
  --timeout S              stop watching after S seconds (default 3600); the job goes on
  --cancel-on-interrupt    Ctrl-C cancels the job (default: ask on a terminal, else detach)
  --json                   print the answer as JSON; with --watch, every event as one JSON line
${connHelp("user")}
Without --watch it prints the job id. Ctrl-C while watching asks "cancel the job or detach?"
on a terminal; elsewhere it detaches and prints the job id (exit 130).
`;

const WATCH_HELP = `floodgate watch — follow an existing job to its end, like submit --watch

Usage:
  floodgate watch <job id> [--out DIR] [--timeout S] [--cancel-on-interrupt] [--json]

Options:
  --out DIR                where previews and outputs go (default ./floodgate-out/<job id>)
  --timeout S              stop watching after S seconds (default 3600); the job goes on
  --cancel-on-interrupt    Ctrl-C cancels the job (default: ask on a terminal, else detach)
  --json                   every event as one JSON line on stdout
${connHelp("user")}`;

const STATUS_HELP = `floodgate status — a job's state, attempts and outputs

Usage:
  floodgate status <job id> [--json]

Options:
  --json                   the job as the API answers it
${connHelp("user")}`;

const CANCEL_HELP = `floodgate cancel — cancel a job (a queued job at once; a running one at its next step)

Usage:
  floodgate cancel <job id> [--json]

Options:
  --json                   the job after cancelling, as the API answers it
${connHelp("user")}`;

const JOBS_HELP = `floodgate jobs — your jobs, newest first

Usage:
  floodgate jobs [--status S] [--limit N] [--cursor C] [--json]

Options:
  --status S               queued | running | succeeded | failed | cancelled | expired
  --limit N                1–100 (default 20)
  --cursor C               the next page, as the previous page printed it
  --json                   the page as the API answers it
${connHelp("user")}`;

const ACCOUNTS_HELP = `floodgate accounts — manage accounts (admin)

Usage:
  floodgate accounts create --name NAME --tier TIER [--rate-limit N] [--json]
      Create an account and its first API key (printed once: keep it).

Options:
  --name NAME              a name for people
  --tier TIER              api | enterprise | plus | light | free, or a tier you configured
  --rate-limit N           requests per minute (default: the tier's)
  --json                   the answer as JSON
${connHelp("admin")}`;

const TOKENS_HELP = `floodgate tokens — agent tokens (admin)

Usage:
  floodgate tokens create --pool POOL --models a,b [--ttl-s N] [--json]
      Mint a token agents of POOL use to serve those models (floodgate agent --token …).
  floodgate tokens revoke <token id>
      Revoke it; agents using it are disconnected.

Options:
  --pool POOL              the provider pool (a-z, 0-9, '.', '_', '-')
  --models a,b             the models its agents may serve
  --ttl-s N                lifetime in seconds (default 30 days)
  --json                   the answer as JSON
${connHelp("admin")}`;

const AGENTS_HELP = `floodgate agents — connected agents (admin)

Usage:
  floodgate agents [--json]
      Name, pool, models, slots, GPU and last heartbeat of every connected agent.
  floodgate agents reclaim ID [--json]
      Take the agent's machine back (a training cluster reclaiming lent GPUs): it is
      disconnected and stops, and its jobs go back to the head of their queues without
      spending attempts.
${connHelp("admin")}`;

const QUEUES_HELP = `floodgate queues — queues per model and tier (admin)

Usage:
  floodgate queues [--json]

Prints depth, running jobs, oldest wait, the largest wait/SLO and the drain rate (jobs/s),
summed over a model's shards.
${connHelp("admin")}`;

const ROLLOUT_HELP = `floodgate rollout — which versions the models serve (admin)

Usage:
  floodgate rollout apply FILE.yaml [--json]
      Apply a rollout file: per model its stable version and an optional canary.
  floodgate rollout status [--json]
      Per model: desired versions, which agents serve which version, each version's jobs and
      failure rate since it became desired, and the canary reverts with their figures.
  floodgate rollout undo MODEL [--json]
      Apply the model's previous rollout entry again (a second undo goes back again).
  floodgate rollout revert MODEL [--json]
      End the model's canary now; its jobs go to the stable version.
  floodgate rollout history [--limit N] [--json]
      The rollouts applied, newest first.

A rollout file:
  models:
    demo:
      version: "2026-12-06.1"
      canary: { version: "2026-12-06.2", percent: 10, max_failure_pct: 20, min_jobs: 20 }

Options:
  --limit N                history entries, 1–1000 (default 100)
  --json                   the answer as JSON
${connHelp("admin")}`;

export function connHelp(kind: "user" | "admin"): string {
  const key =
    kind === "user"
      ? "  --api-key KEY            a user API key (fgk_…)           or FLOODGATE_API_KEY"
      : "  --admin-key KEY          the edge's admin key              or FLOODGATE_ADMIN_KEY";
  return `  --url URL                the edge                          or FLOODGATE_URL
${key}
  --state DIR              else read them from DIR/local.json (default: the nearest
                           .floodgate/local.json, which \`npm start\` writes)
  -h, --help               this text
`;
}

/** The lines cli/main.ts adds to its help. */
export const CLIENT_HELP = `  floodgate submit <model> --input '<json>'|@file.json [--watch] [--out DIR] [--json]
      Submit a job; with --watch follow it (live progress, previews, outputs saved).
  floodgate watch <job id> [--out DIR]       follow a job to its end
  floodgate status <job id> [--json]         a job's state, attempts and outputs
  floodgate cancel <job id>                  cancel a job
  floodgate jobs [--status S] [--limit N]    your jobs, newest first
  floodgate files list|upload PATH|rm ID     your input files (images, video) for jobs
  floodgate accounts create --name N --tier T [--rate-limit R]     (admin)
  floodgate tokens create --pool P --models a,b [--ttl-s N]        (admin)
  floodgate tokens revoke <token id>                               (admin)
  floodgate agents                           connected agents      (admin)
  floodgate agents reclaim <agent id>        take a machine back  (admin)
  floodgate queues                           queues by model, tier (admin)
  floodgate capacity [--json]                agents connected and needed per model (admin)
  floodgate models push DIR [--json]         push a model version, resumable  (admin)
  floodgate models list [MODEL] [--json]     versions, newest first           (admin)
  floodgate webhooks add|list|remove|rotate|job-secret|deliveries|redeliver
      Signed webhooks: your endpoints and their secrets, a job's deliveries.
  floodgate usage [--group-by model|version|day] [--csv|--json]
      GPU-seconds executing, jobs by outcome, output bytes; --account for any (admin).
  floodgate rollout apply|status|undo|revert|history               (admin)
      Which versions the models serve: apply FILE.yaml, canaries, undo, revert.
      The edge and keys come from --url/--api-key/--admin-key, FLOODGATE_URL/_API_KEY/_ADMIN_KEY,
      or .floodgate/local.json (written by \`npm start\`). Each command has --help.
`;

export type Runner = (argv: string[], io: Io) => Promise<number>;

export interface Ctx {
  config: ResolvedConfig;
}

export function connection(
  flags: {
    url?: string | undefined;
    "api-key"?: string | undefined;
    "admin-key"?: string | undefined;
    state?: string | undefined;
  },
  io: Io,
): Ctx {
  return { config: resolveConfig(flags, io.env, io.cwd) };
}

export function user(ctx: Ctx, io: Io): { fg: FloodgateClient; url: string } {
  const { url, apiKey } = userConfig(ctx.config);
  return { fg: createClient({ url, apiKey, fetch: io.fetch }), url };
}

export function admin(ctx: Ctx, io: Io) {
  const { url, adminKey } = adminConfig(ctx.config);
  return createAdminClient({ url, adminKey, fetch: io.fetch });
}

const Timeout = z.coerce
  .number()
  .positive()
  .max(7 * 86400)
  .default(3600);

const submit: Runner = async (argv, io) => {
  const parsed = parseFlags(
    argv,
    {
      ...CONN_USER,
      ...JSON_FLAG,
      input: { type: "string" },
      metadata: { type: "string" },
      "idempotency-key": { type: "string" },
      webhook: { type: "string" },
      watch: { type: "boolean" },
      out: { type: "string" },
      timeout: { type: "string" },
      "cancel-on-interrupt": { type: "boolean" },
    },
    z.strictObject({
      ...Conn,
      input: z.string(required("a JSON object or @file.json")),
      metadata: z.string().optional(),
      "idempotency-key": IdempotencyKey.optional(),
      webhook: z.string().optional(),
      watch: z.boolean().optional(),
      out: z.string().min(1).optional(),
      timeout: Timeout,
      "cancel-on-interrupt": z.boolean().optional(),
    }),
    { min: 1, max: 1, names: 'the model, e.g. floodgate submit demo --input \'{"prompt":"a red fox"}\'' },
  );
  if (!parsed) return help(io, SUBMIT_HELP);
  const { flags, args } = parsed;
  const model = args[0] as string;
  const input = parseJsonFlag("input", flags.input, io.cwd);
  const metadata = flags.metadata === undefined ? undefined : parseJsonFlag("metadata", flags.metadata, io.cwd);
  const body = SubmitBody.safeParse({ input, metadata, webhook: flags.webhook });
  if (!body.success) {
    const issue = body.error.issues[0];
    throw new UsageError(`--${issue?.path.join(".") ?? "input"}: ${issue?.message ?? "invalid"}`);
  }
  const withFiles = withLocalFiles(input, io.cwd);
  const { fg, url } = user(connection(flags, io), io);
  const answer = await fg.jobs.submit(model, withFiles, {
    idempotencyKey: flags["idempotency-key"],
    metadata: body.data.metadata,
    webhook: body.data.webhook,
    onUploadProgress: uploadProgress(io),
  });
  if (!flags.watch) {
    if (flags.json) jsonOut(io, answer);
    else io.stdout(`${answer.id}\n`);
    return 0;
  }
  io.stderr(`submitted ${answer.id} (${answer.model}, tier ${answer.tier})\n`);
  return await watchJob(io, fg, url, answer.id, {
    out: flags.out,
    json: flags.json === true,
    timeoutS: flags.timeout,
    cancelOnInterrupt: flags["cancel-on-interrupt"] === true,
  });
};

const watch: Runner = async (argv, io) => {
  const parsed = parseFlags(
    argv,
    {
      ...CONN_USER,
      ...JSON_FLAG,
      out: { type: "string" },
      timeout: { type: "string" },
      "cancel-on-interrupt": { type: "boolean" },
    },
    z.strictObject({
      ...Conn,
      out: z.string().min(1).optional(),
      timeout: Timeout,
      "cancel-on-interrupt": z.boolean().optional(),
    }),
    { min: 1, max: 1, names: "the job id" },
  );
  if (!parsed) return help(io, WATCH_HELP);
  const { flags, args } = parsed;
  const { fg, url } = user(connection(flags, io), io);
  return await watchJob(io, fg, url, args[0] as string, {
    out: flags.out,
    json: flags.json === true,
    timeoutS: flags.timeout,
    cancelOnInterrupt: flags["cancel-on-interrupt"] === true,
  });
};

const status: Runner = async (argv, io) => {
  const parsed = parseFlags(argv, { ...CONN_USER, ...JSON_FLAG }, z.strictObject(Conn), {
    min: 1,
    max: 1,
    names: "the job id",
  });
  if (!parsed) return help(io, STATUS_HELP);
  const { fg } = user(connection(parsed.flags, io), io);
  const job = await fg.jobs.get(parsed.args[0] as string);
  if (parsed.flags.json) jsonOut(io, job);
  else io.stdout(describeJob(job, io.now()));
  return 0;
};

const cancel: Runner = async (argv, io) => {
  const parsed = parseFlags(argv, { ...CONN_USER, ...JSON_FLAG }, z.strictObject(Conn), {
    min: 1,
    max: 1,
    names: "the job id",
  });
  if (!parsed) return help(io, CANCEL_HELP);
  const { fg } = user(connection(parsed.flags, io), io);
  const job = await fg.jobs.cancel(parsed.args[0] as string);
  if (parsed.flags.json) jsonOut(io, job);
  else if (job.status === "cancelled") io.stdout(`cancelled ${job.id}\n`);
  else if (job.status === "running")
    io.stdout(`cancel requested: ${job.id} is running; its agent stops it at the next step\n`);
  else io.stdout(`${job.id} had already ended: ${job.status}\n`);
  return 0;
};

const jobs: Runner = async (argv, io) => {
  const parsed = parseFlags(
    argv,
    { ...CONN_USER, ...JSON_FLAG, status: { type: "string" }, limit: { type: "string" }, cursor: { type: "string" } },
    z.strictObject({
      ...Conn,
      status: JobStatus.optional(),
      limit: z.coerce.number().int().min(1).max(100).default(20),
      cursor: z.string().min(1).max(64).optional(),
    }),
    { min: 0, max: 0, names: "" },
  );
  if (!parsed) return help(io, JOBS_HELP);
  const { flags } = parsed;
  const { fg } = user(connection(flags, io), io);
  const page = await fg.jobs.list({ status: flags.status, limit: flags.limit, cursor: flags.cursor });
  if (flags.json) {
    jsonOut(io, page);
    return 0;
  }
  if (page.jobs.length === 0) io.stdout(flags.status ? `no ${flags.status} jobs\n` : "no jobs yet\n");
  else io.stdout(jobTable(page.jobs, io.now()));
  if (page.next_cursor)
    io.stdout(`more: floodgate jobs --cursor ${page.next_cursor}${flags.status ? ` --status ${flags.status}` : ""}\n`);
  return 0;
};

const accounts: Runner = async (argv, io) => {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === "-h" || sub === "--help" || sub === "help") return help(io, ACCOUNTS_HELP);
  if (sub !== "create") throw new UsageError(`unknown accounts command ${JSON.stringify(sub)} (try: accounts create)`);
  const parsed = parseFlags(
    rest,
    {
      ...CONN_ADMIN,
      ...JSON_FLAG,
      name: { type: "string" },
      tier: { type: "string" },
      "rate-limit": { type: "string" },
    },
    z.strictObject({
      ...Conn,
      name: z.string(required("a name for people")).pipe(AccountCreateBody.shape.name),
      tier: z.string(required("api, enterprise, plus, light, free, …")).pipe(AccountCreateBody.shape.tier),
      "rate-limit": z.coerce.number().int().positive().max(1_000_000).optional(),
    }),
    { min: 0, max: 0, names: "" },
  );
  if (!parsed) return help(io, ACCOUNTS_HELP);
  const { flags } = parsed;
  const out = await admin(connection(flags, io), io).accounts.create({
    name: flags.name,
    tier: flags.tier,
    ...(flags["rate-limit"] === undefined ? {} : { rate_limit: flags["rate-limit"] }),
  });
  if (flags.json) jsonOut(io, out);
  else
    io.stdout(
      `account  ${out.id}\nkey id   ${out.key_id}\napi key  ${out.api_key}\n(the key is shown once: keep it)\n`,
    );
  return 0;
};

const tokens: Runner = async (argv, io) => {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === "-h" || sub === "--help" || sub === "help") return help(io, TOKENS_HELP);
  if (sub === "create") {
    const parsed = parseFlags(
      rest,
      {
        ...CONN_ADMIN,
        ...JSON_FLAG,
        pool: { type: "string" },
        models: { type: "string" },
        "ttl-s": { type: "string" },
      },
      z.strictObject({
        ...Conn,
        pool: z.string(required("the provider pool")).pipe(AgentTokenBody.shape.pool),
        models: z
          .string(required("comma-separated model names"))
          .transform((s) =>
            s
              .split(",")
              .map((m) => m.trim())
              .filter((m) => m !== ""),
          )
          .pipe(AgentTokenBody.shape.models),
        "ttl-s": z.coerce
          .number()
          .int()
          .min(60)
          .max(365 * 86400)
          .optional(),
      }),
      { min: 0, max: 0, names: "" },
    );
    if (!parsed) return help(io, TOKENS_HELP);
    const { flags } = parsed;
    const ctx = connection(flags, io);
    const out = await admin(ctx, io).tokens.create({
      pool: flags.pool,
      models: flags.models,
      ...(flags["ttl-s"] === undefined ? {} : { ttl_s: flags["ttl-s"] }),
    });
    if (flags.json) jsonOut(io, out);
    else {
      io.stdout(`token id  ${out.id}\nexpires   ${out.expires_at}\ntoken     ${out.token}\n`);
      io.stderr(`Attach an agent: floodgate agent --url ${ctx.config.url?.value ?? "URL"} --token <token>\n`);
    }
    return 0;
  }
  if (sub === "revoke") {
    const parsed = parseFlags(rest, CONN_ADMIN, z.strictObject(Conn), {
      min: 1,
      max: 1,
      names: "the token id (tok_…)",
    });
    if (!parsed) return help(io, TOKENS_HELP);
    const id = parsed.args[0] as string;
    await admin(connection(parsed.flags, io), io).tokens.revoke(id);
    io.stdout(`revoked ${id}\n`);
    return 0;
  }
  throw new UsageError(`unknown tokens command ${JSON.stringify(sub)} (try: tokens create, tokens revoke)`);
};

const agents: Runner = async (argv, io) => {
  if (argv[0] === "reclaim") {
    const parsed = parseFlags(argv.slice(1), { ...CONN_ADMIN, ...JSON_FLAG }, z.strictObject(Conn), {
      min: 1,
      max: 1,
      names: "the agent id (agt_…)",
    });
    if (!parsed) return help(io, AGENTS_HELP);
    const out = await admin(connection(parsed.flags, io), io).agents.reclaim(parsed.args[0] as string);
    if (parsed.flags.json) jsonOut(io, out);
    else io.stdout(`reclaimed ${out.agent_id}: ${out.released} job(s) back to their queues, no attempt spent\n`);
    return 0;
  }
  const parsed = parseFlags(argv, { ...CONN_ADMIN, ...JSON_FLAG }, z.strictObject(Conn), { min: 0, max: 0, names: "" });
  if (!parsed) return help(io, AGENTS_HELP);
  const list = await admin(connection(parsed.flags, io), io).agents.list();
  if (parsed.flags.json) jsonOut(io, list);
  else io.stdout(list.length === 0 ? "no agents connected\n" : agentTable(list, io.now()));
  return 0;
};

const queues: Runner = async (argv, io) => {
  const parsed = parseFlags(argv, { ...CONN_ADMIN, ...JSON_FLAG }, z.strictObject(Conn), { min: 0, max: 0, names: "" });
  if (!parsed) return help(io, QUEUES_HELP);
  const list = await admin(connection(parsed.flags, io), io).queues.list();
  if (parsed.flags.json) jsonOut(io, list);
  else io.stdout(list.length === 0 ? "no queues (no models registered)\n" : queueTable(list));
  return 0;
};

/** Reads and checks a rollout file: a mistake is a usage error naming its line and column. */
function readRolloutFile(io: Io, name: string): { text: string; rollout: ReturnType<typeof parseRolloutFile> } {
  const path = resolve(io.cwd, name);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new UsageError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    return { text, rollout: parseRolloutFile(text, name) };
  } catch (err) {
    if (err instanceof RolloutFileError) throw new UsageError(err.message);
    throw err;
  }
}

/** One positional argument, named `names` when missing. */
function oneArg(names: string): { min: number; max: number; names: string } {
  return { min: 1, max: 1, names };
}

const rollout: Runner = async (argv, io) => {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === "-h" || sub === "--help" || sub === "help") return help(io, ROLLOUT_HELP);
  const arity =
    sub === "apply"
      ? oneArg("the rollout file, e.g. rollout.yaml")
      : sub === "undo" || sub === "revert"
        ? oneArg("the model")
        : undefined;
  if (arity === undefined && sub !== "status" && sub !== "history") {
    throw new UsageError(`unknown rollout command ${JSON.stringify(sub)} (try: apply, status, undo, revert, history)`);
  }
  const parsed = parseFlags(
    rest,
    { ...CONN_ADMIN, ...JSON_FLAG, ...(sub === "history" ? { limit: { type: "string" } } : {}) },
    z.strictObject({ ...Conn, limit: z.coerce.number().int().min(1).max(1000).optional() }),
    arity ?? { min: 0, max: 0, names: "" },
  );
  if (!parsed) return help(io, ROLLOUT_HELP);
  const { flags, args } = parsed;
  const arg = args[0] as string;
  const api = admin(connection(flags, io), io).rollouts;
  switch (sub) {
    case "apply": {
      const file = readRolloutFile(io, arg);
      const entry = await api.apply(file.rollout, file.text);
      if (flags.json) jsonOut(io, entry);
      else {
        io.stdout(`applied rollout ${entry.id}
`);
        for (const [model, m] of Object.entries(entry.models))
          io.stdout(`  ${describeEntry(model, m)}
`);
      }
      return 0;
    }
    case "undo": {
      const entry = await api.undo(arg);
      if (flags.json) jsonOut(io, entry);
      else {
        const m = entry.models[arg];
        io.stdout(`applied rollout ${entry.id} (undo)${m ? `: ${describeEntry(arg, m)}` : ""}
`);
      }
      return 0;
    }
    case "revert": {
      const out = await api.revert(arg);
      const r = out.revert;
      if (flags.json) jsonOut(io, out);
      else
        io.stdout(`reverted ${arg}'s canary ${r.version}: ${r.failed} of ${r.jobs} jobs had failed (${r.failure_pct}%)
`);
      return 0;
    }
    case "status": {
      const answer = await api.status();
      if (flags.json) jsonOut(io, answer);
      else io.stdout(statusText(answer));
      return 0;
    }
    default: {
      const entries = await api.history(flags.limit);
      if (flags.json) jsonOut(io, { rollouts: entries });
      else io.stdout(historyText(entries));
      return 0;
    }
  }
};

export function help(io: Io, text: string): number {
  io.stdout(text);
  return 0;
}

const COMMANDS: Record<string, Runner> = {
  submit,
  watch,
  status,
  cancel,
  jobs,
  accounts,
  tokens,
  agents,
  queues,
  rollout,
};

/** Whether `floodgate <command>` is one of the client commands. */
export function isClientCommand(command: string): boolean {
  return Object.hasOwn(COMMANDS, command);
}

/** Runs a client command and answers its exit code; every error is printed here. */
export async function clientCommand(command: string, argv: string[], io: Io = processIo()): Promise<number> {
  const run = COMMANDS[command];
  if (!run) {
    io.stderr(`floodgate: unknown command ${JSON.stringify(command)}\n`);
    return 2;
  }
  return await runCommand(command, run, argv, io);
}

/**
 * Runs `run` as `floodgate <command>` and answers its exit code: usage and configuration errors
 * 2, the edge's refusals and everything else 1, each printed once, here.
 */
export async function runCommand(command: string, run: Runner, argv: string[], io: Io = processIo()): Promise<number> {
  try {
    return await run(argv, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`floodgate ${command}: ${err.message}\nRun \`floodgate ${command} --help\` for usage.\n`);
      return 2;
    }
    if (err instanceof ConfigError) {
      io.stderr(`floodgate ${command}: ${err.message}\n`);
      return 2;
    }
    if (err instanceof FloodgateApiError) {
      const id = err.requestId ? ` (request ${err.requestId})` : "";
      io.stderr(`floodgate ${command}: ${err.code}: ${err.message}${id}\n`);
      return 1;
    }
    if (err instanceof FloodgateNetworkError) {
      io.stderr(`floodgate ${command}: ${err.message}\n  Is the edge running? Locally: \`npm start\`.\n`);
      return 1;
    }
    if (err instanceof MalformedAnswerError) {
      io.stderr(`floodgate ${command}: the edge answered something unexpected: ${err.message}\n`);
      return 1;
    }
    io.stderr(`floodgate ${command}: ${(err as Error)?.message ?? String(err)}\n`);
    return 1;
  }
}
