/**
 * HTTP load generators for the edge benchmarks: an open loop (sends on a timer at a fixed rate,
 * never waiting for answers, so a slow server cannot slow the offered load: no coordinated
 * omission) and a closed loop (N clients, each sending its next request when the last one is
 * answered, to find saturation). Both use one undici Pool with keep-alive connections, and both
 * are bounded in time and in count.
 */
import { Pool } from "undici";
import { cpuMeter } from "./cpu.ts";

/** One request to send. */
export interface Shot {
  method: "GET" | "POST";
  path: string;
  headers: Record<string, string>;
  body?: string;
  /** Jobs the request carries (1 for a single submit, 100 for a full batch). */
  jobs: number;
  /** The status that counts as success; 202 (accepted) unless said otherwise. */
  expect?: number;
}

/** What a run produced. */
export interface LoadResult {
  /** Requests sent. */
  sent: number;
  /** Answers by HTTP status, plus `transport` for requests that got no answer. */
  statuses: Record<string, number>;
  /** Jobs accepted: jobs of answers with the expected status, 202 for submits (for a batch, its
   * items with `ok: true`). */
  accepted: number;
  /** Jobs refused inside 202 batch answers (`ok: false` items). */
  itemErrors: number;
  /** Latency (ms) of each answer with the expected status. */
  latencies: number[];
  /** First few error bodies, for the report. */
  errorSamples: string[];
  /** Wall time from the first send to the last answer (s). */
  wallS: number;
  /** CPU time (ms) of this Node process (the load generator) during the run. */
  clientCpuMs: number;
  /** CPU time (ms) of the workerd process during the run (0 when unknown). */
  workerdCpuMs: number;
  /** CPU time (ms) of every other process on the machine during the run: competing work. */
  othersCpuMs: number;
  /** Open loop only: the latest a send left after its scheduled time (ms). */
  maxSendLagMs: number;
}

/** A keep-alive connection pool to the edge; close it when done. */
export function connect(url: string, connections: number): Pool {
  return new Pool(url, {
    connections,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    // Bounds every request: an answer that takes longer counts as a transport error.
    headersTimeout: 30_000,
    bodyTimeout: 30_000,
  });
}

/**
 * Called with each answer that has the expected status, parsed as JSON, and when its request
 * was due (open loop) or sent (closed loop) and answered, on `performance.now()`'s clock.
 */
export type OnAnswer = (answer: unknown, dueAt: number, answeredAt: number) => void;

interface Tally {
  result: LoadResult;
  /** Parses batch answers to count accepted items; single submits count by status alone. */
  countItems: boolean;
  onAnswer: OnAnswer | undefined;
}

function newTally(countItems: boolean, onAnswer: OnAnswer | undefined): Tally {
  return {
    countItems,
    onAnswer,
    result: {
      sent: 0,
      statuses: {},
      accepted: 0,
      itemErrors: 0,
      latencies: [],
      errorSamples: [],
      wallS: 0,
      clientCpuMs: 0,
      workerdCpuMs: 0,
      othersCpuMs: 0,
      maxSendLagMs: 0,
    },
  };
}

function bump(r: LoadResult, key: string): void {
  r.statuses[key] = (r.statuses[key] ?? 0) + 1;
}

function noteError(r: LoadResult, text: string): void {
  if (r.errorSamples.length < 5) r.errorSamples.push(text.slice(0, 300));
}

/** Sends one request and records its outcome; never throws. */
async function fire(pool: Pool, shot: Shot, startedAt: number, tally: Tally): Promise<void> {
  const r = tally.result;
  r.sent++;
  try {
    const res = await pool.request({
      method: shot.method,
      path: shot.path,
      headers: shot.headers,
      body: shot.body,
    });
    const text = await res.body.text();
    const ms = performance.now() - startedAt;
    bump(r, String(res.statusCode));
    if (res.statusCode !== (shot.expect ?? 202)) {
      noteError(r, `${res.statusCode} ${text}`);
      return;
    }
    r.latencies.push(ms);
    const parsed: unknown = tally.countItems || tally.onAnswer ? JSON.parse(text) : undefined;
    tally.onAnswer?.(parsed, startedAt, startedAt + ms);
    if (!tally.countItems) {
      r.accepted += shot.jobs;
      return;
    }
    const answer = parsed as { jobs?: { ok: boolean; error?: unknown }[] };
    for (const j of answer.jobs ?? []) {
      if (j.ok) r.accepted++;
      else {
        r.itemErrors++;
        noteError(r, `202 item ${JSON.stringify(j.error)}`);
      }
    }
  } catch (err) {
    bump(r, "transport");
    noteError(r, `transport ${(err as Error).message}`);
  }
}

