/**
 * The operator's live view (the admin key): `GET /v1/admin/live` streams one aggregates frame a
 * second as Server-Sent Events, for the dashboard (dashboard/, served at /dashboard). Each frame reads
 * what the shards and agents already keep — each shard's queue statistics and counters, each
 * connected agent's last heartbeat — so an open dashboard costs a few reads a second, and no
 * dashboard adds anything to a job's path.
 */
import { streamSSE } from "hono/streaming";
import { shardSpan, type LiveFrame, type ModelCounters, type QueueStats } from "../../shared/api.ts";
import { apiRoute, routesApp } from "../openapi.ts";
import { registry } from "../registry-cache.ts";
import { listAgents } from "./agent.ts";
import { scheduler } from "./jobs.ts";

/** Between two frames (ms): the dashboard's refresh rate. */
export const LIVE_PERIOD_MS = 1000;

const ZERO: ModelCounters = { enqueued: 0, completed: 0, succeeded: 0, failed: 0, refused: 0 };

/** Per model, shard and tier, the queues' statistics; and per model, its shards' counters summed. */
export async function readQueues(
  env: Env,
): Promise<{ queues: QueueStats[]; counters: (ModelCounters & { model: string })[] }> {
  const { byName } = await registry(env);
  const perModel = await Promise.all(
    [...byName.values()].map(async (m) => {
      const shards = await Promise.all(
        Array.from({ length: shardSpan(m) }, async (_, shard) => ({
          shard,
          stats: await scheduler(env, { modelNumber: m.number, shard }).stats(),
        })),
      );
      const counters = { model: m.name, ...ZERO };
      for (const { stats } of shards) {
        for (const k of Object.keys(ZERO) as (keyof ModelCounters)[]) counters[k] += stats.counters[k];
      }
      const queues = shards.flatMap(({ shard, stats }) =>
        stats.tiers.map((t): QueueStats => ({ model: m.name, shard, ...t })),
      );
      return { queues, counters };
    }),
  );
  return { queues: perModel.flatMap((m) => m.queues), counters: perModel.map((m) => m.counters) };
}

/** One frame: the queues, their counters and the connected agents, as they are now. */
export async function readLiveFrame(env: Env): Promise<LiveFrame> {
  const [{ queues, counters }, agents] = await Promise.all([readQueues(env), listAgents(env)]);
  return { at: Date.now(), queues, counters, agents };
}

const live = apiRoute("admin", {
  method: "get",
  path: "/v1/admin/live",
  summary:
    "Aggregates for the dashboard as Server-Sent Events: `event: aggregates`, one frame a second (queues per model, shard and tier; counters per model; connected agents)",
  responses: {
    200: { description: "The frames", content: { "text/event-stream": { schema: { type: "string" } } } },
  },
});

export const liveRoutes = routesApp().openapi(live, (c) =>
  streamSSE(c, async (stream) => {
    let n = 0;
    // The loop ends when the dashboard goes: its connection closing aborts the stream.
    while (!stream.aborted) {
      const started = Date.now();
      const frame = await readLiveFrame(c.env);
      await stream.writeSSE({ event: "aggregates", id: String(n++), data: JSON.stringify(frame) });
      await stream.sleep(Math.max(0, LIVE_PERIOD_MS - (Date.now() - started)));
    }
  }),
);
