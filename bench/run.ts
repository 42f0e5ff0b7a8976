/**
 * `npm run bench -- <name> [--quick] [--json]`: runs one benchmark from bench/benchmarks/ and
 * prints its report as tables, or with `--json` as exactly one JSON object on stdout (progress
 * goes to stderr). `--quick` is a smoke run that finishes within 60 s. Exit codes: 0 done,
 * 1 the benchmark failed, 2 bad usage.
 */
import { execFileSync } from "node:child_process";
import { availableParallelism, loadavg } from "node:os";
import { parseArgs } from "node:util";
import { BENCHMARKS } from "./benchmarks/index.ts";
import { renderReport } from "./lib/report.ts";

function usage(): string {
  const width = Math.max(...BENCHMARKS.map((b) => b.name.length));
  return [
    "usage: npm run bench -- <name> [--quick] [--json]",
    "",
    "benchmarks:",
    ...BENCHMARKS.map((b) => `  ${b.name.padEnd(width)}  ${b.description}`),
    "",
    "options:",
    "  --quick   a short run (under 60 s): smaller sizes and durations",
    "  --json    print exactly one JSON object on stdout instead of tables",
    "            (npm prints its own banner on stdout: use `npm run -s bench -- <name> --json`)",
    "  --help    this text",
  ].join("\n");
}

/** The commit measured, `+dirty` when the working tree has uncommitted changes. */
function gitRevision(): string {
  try {
    const head = execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], { encoding: "utf8" }).trim();
    return dirty ? `${head}+dirty` : head;
  } catch {
    return "unknown";
  }
}

/** `nproc` as the shell sees it (the CPUs this process may use), else Node's count. */
function nproc(): number {
  try {
    return Number(execFileSync("nproc", { encoding: "utf8" }).trim());
  } catch {
    return availableParallelism();
  }
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        quick: { type: "boolean", default: false },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${usage()}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(usage() + "\n");
    return 0;
  }
  if (positionals.length !== 1) {
    process.stderr.write(`${positionals.length === 0 ? "name a benchmark" : "name one benchmark"}\n\n${usage()}\n`);
    return 2;
  }
  const name = positionals[0] as string;
  const bench = BENCHMARKS.find((b) => b.name === name);
  if (!bench) {
    process.stderr.write(`unknown benchmark ${JSON.stringify(name)}\n\n${usage()}\n`);
    return 2;
  }
  const log = (line: string): void => {
    process.stderr.write(`[${name}] ${line}\n`);
  };
  // With --json, stdout carries exactly one object: anything a library logs goes to stderr.
  const restore = { log: console.log, info: console.info, debug: console.debug };
  if (values.json) {
    console.log = console.error;
    console.info = console.error;
    console.debug = console.error;
  }
  const started = new Date();
  // Other work on the machine skews every figure: the 1-minute load average says how busy it was.
  const loadBefore = loadavg()[0] as number;
  const t0 = performance.now();
  let report;
  try {
    report = await bench.run({ quick: values.quick, log });
  } catch (err) {
    process.stderr.write(`benchmark ${name} failed: ${(err as Error).stack ?? String(err)}\n`);
    return 1;
  } finally {
    Object.assign(console, restore);
  }
  const meta = {
    benchmark: name,
    command: `npm run bench -- ${argv.join(" ")}`.trim(),
    quick: values.quick,
    date: started.toISOString(),
    node: process.version,
    nproc: nproc(),
    git: gitRevision(),
    wall_s: Math.round((performance.now() - t0) / 100) / 10,
    loadavg_1m: { before: Math.round(loadBefore * 100) / 100, after: Math.round((loadavg()[0] as number) * 100) / 100 },
  };
  if (values.json) {
    const { extra, ...rest } = report;
    process.stdout.write(JSON.stringify({ ...meta, ...rest, ...extra }) + "\n");
  } else {
    process.stdout.write(renderReport(name, report));
    process.stdout.write(
      `\n${meta.command} · ${meta.date} · node ${meta.node} · nproc ${meta.nproc} · git ${meta.git} · ${meta.wall_s} s · load average (1 min) ${meta.loadavg_1m.before} before, ${meta.loadavg_1m.after} after\n`,
    );
  }
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
// Everything the benchmark started is stopped by now; should a stray handle keep the event loop
// alive, leave anyway after a grace period (the timer itself keeps nothing alive).
setTimeout(() => process.exit(), 5_000).unref();
