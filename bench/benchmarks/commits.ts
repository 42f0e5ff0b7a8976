/**
 * `commits`: durable commits per job on the hot path (enqueue, lease, complete), counted by the
 * scheduler actor itself (`stats().counters`), for jobs submitted one by one and in batches of
 * 100. Jobs go in through the edge's HTTP API in workerd; leases and completions go straight
 * to the actor through a Node-side RPC stub, as a fleet of agents with 8 slots each would.
 */
import { MAX_BATCH } from "../../shared/api.ts";
import type { Lease } from "../../mesh/scheduler/core.ts";
import {
  createAccount,
  MEASURED_PORT,
  registerModel,
  schedulerStub,
  startEdge,
  type SchedulerRpc,
} from "../lib/edge.ts";
import { closedLoop, connect, type Shot } from "../lib/load.ts";
import type { Benchmark, Report } from "../lib/report.ts";
import { round } from "../lib/stats.ts";

const MODEL = "bench";
const SLOTS = 8; // leases per lease call: an agent with 8 free slots

interface Flow {
  name: string;
  jobs: number;
  submitRequests: number;
  enqueueCommits: number;
  leaseCalls: number;
  leaseCommits: number;
  completeCommits: number;
  counters: { enqueued: number; leased: number; completed: number };
}

async function counters(stub: SchedulerRpc) {
  return { ...(await stub.stats()).counters };
}

export const commits: Benchmark = {
  name: "commits",
  description: "durable commits per job (enqueue, lease, complete), single vs batched submits (workerd)",
  async run({ quick, log }): Promise<Report> {
    const jobs = quick ? 400 : 2000;
    log("bundling the Worker and starting workerd…");
    const edge = await startEdge();
    const pool = connect(edge.url, 16);
    try {
      const model = await registerModel(edge, MODEL);
      const acct = await createAccount(edge);
      const stub = await schedulerStub(edge, { modelNumber: model.number, shard: 0 });
      const headers = { authorization: `Bearer ${acct.key}`, "content-type": "application/json" };
      const single: Shot = {
        method: "POST",
        path: `/v1/models/${MODEL}/jobs`,
        headers,
        body: JSON.stringify({ input: { prompt: "a red fox in the snow" } }),
        jobs: 1,
      };
      const batch: Shot = {
        method: "POST",
        path: `/v1/models/${MODEL}/jobs/batch`,
        headers,
        body: JSON.stringify({ jobs: Array.from({ length: MAX_BATCH }, () => ({ input: { prompt: "a red fox" } })) }),
        jobs: MAX_BATCH,
      };
      const flows: Flow[] = [];
      for (const [name, shot] of [
        ["single submits", single],
        [`batched submits (${MAX_BATCH} per request)`, batch],
      ] as const) {
        log(`${name}: submitting ${jobs} jobs…`);
        const c0 = await counters(stub);
        const sent = await closedLoop({
          pool,
          clients: shot.jobs === 1 ? 16 : 4,
          durationS: 120,
          maxRequests: jobs / shot.jobs,
          shot: () => shot,
          workerdPid: edge.workerdPid,
          countItems: shot.jobs > 1,
        });
        if (sent.accepted !== jobs) {
          throw new Error(`${name}: ${sent.accepted} of ${jobs} jobs accepted; ${sent.errorSamples.join(" | ")}`);
        }
        const c1 = await counters(stub);

        log(`${name}: leasing with ${SLOTS} slots per call…`);
        const leases: Lease[] = [];
        let leaseCalls = 0;
        // Each call is a fresh agent with 8 free slots; bounded by the jobs there are.
        for (let k = 0; leases.length < jobs && k < jobs; k++) {
          const got = await stub.lease({ id: `agent-${name.length}-${k}`, pool: "bench" }, SLOTS);
          leaseCalls++;
          if (got.length === 0) break;
          leases.push(...got);
        }
        if (leases.length !== jobs) throw new Error(`${name}: leased ${leases.length} of ${jobs} jobs`);
        const c2 = await counters(stub);

        log(`${name}: completing ${jobs} jobs…`);
        for (let i = 0; i < leases.length; i += SLOTS) {
          const group = leases.slice(i, i + SLOTS);
          const outs = await Promise.all(
            group.map((l) => stub.complete({ job_id: l.job_id, epoch: l.epoch }, { status: "succeeded", outputs: [] })),
          );
          const refused = outs.find((o) => !o.ok);
          if (refused && !refused.ok) throw new Error(`${name}: complete refused: ${refused.message}`);
        }
        const c3 = await counters(stub);
        flows.push({
          name,
          jobs,
          submitRequests: sent.sent,
          enqueueCommits: c1.commits - c0.commits,
          leaseCalls,
          leaseCommits: c2.commits - c1.commits,
          completeCommits: c3.commits - c2.commits,
          counters: {
            enqueued: c3.enqueued - c0.enqueued,
            leased: c3.leased - c0.leased,
            completed: c3.completed - c0.completed,
          },
        });
      }
      const per = (n: number, f: Flow): number => n / f.jobs;
      const total = (f: Flow): number => f.enqueueCommits + f.leaseCommits + f.completeCommits;
      const [s, b] = flows as [Flow, Flow];
      return {
        target: `${MEASURED_PORT} (${edge.url}) for submits; leases and completions by RPC from Node (Miniflare's Durable Object stub) to the same actor; commits counted by the actor`,
        setup: {
          jobs_per_flow: jobs,
          model: `${MODEL} (number ${model.number}), 1 shard`,
          account: "one account, tier api",
          lease: `lease(agent, capacity ${SLOTS}): a fresh agent per call, as a fleet of 8-slot agents`,
          complete: `one complete(ref, succeeded) per job, ${SLOTS} in flight at a time`,
        },
        tables: [
          {
            title: "Durable commits per job on the hot path (scheduler actor's counters)",
            columns: [
              "flow",
              "jobs",
              "HTTP requests",
              "enqueue commits/job",
              "lease calls",
              "lease commits/job",
              "complete commits/job",
              "total commits/job",
              "enqueued/leased/completed",
            ],
            rows: flows.map((f) => [
              f.name,
              f.jobs,
              f.submitRequests,
              per(f.enqueueCommits, f),
              f.leaseCalls,
              per(f.leaseCommits, f),
              per(f.completeCommits, f),
              per(total(f), f),
              `${f.counters.enqueued}/${f.counters.leased}/${f.counters.completed}`,
            ]),
          },
        ],
        metrics: {
          single_commits_per_job: round(per(total(s), s)),
          batched_commits_per_job: round(per(total(b), b)),
          single_enqueue_commits_per_job: round(per(s.enqueueCommits, s)),
          batched_enqueue_commits_per_job: round(per(b.enqueueCommits, b)),
          lease_commits_per_job: round(per(s.leaseCommits, s)),
          complete_commits_per_job: round(per(s.completeCommits, s)),
        },
        notes: [
          "A commit is one actor event that wrote storage (SchedulerCore.counters.commits); reads commit nothing.",
          "Counters are the actor's in-memory counts, read as differences before and after each phase.",
          "Account and registry actors add no commits here: authentication is a cached read and no Idempotency-Key is sent.",
          "Not counted: locally, Miniflare's rate-limit simulator is itself a SQLite-backed Durable Object that writes once per authenticated HTTP request (see the submit benchmark's * rows); the deployed binding is not one of our actors.",
        ],
      };
    } finally {
      await pool.close();
      await edge.stop();
    }
  },
};
