/**
 * `submit`: how fast the edge takes jobs, in workerd, on workerd's own port. (a) latency at a
 * fixed offered load (open loop), (b) saturation of one scheduler shard with single submits,
 * (c) saturation with batch submits of 100 jobs, and (d) where the time of one submit goes: one
 * sequential client against routes that stop at successive layers (HTTP, error rendering,
 * authentication and the rate-limit binding, validation, an actor read, an actor write).
 * Then (b) and (d) again on a second edge whose rate-limit bindings are an in-memory stub, to
 * show what Miniflare's rate-limit simulator costs locally.
 */
import type { Pool } from "undici";
import { MAX_BATCH } from "../../shared/api.ts";
import { createAccount, MEASURED_PORT, registerModel, startEdge, type Edge } from "../lib/edge.ts";
import { closedLoop, connect, openLoop, othersCores, statusCell, type LoadResult, type Shot } from "../lib/load.ts";
import type { Benchmark, Report, Table } from "../lib/report.ts";
import { percentile, round } from "../lib/stats.ts";

const MODEL = "bench";
const RATE = 200; // jobs/s offered in (a)
const SINGLE_CLIENTS = 32;
const BATCH_CLIENTS = 8;

type Cells = (string | number)[];

function perJob(ms: number, jobs: number): number {
  return jobs > 0 ? ms / jobs : Number.NaN;
}

function loadRow(phase: string, load: string, r: LoadResult): Cells {
  return [
    phase,
    load,
    r.sent,
    statusCell(r),
    r.accepted,
    r.accepted / r.wallS,
    percentile(r.latencies, 50),
    percentile(r.latencies, 99),
    perJob(r.workerdCpuMs, r.accepted),
    perJob(r.clientCpuMs, r.accepted),
    othersCores(r),
  ];
}

/** A fresh model and account on an edge, and the two submit requests. */
async function prepare(
  edge: Edge,
): Promise<{ number: number; headers: Record<string, string>; single: Shot; batch: Shot }> {
  const model = await registerModel(edge, MODEL);
  const acct = await createAccount(edge);
  const headers = { authorization: `Bearer ${acct.key}`, "content-type": "application/json" };
  return {
    number: model.number,
    headers,
    single: {
      method: "POST",
      path: `/v1/models/${MODEL}/jobs`,
      headers,
      body: JSON.stringify({ input: { prompt: "a red fox in the snow" } }),
      jobs: 1,
    },
    batch: {
      method: "POST",
      path: `/v1/models/${MODEL}/jobs/batch`,
      headers,
      body: JSON.stringify({
        jobs: Array.from({ length: MAX_BATCH }, (_, i) => ({ input: { prompt: `a red fox, take ${i}` } })),
      }),
      jobs: MAX_BATCH,
    },
  };
}

/** Fills the auth and registry caches, starts the scheduler actor and warms the JIT. */
async function warm(pool: Pool, edge: Edge, single: Shot, batch: Shot): Promise<void> {
  const pid = edge.workerdPid;
  await closedLoop({ pool, clients: 8, durationS: 1, maxRequests: 2000, shot: () => single, workerdPid: pid });
  await closedLoop({
    pool,
    clients: 2,
    durationS: 0.5,
    maxRequests: 20,
    shot: () => batch,
    workerdPid: pid,
    countItems: true,
  });
}

function saturateSingle(pool: Pool, edge: Edge, single: Shot, durationS: number): Promise<LoadResult> {
  return closedLoop({
    pool,
    clients: SINGLE_CLIENTS,
    durationS,
    maxRequests: 1_000_000,
    shot: () => single,
    workerdPid: edge.workerdPid,
  });
}