/**
 * Sends `rate` requests per second for `durationS` seconds on a timer, whatever the answers
 * do, then waits for the outstanding answers (each bounded by the pool's 30 s timeouts).
 * Latency counts from each request's scheduled send time.
 */
export async function openLoop(opts: {
  pool: Pool;
  rate: number;
  durationS: number;
  shot: (i: number) => Shot;
  workerdPid: number | undefined;
  countItems?: boolean;
  onAnswer?: OnAnswer;
}): Promise<LoadResult> {
  const tally = newTally(opts.countItems ?? false, opts.onAnswer);
  const total = Math.round(opts.rate * opts.durationS);
  const interval = 1000 / opts.rate; // ms
  const pending: Promise<void>[] = [];
  const cpu = cpuMeter(opts.workerdPid);
  const start = performance.now();
  let i = 0;
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now();
      while (i < total && start + i * interval <= now) {
        const due = start + i * interval;
        tally.result.maxSendLagMs = Math.max(tally.result.maxSendLagMs, now - due);
        pending.push(fire(opts.pool, opts.shot(i), due, tally));
        i++;
      }
      if (i >= total) {
        resolve();
        return;
      }
      setTimeout(tick, Math.max(0, start + i * interval - performance.now()));
    };
    tick();
  });
  await Promise.all(pending);
  return finish(tally.result, start, cpu());
}

/**
 * Runs `clients` closed-loop clients for `durationS` seconds (and at most `maxRequests` sends
 * in all): each sends its next request as soon as its last one is answered, and once `gate`
 * (when given) resolves.
 */
export async function closedLoop(opts: {
  pool: Pool;
  clients: number;
  durationS: number;
  maxRequests: number;
  shot: (i: number) => Shot;
  workerdPid: number | undefined;
  countItems?: boolean;
  onAnswer?: OnAnswer;
  /** Awaited before each send; the send time (latency's start) is taken after it. */
  gate?: () => Promise<void>;
}): Promise<LoadResult> {
  const tally = newTally(opts.countItems ?? false, opts.onAnswer);
  const cpu = cpuMeter(opts.workerdPid);
  const start = performance.now();
  const end = start + opts.durationS * 1000;
  let n = 0;
  const client = async (): Promise<void> => {
    while (performance.now() < end && n < opts.maxRequests) {
      if (opts.gate) {
        await opts.gate();
        if (performance.now() >= end) break;
      }
      const shot = opts.shot(n++);
      await fire(opts.pool, shot, performance.now(), tally);
    }
  };
  await Promise.all(Array.from({ length: opts.clients }, client));
  return finish(tally.result, start, cpu());
}

function finish(
  r: LoadResult,
  start: number,
  used: { selfMs: number; workerdMs: number; othersMs: number },
): LoadResult {
  r.wallS = (performance.now() - start) / 1000;
  r.clientCpuMs = used.selfMs;
  r.workerdCpuMs = used.workerdMs;
  r.othersCpuMs = used.othersMs;
  return r;
}

/** Cores that other processes kept busy during a run (their CPU time over its wall time). */
export function othersCores(r: LoadResult): number {
  return r.wallS > 0 ? r.othersCpuMs / 1000 / r.wallS : 0;
}

/** Statuses as one short cell: `202×1000, 429×3`. */
export function statusCell(r: LoadResult): string {
  return (
    Object.entries(r.statuses)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}×${v}`)
      .join(", ") || "none"
  );
}
