/**
 * The chaos run: the real local stack (`floodgate dev`) and real agent processes with the
 * synthetic runner, N jobs submitted across every tier and several accounts while a seeded fault
 * plan (faults.ts) kills, cuts, partitions, stalls and stops agents and restarts the edge on its
 * persisted state. Every operation and every answer goes to a JSONL history; the verdict is the
 * checker's (checker.ts) over that file alone.
 */
import type { ChildProcess } from "node:child_process";
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync, type WriteStream } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AdminJobView, JobView } from "../../shared/api.ts";
import { startAgent, waitExit } from "../../cli/dev.ts";
import { api, freePort, startStack, type Stack } from "../e2e/stack.ts";
import { check, type Verdict } from "./checker.ts";
import { rng } from "../../shared/rng.ts";
import { planFaults, type FaultMix, type PlannedFault } from "./faults.ts";
import { HistoryWriter, readHistory, type SeenJob } from "./history.ts";
import { openLink, type AgentLink } from "./proxy.ts";

export const MODEL = "chaos";
const TIERS = ["api", "enterprise", "plus", "light", "free"] as const;
const TERMINAL = new Set(["succeeded", "failed", "cancelled", "expired"]);
/** Job inputs that make every attempt fail, and how many of each a run submits per 1,000 jobs. */
const FAULT_JOBS: Record<string, number> = { poison: 4, crash: 1, oom: 2, error: 1, stall: 1 };
/**
 * A `stall` job needs `max_attempts` run timeouts (a minute or more) to end, so it is submitted
 * in the first half of the run, and the short run, whose drain is shorter than that, has none.
 */
const EARLY_FAULTS = new Set(["stall"]);
/** The chaos model's run timeout (s): what ends an attempt of a `stall` job, whose runner hangs. */
const RUN_TIMEOUT_S = 15;
/**
 * How long the drain waits with no open job moving before it calls them stuck (ms): past a
 * stall's run timeout and its lease's expiry, the longest a healthy job can sit unchanged.
 */
const QUIET_MS = (RUN_TIMEOUT_S + 30 + 15) * 1000;

export interface ChaosOptions {
  mode: string;
  jobs: number;
  seed: number;
  /** The history file (JSONL). */
  out: string;
  agents: number;
  slots: number;
  /** Submits per second the clients aim at. */
  rate: number;
  /** Submits wait while this many jobs are queued. */
  backlog: number;
  /** Faults start and end inside this window, from the first submit (ms). */
  window_ms: number;
  faults: FaultMix;
  /**
   * After the last submit and the window, jobs are waited for until every one has ended; or
   * until none has moved (status, attempt or progress step of any open job) for `quiet_ms`,
   * which reads as stuck; or, while they still move, until `cap_ms` has passed, which reads as
   * a slow machine (still making progress), not lost work.
   */
  drain: { quiet_ms: number; cap_ms: number };
  /** Probability that a job crashes its runner (the synthetic runner's `--fault-rate`). */
  runner_fault_rate: number;
  max_attempts: number;
  /** Fault jobs per 1,000 submits, by the synthetic runner's `fault` input. */
  fault_jobs: Record<string, number>;
  log: (line: string) => void;
}