/** (d): the same sequential client against each layer; answers rows and metrics. */
async function layers(
  pool: Pool,
  edge: Edge,
  s: { headers: Record<string, string>; single: Shot },
  n: number,
  prefix: string,
): Promise<{ rows: Cells[]; metrics: Record<string, number | null> }> {
  const res = await pool.request({ method: "POST", path: s.single.path, headers: s.headers, body: s.single.body });
  const jobId = ((await res.body.json()) as { id: string }).id;
  const steps: { key: string; name: string; what: string; shot: Shot }[] = [
    {
      key: "healthz",
      name: "GET /healthz",
      what: "workerd HTTP, Hono routing, JSON answer",
      shot: { method: "GET", path: "/healthz", headers: {}, jobs: 1, expect: 200 },
    },
    {
      key: "not_found",
      name: "GET /nope",
      what: "+ the error path (404 rendered by app.onError), no auth",
      shot: { method: "GET", path: "/nope", headers: {}, jobs: 1, expect: 404 },
    },
    {
      key: "auth_404",
      name: "GET /v1/jobs/not-a-job",
      what: "+ user auth (cached) and the rate-limit binding, then 404 before any actor",
      shot: { method: "GET", path: "/v1/jobs/not-a-job", headers: s.headers, jobs: 1, expect: 404 },
    },
    {
      key: "invalid_400",
      name: "POST submit, invalid input",
      what: "+ body parse (zod) and input schema validation, 400 before any actor",
      shot: { ...s.single, body: JSON.stringify({ input: { prompt: "" } }), expect: 400 },
    },
    {
      key: "read_rpc",
      name: "GET /v1/jobs/:id",
      what: "auth and rate limit + one scheduler RPC that only reads",
      shot: { method: "GET", path: `/v1/jobs/${jobId}`, headers: s.headers, jobs: 1, expect: 200 },
    },
    {
      key: "submit",
      name: "POST submit",
      what: "auth, rate limit, validation + one scheduler RPC that writes (one commit)",
      shot: s.single,
    },
  ];
  const rows: Cells[] = [];
  const metrics: Record<string, number | null> = {};
  for (const step of steps) {
    const r = await closedLoop({
      pool,
      clients: 1,
      durationS: 30,
      maxRequests: n,
      shot: () => step.shot,
      workerdPid: edge.workerdPid,
    });
    const p50 = percentile(r.latencies, 50);
    const cpu = r.workerdCpuMs / Math.max(1, r.sent);
    rows.push([
      `${prefix}${step.name}`,
      step.what,
      r.sent,
      statusCell(r),
      p50,
      percentile(r.latencies, 99),
      cpu,
      r.clientCpuMs / Math.max(1, r.sent),
      othersCores(r),
    ]);
    metrics[`d_${step.key}_p50_ms`] = round(p50);
    metrics[`d_${step.key}_workerd_cpu_ms`] = round(cpu);
  }
  return { rows, metrics };
}

