/**
 * The closed loop of bench/lib/load.ts in a worker thread of this process, so that the load
 * generator's CPU (its own thread's, `process.threadCpuUsage()`) can be told apart from the
 * in-process agents' (the rest of the process). The thread starts once and runs one loop per
 * request, so its start-up (loading modules) falls outside every measurement. Clients pause
 * while `backlog` accepted jobs are unstarted, counting starts the caller reports through a
 * shared counter, as {@link backlogGate} does in one thread.
 *
 * The same file is the worker's entry: loaded in a worker thread with {@link MARK} set, it
 * serves loops until it is terminated.
 */
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { closedLoop, connect, type LoadResult } from "./load.ts";
import { jobShots, SubmitTracker } from "./runs.ts";
import { sleep } from "./stats.ts";

const MARK = "floodgate-bench-load-thread";

export interface ThreadLoadOptions {
  url: string;
  connections: number;
  clients: number;
  durationS: number;
  model: string;
  key: string;
  /** Jobs per batch submit. */
  batch: number;
  /** Clients pause while this many accepted jobs wait unstarted. */
  backlog: number;
}

export interface ThreadLoadResult {
  load: LoadResult;
  /** The jobs of the accepted submits. */
  jobIds: string[];
  /** CPU time of the load generator's thread over the loop (ms). */
  threadCpuMs: number;
}

/** A load generator thread. */
export interface LoadThread {
  /** Runs one closed loop of batch submits; rejects if the thread fails. */
  run(opts: ThreadLoadOptions): Promise<ThreadLoadResult>;
  /** Stops the thread. */
  close(): Promise<void>;
}

/**
 * Starts the thread. `starts` is an Int32Array on a SharedArrayBuffer whose [0] the caller
 * increments (Atomics.add) each time a runner starts a job.
 */
export async function startLoadThread(starts: Int32Array): Promise<LoadThread> {
  const worker = new Worker(new URL(import.meta.url), {
    workerData: { [MARK]: starts.buffer as SharedArrayBuffer },
  });
  let failed: Error | undefined;
  const waiters = new Set<(err: Error) => void>();
  const fail = (err: Error): void => {
    failed ??= err;
    for (const w of waiters) w(err);
    waiters.clear();
  };
  worker.on("error", fail);
  worker.once("exit", (code) => fail(new Error(`the load thread exited (${code})`)));
  // Ready once its modules are loaded.
  await new Promise<void>((resolve, reject) => {
    worker.once("message", () => resolve());
    waiters.add(reject);
  });
  waiters.clear();
  return {
    run(opts: ThreadLoadOptions): Promise<ThreadLoadResult> {
      if (failed) return Promise.reject(failed);
      return new Promise<ThreadLoadResult>((resolve, reject) => {
        waiters.add(reject);
        worker.once("message", (m: ThreadLoadResult | { error: string }) => {
          waiters.delete(reject);
          if ("error" in m) reject(new Error(`the load thread failed: ${m.error}`));
          else resolve(m);
        });
        worker.postMessage(opts, []);
      });
    },
    async close(): Promise<void> {
      await worker.terminate();
    },
  };
}

async function runLoop(opts: ThreadLoadOptions, starts: Int32Array): Promise<ThreadLoadResult> {
  const tracker = new SubmitTracker();
  const pool = connect(opts.url, opts.connections);
  const cpu0 = process.threadCpuUsage();
  try {
    const started0 = Atomics.load(starts, 0);
    const end = performance.now() + opts.durationS * 1000;
    const open = (): boolean => tracker.accepted - (Atomics.load(starts, 0) - started0) < opts.backlog;
    const gate = async (): Promise<void> => {
      while (!open() && performance.now() < end) await sleep(2);
    };
    const load = await closedLoop({
      pool,
      clients: opts.clients,
      durationS: opts.durationS,
      maxRequests: 10_000_000,
      shot: jobShots(opts.model, opts.key, opts.batch).batch,
      workerdPid: undefined,
      countItems: true,
      onAnswer: tracker.onAnswer,
      gate,
    });
    const used = process.threadCpuUsage(cpu0);
    return { load, jobIds: [...tracker.dueById.keys()], threadCpuMs: (used.user + used.system) / 1000 };
  } finally {
    await pool.close();
  }
}

if (!isMainThread && (workerData as Record<string, unknown> | null)?.[MARK]) {
  const starts = new Int32Array((workerData as Record<string, SharedArrayBuffer>)[MARK] as SharedArrayBuffer);
  parentPort?.on("message", (opts: ThreadLoadOptions) => {
    runLoop(opts, starts).then(
      (r) => parentPort?.postMessage(r, []),
      (err: Error) => parentPort?.postMessage({ error: err.stack ?? err.message }, []),
    );
  });
  parentPort?.postMessage("ready", []);
}