/** Settings of the three sizes of run. */
export function preset(mode: "full" | "quick" | "short"): Omit<ChaosOptions, "seed" | "out" | "log"> {
  const common = { max_attempts: 4, runner_fault_rate: 0.002, fault_jobs: FAULT_JOBS };
  switch (mode) {
    case "full":
      return {
        ...common,
        mode,
        jobs: 10_000,
        agents: 6,
        slots: 6,
        rate: 15,
        backlog: 400,
        window_ms: 600_000,
        drain: { quiet_ms: QUIET_MS, cap_ms: 1_800_000 },
        faults: {
          kill_every_ms: 5_000,
          cut_every_ms: 8_000,
          partitions: 3,
          partition_ms: 14_000,
          stalls: 2,
          zombies: 2,
          stop_ms: 38_000,
          edge_restarts: 3,
        },
      };
    case "quick":
      return {
        ...common,
        mode,
        jobs: 400,
        agents: 5,
        slots: 4,
        rate: 4.5,
        backlog: 200,
        window_ms: 95_000,
        drain: { quiet_ms: QUIET_MS, cap_ms: 600_000 },
        faults: {
          kill_every_ms: 5_000,
          cut_every_ms: 7_000,
          partitions: 1,
          partition_ms: 14_000,
          stalls: 1,
          zombies: 1,
          stop_ms: 36_000,
          edge_restarts: 2,
        },
      };
    case "short":
      return {
        ...common,
        mode,
        jobs: 100,
        agents: 4,
        slots: 4,
        rate: 5,
        backlog: 100,
        window_ms: 26_000,
        drain: { quiet_ms: QUIET_MS, cap_ms: 120_000 },
        fault_jobs: Object.fromEntries(Object.entries(FAULT_JOBS).filter(([f]) => !EARLY_FAULTS.has(f))),
        faults: {
          kill_every_ms: 7_000,
          cut_every_ms: 9_000,
          partitions: 1,
          partition_ms: 12_000,
          stalls: 0,
          zombies: 0,
          stop_ms: 0,
          edge_restarts: 1,
          // The partitioned agent is back, and told its leases are stale, before the edge restarts.
          at: { partition: [0.1, 0.1], edge: [0.65, 0.65] },
        },
      };
  }
}

interface Account {
  id: string;
  key: string;
  tier: string;
}

interface Op {
  op: number;
  account: Account;
  key: string;
  copies: number;
  /** The first try gives up waiting after this many ms (a client that times out and retries). */
  first_timeout_ms: number;
  input: Record<string, unknown>;
  fault: string | null;
}

