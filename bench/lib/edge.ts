/**
 * The edge under test, in workerd, started through Miniflare directly: no `wrangler dev` and no
 * proxy in front, so every figure is workerd's own HTTP port ("workerd direct via Miniflare").
 * The Worker is bundled exactly as `wrangler deploy` would ship it, and its bindings (Durable
 * Objects, rate limits, R2, vars) are read from wrangler.toml by wrangler itself, so the
 * benchmark runs the same configuration as the real edge. Secrets and persisted state live in a temporary
 * directory that {@link Edge.stop} removes.
 *
 * Called by the benchmarks in bench/benchmarks/ that need the HTTP edge or a Node-side RPC stub
 * of a scheduler actor.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  convertV4MiniflareOptions,
  Log,
  LogLevel,
  Miniflare,
  type V4WorkerOptions,
  type V4WorkerOptionsShape,
} from "miniflare";
import { unstable_getMiniflareWorkerOptions } from "wrangler";
import { ensureSecrets, LOCAL_ENV, ROOT } from "../../cli/dev.ts";
import type { ModelConfig } from "../../shared/api.ts";
import { schedulerName, type JobRoute } from "../../shared/ids.ts";
import type {
  AgentRef,
  CompleteOutcome,
  Completion,
  EnqueueItem,
  EnqueueOutcome,
  Lease,
  LeaseRef,
  SchedulerConfig,
  SchedulerCounters,
} from "../../mesh/scheduler/core.ts";

/** Which port every edge figure is measured on; printed in every report. */
export const MEASURED_PORT = "workerd direct via Miniflare";

/** Where the bundled Worker goes (gitignored). */
const BUNDLE_DIR = join(ROOT, "bench", "out", "worker");

/**
 * The scheduler actor's RPC surface as a Node caller sees it. Declared here, not imported from
 * mesh/scheduler-actor.ts, because that file needs workerd's types, which the Node tsconfig
 * must not see.
 */
export interface SchedulerRpc {
  enqueue(config: SchedulerConfig, items: EnqueueItem[]): Promise<EnqueueOutcome[]>;
  lease(agent: AgentRef, capacity: number): Promise<Lease[]>;
  complete(ref: LeaseRef, result: Completion): Promise<CompleteOutcome>;
  stats(): Promise<{ tiers: unknown[]; counters: SchedulerCounters; configured: boolean }>;
}

/** A running edge. */
export interface Edge {
  /** `http://127.0.0.1:<port>`: workerd's own socket. */
  url: string;
  port: number;
  adminKey: string;
  mf: Miniflare;
  /** The workerd process, for CPU accounting; undefined when it could not be found. */
  workerdPid: number | undefined;
  /**
   * With {@link EdgeOptions.inspector}: workerd's own inspector socket, `http://127.0.0.1:<port>`
   * (its `/json` lists one Chrome DevTools Protocol target per isolate); otherwise undefined.
   */
  inspectorUrl: string | undefined;
  /** The bundled Worker workerd runs (its source map lies beside it, `.map`). */
  bundle: string;
  /** Where workerd keeps the actors' storage: one SQLite file per actor under `do/<class>/`. */
  persistDir: string;
  /** Disposes Miniflare (stopping workerd) and removes the temporary state. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Bundles the Worker as `wrangler deploy` would (esbuild, same entry and externals), into
 * bench/out/worker/index.js. About 2 s.
 */
export function bundleWorker(): string {
  const wrangler = join(ROOT, "node_modules", ".bin", "wrangler");
  const out = spawnSync(
    wrangler,
    ["deploy", "--dry-run", "--outdir", BUNDLE_DIR, "--config", join(ROOT, "wrangler.toml")],
    { cwd: ROOT, env: { ...process.env, ...LOCAL_ENV, WRANGLER_LOG: "warn" }, encoding: "utf8", timeout: 120_000 },
  );
  if (out.status !== 0) {
    throw new Error(`bundling the Worker failed (exit ${out.status}): ${out.stderr || out.stdout}`);
  }
  return join(BUNDLE_DIR, "index.js");
}

/** The workerd process started by this Node process, found by its parent pid in /proc. */
function findWorkerdPid(): number | undefined {
  try {
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
        // Fields after the parenthesised command name: state, ppid, ... (proc(5)).
        const close = stat.lastIndexOf(")");
        const comm = stat.slice(stat.indexOf("(") + 1, close);
        const ppid = Number(stat.slice(close + 2).split(" ")[1]);
        if (comm === "workerd" && ppid === process.pid) return Number(entry);
      } catch {
        // the process ended while we looked
      }
    }
  } catch {
    // no /proc: not Linux
  }
  return undefined;
}

