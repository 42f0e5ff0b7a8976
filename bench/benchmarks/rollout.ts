/**
 * `rollout`: the time from `rollout apply` to every agent serving the new version, with the
 * load time (a version's runner started and loaded) measured apart. The edge runs in workerd;
 * N real {@link Agent}s (gpu-agent/agent.ts) serve what the rollout says, each with a cache of
 * its own, and start each version's runner the way `floodgate agent` does (the demo runner as a
 * process of its own, gpu-agent/main.ts's `versionRunners`). Two versions of a demo model, each
 * with a 2 MiB file, are pushed as `floodgate models push` pushes them; the first is applied
 * and served by all; then the second is applied and the clock runs until `rollout status`
 * shows every agent serving it and none the first. Goal: at most 2 heartbeat intervals plus the
 * load time.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createAdminClient, type FloodgateAdminClient } from "../../client/index.ts";
import { pushVersionDir } from "../../cli/push.ts";
import { Agent } from "../../gpu-agent/agent.ts";
import { encoder, versionRunners } from "../../gpu-agent/main.ts";
import type { ReplicaLaunch } from "../../gpu-agent/versions/manager.ts";
import { MEASURED_PORT, startEdge } from "../lib/edge.ts";
import { benchAgentId, mintAgentToken } from "../lib/fleet.ts";
import type { Benchmark } from "../lib/report.ts";
import { mean, percentile, sleep } from "../lib/stats.ts";

const MODEL = "bench-roll";
/** The heartbeat interval the edge gives agents (`agent.welcome`'s heartbeat_ms). */
const HEARTBEAT_MS = 5_000;

interface Timing {
  /** Apply → the agent's manager logged the new desired versions (ms). */
  told: number;
  /** Apply → the version fetched and verified, its runner starting (ms). */
  fetched: number;
  /** Runner start → loaded (ms). */
  load: number;
  /** Apply → the runner loaded (ms). */
  loaded: number;
  /** Apply → the agent said it serves the new version (ms). */
  serving: number;
  /** Runner loaded → the agent said it serves (ms). */
  report: number;
}

function versionDir(root: string, version: string): string {
  const demo = JSON.parse(
    readFileSync(join(import.meta.dirname, "..", "..", "models", "demo", "2", "manifest.json"), "utf8"),
  ) as object;
  const made = mkdtempSync(join(root, `version-${version}-`));
  writeFileSync(join(made, "manifest.json"), JSON.stringify({ ...demo, model: MODEL, version, config: {} }));
  writeFileSync(join(made, "weights.bin"), randomBytes(2 * 1024 * 1024));
  return made;
}

async function waitStatus(
  admin: FloodgateAdminClient,
  version: string,
  agents: number,
  deadlineMs: number,
): Promise<boolean> {
  const until = performance.now() + deadlineMs;
  while (performance.now() < until) {
    const s = (await admin.rollouts.status()).models[MODEL];
    const serving = s?.agent_versions.filter((a) => a.state === "serving") ?? [];
    if (serving.filter((a) => a.version === version).length === agents && serving.every((a) => a.version === version)) {
      return true;
    }
    await sleep(25);
  }
  return false;
}

/** p50, p95, max and mean of some timings (ms), rounded. */
const stat = (xs: number[]): (string | number)[] => [
  Math.round(percentile(xs, 50)),
  Math.round(percentile(xs, 95)),
  Math.round(Math.max(...xs)),
  Math.round(mean(xs)),
];

