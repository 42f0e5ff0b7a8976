/**
 * One BullMQ worker process of the `dispatch` benchmark's peer, started by bench/lib/bullmq.ts:
 * a Worker on queue PEER_QUEUE with PEER_CONCURRENCY slots whose job "runs" by holding its slot
 * PEER_SERVICE_MS (a timer), standing in for the GPU as the in-process runner does on the
 * Floodgate side. It sends `{ready: true}` over IPC once connected, then every 10 ms the runs
 * that ended since, `[id, start, end]` on CLOCK_MONOTONIC; exits when its parent goes.
 */
import { Worker } from "bullmq";
import type { PeerRun, WorkerMessage } from "./bullmq.ts";
import { monotonicMs, sleep } from "./stats.ts";

const serviceMs = Number(process.env.PEER_SERVICE_MS);
const runs: PeerRun[] = [];
const send = (m: WorkerMessage): void => {
  process.send?.(m);
};

const worker = new Worker(
  process.env.PEER_QUEUE as string,
  async (job) => {
    const start = monotonicMs();
    await sleep(serviceMs);
    runs.push([job.id as string, start, monotonicMs()]);
  },
  {
    connection: { host: "127.0.0.1", port: Number(process.env.PEER_REDIS_PORT), maxRetriesPerRequest: null },
    concurrency: Number(process.env.PEER_CONCURRENCY),
  },
);
setInterval(() => {
  if (runs.length > 0) send({ runs: runs.splice(0) });
}, 10);

process.on("disconnect", () => process.exit(0));
await worker.waitUntilReady();
send({ ready: true });