/**
 * A stand-in for the Workers rate-limiting binding that counts in memory, as the deployed
 * binding counts in the Worker's own process: an RPC entrypoint in a Worker of its own, one
 * fixed window per binding and key aligned to the clock (the window Miniflare's simulator
 * keeps), with the binding's limit and period from wrangler.toml as service-binding props.
 * For the A/B comparison with Miniflare's simulator, which keeps its counters in a SQLite-backed
 * Durable Object: there every `limit()` is an actor call (a read, and a write when it allows).
 */
const RATE_LIMIT_STUB = `import { WorkerEntrypoint } from "cloudflare:workers";
const windows = new Map();
export default class extends WorkerEntrypoint {
  async limit({ key = "" } = {}) {
    const { name, limit, period } = this.ctx.props;
    const epoch = Math.floor(Date.now() / (period * 1000));
    const id = name + "\\u0000" + key;
    const w = windows.get(id);
    const count = w !== undefined && w.epoch === epoch ? w.count : 0;
    if (count >= limit) return { success: false };
    windows.set(id, { epoch, count: count + 1 });
    return { success: true };
  }
}
`;

export interface EdgeOptions {
  /**
   * `simulator` (default): wrangler.toml's rate-limit bindings, as Miniflare simulates them.
   * `stub`: every rate-limit binding counts in memory against its wrangler.toml limit (the same
   * window, without a Durable Object), to measure what the simulator costs.
   */
  rateLimits?: "simulator" | "stub";
  /**
   * Opens workerd's V8 inspector on a free port of 127.0.0.1 ({@link Edge.inspectorUrl}), for
   * CPU profiles; no proxy in between. Off by default: an attached inspector costs CPU.
   */
  inspector?: boolean;
}

let bundled: string | undefined;

/**
 * Starts the edge in workerd on 127.0.0.1 (a free port), with fresh secrets and empty state in
 * a temporary directory. The Worker is bundled once per process.
 *
 * @example
 * const edge = await startEdge();
 * try { await registerModel(edge); } finally { await edge.stop(); }
 */