export const rollout: Benchmark = {
  name: "rollout",
  description: "rollout apply → every agent serving the new version (20 agents; quick: 5), load time apart",
  async run({ quick, log }) {
    const count = quick ? 5 : 20;
    const edge = await startEdge();
    const root = mkdtempSync(join(tmpdir(), "floodgate-bench-rollout-"));
    const agents: Agent[] = [];
    try {
      const admin = createAdminClient({ url: edge.url, adminKey: edge.adminKey });
      for (const v of ["1", "2"]) {
        const pushed = await pushVersionDir(admin, versionDir(root, v));
        log(`pushed ${MODEL} ${v}: ${pushed.pieces} pieces, ${pushed.bytes} bytes`);
      }
      const token = await mintAgentToken(edge, [MODEL]);
      let applyAt = 0;
      let target = "";
      const timings = new Map<number, Partial<Timing>>();
      for (let i = 0; i < count; i++) {
        const cacheDir = join(root, `agent-${i}`);
        const real = versionRunners({ cache_dir: cacheDir }, () => {});
        const startRunner = async (launch: ReplicaLaunch) => {
          const t0 = performance.now();
          const runner = await real(launch);
          const t = timings.get(i);
          if (launch.version === target && t && t.load === undefined) {
            t.fetched = t0 - applyAt;
            t.loaded = performance.now() - applyAt;
            t.load = t.loaded - t.fetched;
          }
          return runner;
        };
        timings.set(i, {});
        const agent = new Agent({
          url: edge.url,
          token,
          name: `roll-${i}`,
          agentId: benchAgentId("roll", i),
          prefetch: 1,
          maxVramPct: 100,
          serve: { gpus: [], cacheDir, startRunner },
          encoder,
          gpus: async () => [],
          log: (line) => {
            const t = timings.get(i);
            if (!t || target === "" || applyAt === 0) return;
            const now = performance.now() - applyAt;
            if (line.startsWith("desired:") && line.includes(`${MODEL}@${target}`)) t.told ??= now;
            if (line === `${MODEL}@${target}: serving` && t.serving === undefined) {
              t.serving = now;
              if (t.loaded !== undefined) t.report = now - t.loaded;
            }
          },
        });
        agents.push(agent);
        await agent.start();
      }
      log(`${count} agents started`);

      target = "1";
      applyAt = performance.now();
      await admin.rollouts.apply({ models: { [MODEL]: { version: "1" } } });
      if (!(await waitStatus(admin, "1", count, 180_000))) throw new Error("the agents did not all serve version 1");
      log(`all ${count} agents serve version 1 after ${Math.round(performance.now() - applyAt)} ms (cold)`);
      for (const t of timings.values()) for (const k of Object.keys(t)) delete t[k as keyof Timing];

      target = "2";
      applyAt = performance.now();
      await admin.rollouts.apply({ models: { [MODEL]: { version: "2" } } });
      const applied = performance.now() - applyAt;
      const done = await waitStatus(admin, "2", count, 180_000);
      const allMs = performance.now() - applyAt;
      if (!done) throw new Error("the agents did not all serve version 2");
      log(`all ${count} agents serve version 2 after ${Math.round(allMs)} ms`);

      const rows = [...timings.values()];
      const col = (k: keyof Timing): number[] => rows.flatMap((t) => (t[k] === undefined ? [] : [t[k] as number]));
      const told = col("told");
      const fetched = col("fetched");
      const load = col("load");
      const serving = col("serving");
      const report = col("report");
      // Per agent, what is not its own runner's load: the edge telling it, the fetch, the report.
      const notLoad = rows.flatMap((t) =>
        t.serving !== undefined && t.load !== undefined ? [t.serving - t.load] : [],
      );
      const maxLoad = Math.max(...load);
      const goalMs = 2 * HEARTBEAT_MS + maxLoad;
      return {
        target: `${MEASURED_PORT}; ${count} in-process agents, each starting real demo runner processes`,
        setup: {
          agents: count,
          version_bytes: 2 * 1024 * 1024,
          heartbeat_ms: HEARTBEAT_MS,
          switch: "side by side (CPU versions)",
        },
        tables: [
          {
            title: "From rollout apply (version 1 → 2), per agent (ms)",
            columns: ["step", "p50", "p95", "max", "mean"],
            rows: [
              ["apply → agent told (agent.desired)", ...stat(told)],
              ["apply → fetched and verified, runner starting", ...stat(fetched)],
              ["runner start → loaded (load time)", ...stat(load)],
              ["runner loaded → agent says serving", ...stat(report)],
              ["apply → agent serving version 2", ...stat(serving)],
              ["apply → agent serving, less its load", ...stat(notLoad)],
            ],
          },
          {
            title: "All agents",
            columns: ["measure", "ms"],
            rows: [
              ["apply answered", Math.round(applied)],
              ["apply → rollout status shows all serving 2, none 1", Math.round(allMs)],
              ["goal: 2 heartbeats + max load", Math.round(goalMs)],
              ["apply → all serving, less the max load", Math.round(allMs - maxLoad)],
            ],
          },
        ],
        metrics: {
          agents: count,
          all_serving_ms: Math.round(allMs),
          max_load_ms: Math.round(maxLoad),
          p50_load_ms: Math.round(percentile(load, 50)),
          max_told_ms: Math.round(Math.max(...told)),
          max_serving_less_load_ms: Math.round(Math.max(...notLoad)),
          per_agent_within_goal: Math.max(...notLoad) <= 2 * HEARTBEAT_MS,
          goal_ms: Math.round(goalMs),
          within_goal: allMs <= goalMs,
        },
        notes: [
          "told: the agent's version manager logged the new desired versions (the registry tells agents' actors, which send agent.desired).",
          "load: the demo runner process started with the version's directory, its hello checked and runner.load answered; the fetch of the version's pieces comes before it and is in 'serving'.",
          "An agent reports its version states as they change (not only on heartbeats), and `rollout status` reads what they reported.",
        ],
      };
    } finally {
      await Promise.all(agents.map((a) => a.close().catch(() => undefined)));
      await edge.stop();
      rmSync(root, { recursive: true, force: true });
    }
  },
};