interface AgentProc {
  index: number;
  child: ChildProcess;
  link: AgentLink;
  stopped: boolean;
  gone: boolean;
  /** Connections the agent has made (its "connected" lines). */
  connects: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The epoch in an output key `outputs/<job>/<epoch>/<name>`. */
function keyEpoch(key: unknown): number | undefined {
  const m = typeof key === "string" ? /^outputs\/[^/]+\/(\d+)\//.exec(key) : null;
  return m ? Number(m[1]) : undefined;
}

/** A job view as the history keeps it; an admin's view also names each attempt's agent. */
export function seenOf(v: JobView | AdminJobView): SeenJob {
  const outputs = (v.outputs ?? []).map((o) => ({ key: String(o.key ?? ""), sha: String(o.sha256 ?? "") }));
  const op = (v.metadata as { op?: unknown } | null)?.op;
  return {
    status: v.status,
    tier: v.tier,
    op: typeof op === "number" ? op : null,
    created_at: Date.parse(v.created_at),
    attempts: v.attempts.map((a) => ({
      epoch: a.epoch,
      ...("agent" in a ? { agent: a.agent } : {}),
      outcome: a.outcome,
      reason: a.reason,
      started_at: Date.parse(a.started_at),
      ended_at: a.ended_at === null ? null : Date.parse(a.ended_at),
    })),
    result: !TERMINAL.has(v.status)
      ? null
      : v.status === "succeeded"
        ? `succeeded:${outputs
            .map((o) => `${o.key}#${o.sha}`)
            .sort()
            .join(",")}`
        : `${v.status}:${v.error?.code ?? ""}`,
    output_epochs: outputs.flatMap((o) => keyEpoch(o.key) ?? []),
    error: v.error?.code ?? null,
  };
}

/** Direct children of a process (Linux). */
export function childrenOf(pid: number | undefined): number[] {
  if (pid === undefined) return [];
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** Where state goes: memory when the machine has it (commits are fsyncs), else the temp dir. */
function stateDir(): string {
  return mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "floodgate-chaos-"));
}

export interface ChaosResult {
  verdict: Verdict;
  history: string;
  duration_ms: number;
  /** From the first submit until every logical submit was answered or given up (ms). */
  submit_ms: number;
}

export async function runChaos(opts: ChaosOptions): Promise<ChaosResult> {
  const started = Date.now();
  const draw = rng(opts.seed);
  const history = new HistoryWriter(opts.out);
  const agentLog: WriteStream = createWriteStream(opts.out.replace(/\.jsonl$/, "") + ".agents.log");
  const state = stateDir();
  const port = await freePort();
  let stack: Stack | undefined;
  const agents: AgentProc[] = [];
  const links: AgentLink[] = [];
  let submitMs = 0;
  try {
    stack = await startStack({ state, port, agents: 0 });
    const url = stack.config.url;
    const admin = stack.config.admin_key;
    const put = await api(
      stack,
      "PUT",
      `/v1/admin/models/${MODEL}`,
      {
        input_schema: { type: "object" },
        max_attempts: opts.max_attempts,
        expected_runtime_s: 0.5,
        run_timeout_s: RUN_TIMEOUT_S,
        shards: 2,
      },
      admin,
    );
    if (put.status >= 300) throw new Error(`registering ${MODEL}: ${JSON.stringify(put.body)}`);
    const tiers = (
      await api<{ tiers: { name: string; slo_s: number }[] }>(stack, "GET", "/v1/admin/tiers", undefined, admin)
    ).body.tiers;
    const accounts: Account[] = [];
    for (const tier of TIERS) {
      for (let i = 0; i < 2; i++) {
        const made = await api<{ id: string; api_key: string }>(
          stack,
          "POST",
          "/v1/admin/accounts",
          { name: `chaos-${tier}-${i}`, tier, rate_limit: 60_000 },
          admin,
        );
        if (made.status !== 201) throw new Error(`creating an account: ${JSON.stringify(made.body)}`);
        accounts.push({ id: made.body.id, key: made.body.api_key, tier });
      }
    }
    const token = await api<{ token: string }>(
      stack,
      "POST",
      "/v1/admin/agent-tokens",
      { pool: "chaos", models: [MODEL], ttl_s: 86_400 },
      admin,
    );
    if (token.status !== 201) throw new Error(`minting an agent token: ${JSON.stringify(token.body)}`);

    const plan = planFaults(opts.seed, opts.window_ms, opts.faults);
    history.write({
      t: Date.now(),
      type: "run",
      seed: opts.seed,
      jobs: opts.jobs,
      mode: opts.mode,
      max_attempts: opts.max_attempts,
      tiers: tiers.map((t) => ({ name: t.name, slo_s: t.slo_s })),
      accounts: accounts.map((a) => ({ id: a.id, tier: a.tier })),
      expect_stale: plan.some((f) => f.kind === "zombie" || f.kind === "stall" || f.kind === "partition"),
    });

    // Agents: real `floodgate agent` processes, each behind its own proxy port.
    const idOf = (index: number): string => {
      try {
        return readFileSync(join(state, "agents", String(index), "agent-id"), "utf8").trim();
      } catch {
        return `local-${index}`;
      }
    };
    let nextIndex = 0;
    const spawnAgent = async (index = nextIndex++): Promise<AgentProc> => {
      const link = await openLink(port);
      links.push(link);
      const child = startAgent({
        url: link.url,
        token: token.body.token,
        state,
        index,
        runner: "synthetic",
        extraArgs: ["--slots", String(opts.slots), "--prefetch", "1"],
        env: {
          ...process.env,
          FLOODGATE_SYNTHETIC_MODELS: MODEL,
          FLOODGATE_SYNTHETIC_ARGS: `--fault-rate ${opts.runner_fault_rate} --seed ${(opts.seed + index) >>> 0}`,
        },
        stdio: "pipe",
      });
      const a: AgentProc = { index, child, link, stopped: false, gone: false, connects: 0 };
      let buf = "";
      const onData = (d: Buffer): void => {
        buf += d.toString();
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          agentLog.write(`${new Date().toISOString()} ${line}\n`);
          if (/\] connected to /.test(line)) a.connects++;
          const m = /the edge refused the (.+) of (job_[0-9a-z]+) at epoch (\d+) as stale$/.exec(line);
          if (m) {
            const [, what, job, epoch] = m as unknown as [string, string, string, string];
            history.write({
              t: Date.now(),
              type: "stale.refused",
              agent: idOf(index),
              job,
              epoch: Number(epoch),
              what,
            });
          }
        }
      };
      child.stdout?.on("data", onData);
      child.stderr?.on("data", onData);
      child.once("exit", () => (a.gone = true));
      agents.push(a);
      history.write({ t: Date.now(), type: "fault", kind: "start", detail: `local-${index}` });
      return a;
    };
    for (let i = 0; i < opts.agents; i++) await spawnAgent();

    // The logical submits, drawn from the seed.
    const faultAt = new Map<number, string>();
    for (const [fault, per1000] of Object.entries(opts.fault_jobs)) {
      const n = Math.max(1, Math.round((opts.jobs * per1000) / 1000));
      const span = EARLY_FAULTS.has(fault) ? Math.ceil(opts.jobs / 2) : opts.jobs;
      for (let k = 0; k < n; k++) {
        let i = Math.floor(draw() * span);
        while (faultAt.has(i)) i = (i + 1) % opts.jobs;
        faultAt.set(i, fault);
      }
    }
    const ops: Op[] = Array.from({ length: opts.jobs }, (_, op) => {
      const account = accounts[Math.floor(draw() * accounts.length)]!;
      const fault = faultAt.get(op) ?? null;
      return {
        op,
        account,
        key: `chaos-${opts.seed}-${op}`,
        copies: draw() < 0.1 ? 3 : 1,
        first_timeout_ms: draw() < 0.05 ? 1 + Math.floor(draw() * 40) : 30_000,
        fault,
        input: {
          service_ms: 50 + Math.floor(draw() * 350),
          steps: 2 + Math.floor(draw() * 3),
          frames: 1,
          size: 8,
          ...(fault ? { fault } : {}),
        },
      };
    });

    const accepted = new Map<string, Account>();
    const terminalSeen = new Set<string>();
    /** What goes on; flags the loops below read. */
    const phase = { submitting: true, observing: true };

    /** Sends one copy of a submit; answers whether to retry and after how long. */
    const sendOnce = async (o: Op, attempt: number, copy: number): Promise<"ok" | "give_up" | number> => {
      const timeout = attempt === 1 ? o.first_timeout_ms : 30_000;
      const failed = (status: number, code: string, retry: boolean): void =>
        history.write({ t: Date.now(), type: "submit.fail", op: o.op, try: attempt, copy, status, code, retry });
      history.write({
        t: Date.now(),
        type: "submit.send",
        op: o.op,
        try: attempt,
        copy,
        account: o.account.id,
        tier: o.account.tier,
        key: o.key,
        fault: o.fault,
        timeout_ms: timeout,
      });
      try {
        const r = await fetch(`${url}/v1/models/${MODEL}/jobs`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${o.account.key}`,
            "content-type": "application/json",
            "idempotency-key": o.key,
          },
          body: JSON.stringify({ input: o.input, metadata: { op: o.op } }),
          signal: AbortSignal.timeout(timeout),
        });
        const text = await r.text();
        const body = (text ? JSON.parse(text) : {}) as { id?: string; status?: string; error?: { code?: string } };
        if (r.status === 202 && body.id) {
          history.write({
            t: Date.now(),
            type: "submit.ok",
            op: o.op,
            try: attempt,
            copy,
            job: body.id,
            status: body.status ?? "",
          });
          accepted.set(body.id, o.account);
          return "ok";
        }
        const retry = r.status === 429 || r.status >= 500;
        failed(r.status, body.error?.code ?? "http", retry);
        if (!retry) return "give_up";
        const after = Number(r.headers.get("retry-after") ?? "1");
        return Math.min(2_000, Math.max(100, after * 1000));
      } catch (err) {
        const code = (err as Error).name === "TimeoutError" ? "timeout" : "network";
        failed(0, code, true);
        return code === "timeout" ? 0 : 250 + Math.floor(Math.random() * 750);
      }
    };

    const submitOp = async (o: Op): Promise<void> => {
      const giveUpAt = Date.now() + Math.max(120_000, opts.drain.quiet_ms);
      for (let attempt = 1; ; attempt++) {
        const copies = attempt === 1 ? o.copies : 1;
        const outcomes = await Promise.all(Array.from({ length: copies }, (_, c) => sendOnce(o, attempt, c)));
        if (outcomes.includes("ok")) return;
        if (outcomes.includes("give_up")) {
          history.write({ t: Date.now(), type: "submit.abandoned", op: o.op, why: "refused" });
          return;
        }
        if (Date.now() > giveUpAt) {
          history.write({ t: Date.now(), type: "submit.abandoned", op: o.op, why: "no answer in time" });
          return;
        }
        await sleep(Math.max(...outcomes.filter((x): x is number => typeof x === "number")));
      }
    };

    // Queue depth, for the submitters' back pressure.
    let depth = 0;
    const depthPoll = (async () => {
      while (phase.submitting) {
        try {
          const q = await api<{ queues: { model: string; depth: number }[] }>(
            stack!,
            "GET",
            "/v1/admin/queues",
            undefined,
            admin,
          );
          if (q.status === 200) depth = q.body.queues.filter((x) => x.model === MODEL).reduce((s, x) => s + x.depth, 0);
        } catch {
          // the edge is restarting
        }
        await sleep(1_000);
      }
    })();

    const t0 = Date.now();
    const submitters = (async () => {
      const inflight = new Set<Promise<void>>();
      for (const o of ops) {
        const due = t0 + (o.op / opts.rate) * 1000;
        while (Date.now() < due || depth > opts.backlog || inflight.size >= 32) await sleep(20);
        const p = submitOp(o).finally(() => inflight.delete(p));
        inflight.add(p);
      }
      await Promise.all(inflight);
      phase.submitting = false;
    })();

    // Clients read jobs while it all goes on: random jobs, some already seen terminal again.
    const observe = async (job: string, account: Account): Promise<void> => {
      try {
        const r = await fetch(`${url}/v1/jobs/${job}`, {
          headers: { authorization: `Bearer ${account.key}` },
          signal: AbortSignal.timeout(10_000),
        });
        if (r.status !== 200) {
          if (r.status === 404) history.write({ t: Date.now(), type: "missing", job, status: 404 });
          return;
        }
        const seen = seenOf((await r.json()) as JobView);
        history.write({ t: Date.now(), type: "observe", via: "get", job, seen });
        if (TERMINAL.has(seen.status)) terminalSeen.add(job);
      } catch {
        // the edge is restarting
      }
    };
    const observer = (async () => {
      while (phase.observing) {
        const ids = [...accepted.keys()];
        if (ids.length > 0) {
          const picks = Array.from({ length: 4 }, () => ids[Math.floor(Math.random() * ids.length)]!);
          await Promise.all(picks.map((id) => observe(id, accepted.get(id)!)));
        }
        await sleep(250);
      }
    })();

    // The fault plan.
    const live = (): AgentProc[] => agents.filter((a) => !a.gone && !a.stopped);
    const choose = (f: PlannedFault, pool: AgentProc[]): AgentProc | undefined =>
      pool.length === 0 ? undefined : pool[Math.floor(f.pick * pool.length)];
    /** Live agents that hold a lease now, as the accounts' running jobs say; any live one if none do. */
    const holding = async (): Promise<AgentProc[]> => {
      const busy = new Set<string>();
      for (const account of accounts) {
        try {
          // Which agent runs a job is for admins to see.
          const r = await fetch(`${url}/v1/admin/jobs?account=${account.id}&status=running&limit=100`, {
            headers: { authorization: `Bearer ${admin}` },
            signal: AbortSignal.timeout(5_000),
          });
          if (r.status !== 200) continue;
          for (const j of ((await r.json()) as { jobs: AdminJobView[] }).jobs) {
            const agent = j.attempts.at(-1)?.agent;
            if (agent) busy.add(agent);
          }
        } catch {
          // the edge is restarting
        }
      }
      const pool = live().filter((a) => busy.has(idOf(a.index)));
      return pool.length > 0 ? pool : live();
    };
    const killAgent = (a: AgentProc): void => {
      for (const c of childrenOf(a.child.pid)) signal(c, "SIGKILL");
      if (a.child.pid !== undefined) signal(a.child.pid, "SIGKILL");
      a.gone = true;
    };
    let edgeBusy = false;
    const fire = async (f: PlannedFault): Promise<void> => {
      switch (f.kind) {
        case "kill": {
          const a = choose(f, live());
          if (!a) return;
          history.write({ t: Date.now(), type: "fault", kind: "kill", agent: idOf(a.index) });
          killAgent(a);
          await waitExit(a.child, 5_000);
          await sleep(500);
          await spawnAgent(f.same_id ? a.index : undefined);
          return;
        }
        case "cut": {
          const a = choose(f, live());
          if (!a) return;
          history.write({
            t: Date.now(),
            type: "fault",
            kind: "cut",
            agent: idOf(a.index),
            detail: `${a.link.cut()} connections`,
          });
          return;
        }
        case "partition": {
          const a = choose(f, await holding());
          if (!a) return;
          a.stopped = true;
          history.write({
            t: Date.now(),
            type: "fault",
            kind: "partition",
            agent: idOf(a.index),
            detail: `${f.duration_ms} ms`,
          });
          const before = a.connects;
          a.link.partition(f.duration_ms);
          await sleep(f.duration_ms);
          // Resumed once it is connected again (its backoff grew while it was refused).
          const until = Date.now() + 20_000;
          while (a.connects === before && !a.gone && Date.now() < until) await sleep(100);
          a.stopped = false;
          history.write({ t: Date.now(), type: "fault", kind: "resume", agent: idOf(a.index) });
          return;
        }
        case "stall":
        case "zombie": {
          const a = choose(f, await holding());
          if (!a?.child.pid) return;
          a.stopped = true;
          const pids = f.kind === "stall" ? [a.child.pid, ...childrenOf(a.child.pid)] : [a.child.pid];
          history.write({
            t: Date.now(),
            type: "fault",
            kind: f.kind,
            agent: idOf(a.index),
            detail: `${f.duration_ms} ms`,
          });
          for (const p of pids) signal(p, "SIGSTOP");
          await sleep(f.duration_ms);
          for (const p of pids) signal(p, "SIGCONT");
          a.stopped = false;
          history.write({ t: Date.now(), type: "fault", kind: "resume", agent: idOf(a.index) });
          return;
        }
        case "edge": {
          if (edgeBusy || !stack) return;
          edgeBusy = true;
          history.write({ t: Date.now(), type: "fault", kind: "edge.stop", detail: f.harsh ? "SIGKILL" : "SIGTERM" });
          if (f.harsh) {
            // workerd and wrangler die at once: what is not committed is gone.
            for (const w of childrenOf(stack.child.pid)) signal(-w, "SIGKILL");
          }
          await stack.stop("SIGTERM");
          stack = await startStack({ state, port, agents: 0 });
          history.write({ t: Date.now(), type: "fault", kind: "edge.start" });
          edgeBusy = false;
          return;
        }
      }
    };
    const faultsDone = Promise.all(
      plan.map(async (f) => {
        await sleep(Math.max(0, t0 + f.at_ms - Date.now()));
        await fire(f);
      }),
    );

    // Progress, every 10 s.
    const progress = setInterval(() => {
      opts.log(
        `[chaos] ${Math.round((Date.now() - t0) / 1000)} s: ${accepted.size}/${opts.jobs} accepted, ${terminalSeen.size} seen terminal, queued ${depth}, agents ${live().length}`,
      );
    }, 10_000);
    try {
      await submitters;
      submitMs = Date.now() - t0;
      await faultsDone;
      await depthPoll;

      // Drain: every accepted job must end. Waiting ends early only when nothing moves.
      const drainStart = Date.now();
      let lastMoved = drainStart;
      let before = "";
      let drain: "all_ended" | "no_progress" | "cap" = "cap";
      for (;;) {
        const now = Date.now();
        const open = await openJobs(url, accounts);
        if (open?.count === 0) {
          drain = "all_ended";
          break;
        }
        if (open !== undefined && open.fingerprint !== before) {
          before = open.fingerprint;
          lastMoved = now;
        }
        if (now - lastMoved > opts.drain.quiet_ms) {
          drain = "no_progress";
          break;
        }
        if (now - drainStart > opts.drain.cap_ms) break;
        await sleep(1_000);
      }
      phase.observing = false;
      await observer;

      // The end: every account's jobs, as an admin lists them (with each attempt's agent).
      for (const account of accounts) {
        const jobs = await listAll(url, admin, account, (job, seen) =>
          history.write({ t: Date.now(), type: "observe", via: "list", job, seen }),
        );
        history.write({ t: Date.now(), type: "listing", account: account.id, jobs });
      }
      history.write({
        t: Date.now(),
        type: "end",
        drained: drain === "all_ended",
        drain,
        fault_window_ms: opts.window_ms,
        submit_ms: submitMs,
        duration_ms: Date.now() - started,
      });
    } finally {
      clearInterval(progress);
      phase.observing = false;
    }
  } finally {
    for (const a of agents) {
      if (a.child.pid !== undefined) {
        for (const c of childrenOf(a.child.pid)) signal(c, "SIGCONT");
        signal(a.child.pid, "SIGCONT");
      }
      a.child.kill("SIGKILL");
      for (const c of childrenOf(a.child.pid)) signal(c, "SIGKILL");
    }
    await Promise.all(agents.map((a) => waitExit(a.child, 5_000)));
    await Promise.all(links.map((l) => l.close()));
    await stack?.stop("SIGTERM");
    rmSync(state, { recursive: true, force: true });
    history.close();
    await new Promise<void>((r) => agentLog.end(() => r()));
  }
  const verdict = check(readHistory(opts.out));
  return { verdict, history: opts.out, duration_ms: Date.now() - started, submit_ms: submitMs };
}

