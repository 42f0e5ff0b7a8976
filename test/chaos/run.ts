/**
 * `npm run chaos -- [--quick] [--seed N] [--jobs N] [--out history.jsonl]`: the chaos run
 * (chaos.ts) against the real local stack. Prints the report, then the verdict on one line, and
 * exits 0 when the checker finds nothing, 1 on any lost, duplicated, split or stuck job or stale
 * result accepted, 2 on bad usage. `--check FILE` recomputes the verdict of a kept history.
 */
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import { preset, runChaos } from "./chaos.ts";
import { check, verdictLine, type Verdict } from "./checker.ts";
import { readHistory } from "./history.ts";

const USAGE = `usage: npm run chaos -- [--quick] [--seed N] [--jobs N] [--out FILE] [--check FILE]

  --quick        a few hundred jobs, every fault once or twice (about 3 minutes)
  --seed N       the seed of the fault plan and the jobs (default: from the clock, printed)
  --jobs N       logical submits (default 10000, --quick 400)
  --out FILE     the history, JSONL (default bench/out/chaos-<seed>.jsonl); agents' logs beside it
  --check FILE   only recompute the verdict of a history written before
  -h, --help     this text
`;

function report(v: Verdict): string {
  const lines = [
    `submits: ${v.submitted} logical, ${v.accepted} accepted, ${v.refused} never answered with a job`,
    `statuses: ${Object.entries(v.statuses)
      .map(([k, n]) => `${k} ${n}`)
      .join(", ")}; failures: ${
      Object.entries(v.failures_by_reason)
        .map(([k, n]) => `${k} ${n}`)
        .join(", ") || "none"
    }`,
    `attempts per job: ${Object.entries(v.attempts.histogram)
      .map(([k, n]) => `${k}×${n}`)
      .join(
        " ",
      )} (max ${v.attempts.max}, mean ${v.attempts.mean}); spent against max_attempts: max ${v.spent.max}, mean ${v.spent.mean}`,
    `stale refused: ${
      Object.entries(v.stale_refused_by)
        .map(([k, n]) => `${k} ${n}`)
        .join(", ") || "none"
    }`,
    `requeue after kill -9: ${v.requeue_after_kill.leases} leases, p50 ${v.requeue_after_kill.p50_s} s, max ${v.requeue_after_kill.max_s} s; next start max ${v.requeue_after_kill.redispatch_max_s} s`,
    `requeue after stall/zombie/partition: ${v.requeue_after_stall.leases} leases, max ${v.requeue_after_stall.max_s} s`,
    `idempotency: ${v.idempotency.triples_one_job}/${v.idempotency.triples} triple submits made one job; ${v.idempotency.timeouts_found_once}/${v.idempotency.client_timeouts} clients that timed out and retried found their job once`,
    `faults: ${Object.entries(v.faults)
      .map(([k, n]) => `${k} ${n}`)
      .join(", ")}`,
    `observations: ${v.observations}`,
    "wait from submit to first dispatch, per tier:",
    ...v.waits.map(
      (w) =>
        `  ${w.tier.padEnd(10)} SLO ${String(w.slo_s).padStart(4)} s  jobs ${String(w.jobs).padStart(5)}  p50 ${w.p50_s} s  p99 ${w.p99_s} s  max ${w.max_s} s  max/SLO ${w.max_over_slo}  within SLO ${w.within_slo_pct}%`,
    ),
  ];
  if (v.problems.length > 0) lines.push("problems:", ...v.problems.map((p) => `  ${p}`));
  return lines.join("\n");
}

async function main(argv: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: argv,
      strict: true,
      options: {
        quick: { type: "boolean", default: false },
        seed: { type: "string" },
        jobs: { type: "string" },
        out: { type: "string" },
        check: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    }).values;
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values.check !== undefined) {
    const v = check(readHistory(values.check));
    process.stdout.write(`${report(v)}\n${verdictLine(v)}\n`);
    return v.ok ? 0 : 1;
  }
  const seed = values.seed === undefined ? Date.now() % 2 ** 31 : Number(values.seed);
  const jobs = values.jobs === undefined ? undefined : Number(values.jobs);
  if (!Number.isInteger(seed) || seed < 0 || (jobs !== undefined && (!Number.isInteger(jobs) || jobs < 1))) {
    process.stderr.write(`--seed and --jobs take whole numbers (--jobs at least 1)\n\n${USAGE}`);
    return 2;
  }
  const base = preset(values.quick ? "quick" : "full");
  const out = resolve(values.out ?? `bench/out/chaos-${seed}.jsonl`);
  mkdirSync(dirname(out), { recursive: true });
  process.stderr.write(`[chaos] ${base.mode} run, seed ${seed}, history ${out}\n`);
  const r = await runChaos({
    ...base,
    jobs: jobs ?? base.jobs,
    seed,
    out,
    log: (l) => process.stderr.write(l + "\n"),
  });
  process.stdout.write(
    `${report(r.verdict)}\nrun: ${Math.round(r.duration_ms / 1000)} s, submits over ${Math.round(r.submit_ms / 1000)} s, faults in the first ${Math.round(base.window_ms / 1000)} s, seed ${seed}, history ${r.history}\n${verdictLine(r.verdict)}\n`,
  );
  return r.verdict.ok ? 0 : 1;
}

// The verdict is written (stdout and stderr are synchronous for files and pipes on Linux): leave
// now, whatever handle the stopped stack may have left behind in this process.
process.exit(await main(process.argv.slice(2)));