export async function startEdge(opts: EdgeOptions = {}): Promise<Edge> {
  // No internet here: never fetch the `Request.cf` sample.
  process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";
  process.env.WRANGLER_SEND_METRICS = "false";
  bundled ??= bundleWorker();
  const bundle = bundled;
  const fromToml: V4WorkerOptionsShape & { modulesRules?: unknown } = unstable_getMiniflareWorkerOptions(
    join(ROOT, "wrangler.toml"),
  ).workerOptions;
  const stubbed = opts.rateLimits === "stub";
  const state = mkdtempSync(join(tmpdir(), "floodgate-bench-"));
  const persistDir = join(state, "persist");
  let mf: Miniflare;
  let adminKey: string;
  try {
    const { secrets } = ensureSecrets(state);
    adminKey = secrets.ADMIN_KEY;
    // Every binding wrangler.toml declares (Durable Objects, SQLite-backed per its migrations;
    // rate limits; R2; vars), as wrangler itself reads them, plus the secrets `floodgate dev`
    // generates. wrangler's modulesRules are dropped: the bundle is one ES module.
    const { ratelimits, serviceBindings, bindings, modulesRules: _rules, ...rest } = fromToml;
    const stubs = Object.fromEntries(
      Object.entries(ratelimits ?? {}).map(([name, { simple }]) => [
        name,
        { name: "rl-stub", props: { name, limit: simple.limit, period: simple.period ?? 60 } },
      ]),
    );
    const edgeWorker: V4WorkerOptions = {
      ...rest,
      name: "floodgate",
      modules: true,
      scriptPath: bundled,
      ...(stubbed ? { serviceBindings: { ...serviceBindings, ...stubs } } : { ratelimits, serviceBindings }),
      bindings: { ...bindings, ...secrets },
    };
    const stubWorker: V4WorkerOptions = {
      name: "rl-stub",
      modules: true,
      script: RATE_LIMIT_STUB,
      compatibilityDate: fromToml.compatibilityDate,
    };
    mf = new Miniflare(
      convertV4MiniflareOptions({
        host: "127.0.0.1",
        port: 0,
        ...(opts.inspector ? { inspectorPort: 0 } : {}),
        cf: false,
        log: new Log(LogLevel.WARN),
        resourcePersistencePath: persistDir,
        telemetry: { enabled: false },
        workers: stubbed ? [edgeWorker, stubWorker] : [edgeWorker],
      }),
    );
  } catch (err) {
    rmSync(state, { recursive: true, force: true });
    throw err;
  }
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    try {
      await mf.dispose();
    } finally {
      rmSync(state, { recursive: true, force: true });
    }
  };
  try {
    const ready = await mf.ready;
    const url = `http://127.0.0.1:${ready.port}`;
    const health = await fetch(`${url}/healthz`);
    if (!health.ok) throw new Error(`the edge answered /healthz with ${health.status}`);
    await health.text();
    const inspectorUrl = opts.inspector ? (await mf.getInspectorURL()).href.replace(/^ws:/, "http:") : undefined;
    return {
      url,
      port: Number(ready.port),
      adminKey,
      mf,
      workerdPid: findWorkerdPid(),
      inspectorUrl,
      bundle,
      persistDir,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** One JSON call to the edge; throws unless the status is the expected one. */
export async function call<T>(
  edge: Edge,
  key: string,
  method: string,
  path: string,
  body: unknown,
  expect: number[],
): Promise<T> {
  const r = await fetch(edge.url + path, {
    method,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!expect.includes(r.status)) throw new Error(`${method} ${path} answered ${r.status}: ${text}`);
  return JSON.parse(text) as T;
}

/** The input schema of the benchmark model: one bounded string, like a prompt. */
export const BENCH_INPUT_SCHEMA = {
  $schema: "https://json-schema.org/draft/2020-12/schema",
  type: "object",
  additionalProperties: false,
  required: ["prompt"],
  properties: { prompt: { type: "string", minLength: 1, maxLength: 200 } },
};

/** Registers (or updates) a model with one scheduler shard; answers its configuration. */
export async function registerModel(edge: Edge, name = "bench"): Promise<ModelConfig> {
  return call<ModelConfig>(
    edge,
    edge.adminKey,
    "PUT",
    `/v1/admin/models/${name}`,
    { input_schema: BENCH_INPUT_SCHEMA, shards: 1, expected_runtime_s: 5 },
    [200, 201],
  );
}

/** Creates an account in tier `api` with a rate limit far above any benchmark's load. */
export async function createAccount(
  edge: Edge,
  name = "bench",
  tier = "api",
  rateLimit = 600_000,
): Promise<{ id: string; key: string }> {
  const made = await call<{ id: string; api_key: string }>(
    edge,
    edge.adminKey,
    "POST",
    "/v1/admin/accounts",
    { name, tier, rate_limit: rateLimit },
    [201],
  );
  return { id: made.id, key: made.api_key };
}

/** A Node-side RPC stub of the scheduler actor of a model shard (`m<number>.s<shard>`). */
export async function schedulerStub(edge: Edge, route: JobRoute): Promise<SchedulerRpc> {
  const ns = await edge.mf.getDurableObjectNamespace("SCHEDULER");
  // Miniflare's proxy stub forwards any method name as RPC; SchedulerRpc names the ones we call.
  return ns.get(ns.idFromName(schedulerName(route))) as unknown as SchedulerRpc;
}