/** Jobs of these accounts still queued or running (first pages only: enough to say "not yet"). */
/**
 * The accounts' open (queued or running) jobs: how many (up to 100 per status and account) and
 * a fingerprint of where each stands (status, attempts, progress step), which changes whenever
 * any of them moves. `undefined` when the edge could not be read.
 */
async function openJobs(
  url: string,
  accounts: readonly Account[],
): Promise<{ count: number; fingerprint: string } | undefined> {
  const marks: string[] = [];
  for (const a of accounts) {
    for (const status of ["queued", "running"]) {
      try {
        const r = await fetch(`${url}/v1/jobs?status=${status}&limit=100`, {
          headers: { authorization: `Bearer ${a.key}` },
          signal: AbortSignal.timeout(10_000),
        });
        if (r.status !== 200) return undefined;
        const { jobs } = (await r.json()) as {
          jobs: { id: string; status: string; attempts: unknown[]; progress: { step?: number } | null }[];
        };
        for (const j of jobs) marks.push(`${j.id}:${j.status}:${j.attempts.length}:${j.progress?.step ?? ""}`);
      } catch {
        return undefined;
      }
    }
  }
  return { count: marks.length, fingerprint: marks.sort().join(",") };
}

/** Every job of an account as admins see them, page by page; each view is handed to `onSeen`. */
async function listAll(
  url: string,
  adminKey: string,
  account: Account,
  onSeen: (job: string, seen: SeenJob) => void,
): Promise<{ id: string; op: number | null }[]> {
  const out: { id: string; op: number | null }[] = [];
  let cursor: string | undefined;
  for (let tries = 0; ;) {
    try {
      const r = await fetch(
        `${url}/v1/admin/jobs?account=${account.id}&limit=100${cursor ? `&cursor=${cursor}` : ""}`,
        {
          headers: { authorization: `Bearer ${adminKey}` },
          signal: AbortSignal.timeout(30_000),
        },
      );
      if (r.status !== 200) throw new Error(`listing answered ${r.status}`);
      const page = (await r.json()) as { jobs: AdminJobView[]; next_cursor: string | null };
      for (const v of page.jobs) {
        const seen = seenOf(v);
        onSeen(v.id, seen);
        out.push({ id: v.id, op: seen.op });
      }
      if (!page.next_cursor) return out;
      cursor = page.next_cursor;
    } catch (err) {
      if (++tries > 10) throw err;
      await sleep(1_000);
    }
  }
}