export const submit: Benchmark = {
  name: "submit",
  description: "edge submit latency at 200 jobs/s, and saturation of one shard with single and batch submits (workerd)",
  async run({ quick, log }): Promise<Report> {
    const durationS = quick ? 3 : 10;
    const layerN = quick ? 100 : 400;

    log("bundling the Worker and starting workerd (rate limits: Miniflare's simulator)…");
    const edge = await startEdge();
    const pool = connect(edge.url, 64);
    let a: LoadResult, b: LoadResult, c: LoadResult;
    let d: Awaited<ReturnType<typeof layers>>;
    let modelNumber: number;
    const url = edge.url;
    try {
      const s = await prepare(edge);
      modelNumber = s.number;
      log("warming up (auth and registry caches, actor start, JIT)…");
      await warm(pool, edge, s.single, s.batch);
      log(`(a) open loop: ${RATE} single submits/s for ${durationS} s…`);
      a = await openLoop({ pool, rate: RATE, durationS, shot: () => s.single, workerdPid: edge.workerdPid });
      log(`(b) closed loop: ${SINGLE_CLIENTS} clients, single submits, ${durationS} s…`);
      b = await saturateSingle(pool, edge, s.single, durationS);
      log(`(c) closed loop: ${BATCH_CLIENTS} clients, batches of ${MAX_BATCH}, ${durationS} s…`);
      c = await closedLoop({
        pool,
        clients: BATCH_CLIENTS,
        durationS,
        maxRequests: 100_000,
        shot: () => s.batch,
        workerdPid: edge.workerdPid,
        countItems: true,
      });
      log(`(d) one sequential client, ${layerN} requests per layer…`);
      d = await layers(pool, edge, s, layerN, "");
    } finally {
      await pool.close();
      await edge.stop();
    }

    log("starting a second edge whose rate-limit bindings are an in-memory stub…");
    const stubEdge = await startEdge({ rateLimits: "stub" });
    const stubPool = connect(stubEdge.url, 64);
    let bStub: LoadResult;
    let dStub: Awaited<ReturnType<typeof layers>>;
    try {
      const s = await prepare(stubEdge);
      await warm(stubPool, stubEdge, s.single, s.batch);
      log(`(b*) closed loop, rate limits stubbed: ${SINGLE_CLIENTS} clients, single submits, ${durationS} s…`);
      bStub = await saturateSingle(stubPool, stubEdge, s.single, durationS);
      log(`(d*) layers, rate limits stubbed…`);
      dStub = await layers(stubPool, stubEdge, s, layerN, "* ");
    } finally {
      await stubPool.close();
      await stubEdge.stop();
    }

    const loadTable: Table = {
      title: `Submits to one scheduler shard (model "${MODEL}", 1 shard, tier api)`,
      columns: [
        "phase",
        "load",
        "requests",
        "answers",
        "jobs accepted",
        "jobs/s",
        "p50 ms",
        "p99 ms",
        "workerd CPU ms/job",
        "client CPU ms/job",
        "other procs, cores",
      ],
      rows: [
        loadRow("(a) latency, open loop", `${RATE} jobs/s offered, ${durationS} s`, a),
        loadRow("(b) saturation, single", `${SINGLE_CLIENTS} clients, ${durationS} s`, b),
        loadRow("(c) saturation, batch", `${BATCH_CLIENTS} clients × ${MAX_BATCH} jobs, ${durationS} s`, c),
        loadRow("(b*) as (b), rate limits stubbed", `${SINGLE_CLIENTS} clients, ${durationS} s`, bStub),
      ],
    };
    const layerTable: Table = {
      title: "(d) Where a request's time goes: one sequential client; rows marked * ran with the rate-limit stub",
      columns: [
        "request",
        "exercises",
        "n",
        "answers",
        "p50 ms",
        "p99 ms",
        "workerd CPU ms/req",
        "client CPU ms/req",
        "other procs, cores",
      ],
      rows: [...d.rows, ...dStub.rows],
    };
    const stubMetrics = Object.fromEntries(Object.entries(dStub.metrics).map(([k, v]) => [`stub_${k}`, v]));
    return {
      target: `${MEASURED_PORT} (${url}, then a second instance for the * rows); client and workerd share this machine's cores`,
      setup: {
        model: `${MODEL} (number ${modelNumber}), 1 shard, input {prompt: string ≤ 200}`,
        account: "one account, tier api, rate_limit 600000/min (binding RL_600000)",
        http: "undici Pool, 64 keep-alive connections, no pipelining",
        duration_s: durationS,
        offered_rate_per_s: RATE,
        single_clients: SINGLE_CLIENTS,
        batch_clients: BATCH_CLIENTS,
        batch_size: MAX_BATCH,
        layer_requests: layerN,
        warmup: "1 s of single submits (8 clients) and 0.5 s of batches before the phases, per edge",
      },
      tables: [loadTable, layerTable],
      metrics: {
        open_p50_ms: round(percentile(a.latencies, 50)),
        open_p99_ms: round(percentile(a.latencies, 99)),
        open_accepted: a.accepted,
        open_errors: a.sent - a.latencies.length,
        open_max_send_lag_ms: round(a.maxSendLagMs),
        max_other_procs_cores: round(Math.max(...[a, b, c, bStub].map(othersCores)), 2),
        single_jobs_per_s: round(b.accepted / b.wallS, 1),
        single_p50_ms: round(percentile(b.latencies, 50)),
        single_p99_ms: round(percentile(b.latencies, 99)),
        single_errors: b.sent - b.latencies.length,
        batch_jobs_per_s: round(c.accepted / c.wallS, 1),
        batch_p50_ms: round(percentile(c.latencies, 50)),
        batch_p99_ms: round(percentile(c.latencies, 99)),
        batch_errors: c.sent - c.latencies.length + c.itemErrors,
        batch_goal_5000_met: c.accepted / c.wallS >= 5000,
        workerd_cpu_ms_per_single_job: round(perJob(b.workerdCpuMs, b.accepted)),
        workerd_cpu_ms_per_batched_job: round(perJob(c.workerdCpuMs, c.accepted)),
        stub_single_jobs_per_s: round(bStub.accepted / bStub.wallS, 1),
        stub_workerd_cpu_ms_per_single_job: round(perJob(bStub.workerdCpuMs, bStub.accepted)),
        ...d.metrics,
        ...stubMetrics,
      },
      notes: [
        "Only 202 answers count as accepted; a batch counts its items with ok: true. Latencies are of answers with the expected status; in (a) they count from each request's scheduled send time.",
        `(a) open loop: the largest lag of a send behind its schedule was ${a.maxSendLagMs.toFixed(1)} ms.`,
        "CPU columns: workerd's process CPU (user+system from /proc, 10 ms ticks) and this load generator's, over the phase, divided by accepted jobs (or requests in (d)). 'other procs, cores': CPU that every other process on the machine used during the phase, over its wall time; on 2 cores, anything well above 0 means the figures of that row were taken under competing load.",
        "Rate-limit stub (* rows): each RL_* binding is an in-memory RPC entrypoint answering {success: true}; Miniflare's simulator instead keeps its counters in a SQLite-backed Durable Object, so every authenticated request makes one more actor call and write locally.",
        ...[a, b, c, bStub].flatMap((r, i) =>
          r.errorSamples.map((e) => `error sample (${["a", "b", "c", "b*"][i]}): ${e}`),
        ),
      ],
    };
  },
};
