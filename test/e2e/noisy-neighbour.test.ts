import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAgent, waitExit } from "../../cli/dev.ts";
import { childrenOf } from "../chaos/chaos.ts";
import type { NoisyConfig, NoisyReport } from "../chaos/noisy.ts";
import { percentile } from "../chaos/checker.ts";
import { api, ROOT, startStack, type Stack } from "./stack.ts";

const MODEL = "nn";
const IDLE = "nn-idle";
/** The quiet account's pace (submits/s), and the alternating blocks it is measured in (ms). */
const QUIET_RATE = 8;
const BLOCK_MS = 8_000;
const ROUNDS = 3;
/** The noisy account's tier allows 60 requests a minute; it sends 100 times that. */
const NOISY_LIMIT_PER_MIN = 60;
const NOISY_RATE = (100 * NOISY_LIMIT_PER_MIN) / 60;
const STREAMS = 300;
/**
 * The neighbour's streaming account's limit: opening a stream counts against it, and its 300
 * streams are opened again in each of the three blocks, with their setup.
 */
const STREAMER_LIMIT_PER_MIN = 6000;
/** Agents and their slots: room for the quiet account and the noisy one's allowed bursts. */
const AGENTS = 2;
const SLOTS = 24;

let stack: Stack;
const agents: ChildProcess[] = [];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function account(tier: string, rateLimit?: number): Promise<string> {
  const r = await api<{ api_key: string }>(
    stack,
    "POST",
    "/v1/admin/accounts",
    { name: `nn-${tier}`, tier, ...(rateLimit === undefined ? {} : { rate_limit: rateLimit }) },
    stack.config.admin_key,
  );
  expect(r.status).toBe(201);
  return r.body.api_key;
}

/** Submits at `rate` per second for `ms` (open loop); answers each job and when it was sent. */
async function submitFor(key: string, rate: number, ms: number): Promise<{ id: string; at: number }[]> {
  const sent: Promise<{ id: string; at: number }>[] = [];
  const started = performance.now();
  while (performance.now() - started < ms) {
    const due = started + (sent.length * 1000) / rate;
    if (performance.now() < due) {
      await sleep(Math.max(0, due - performance.now()));
      continue;
    }
    const at = Date.now();
    sent.push(
      api<{ id: string }>(stack, "POST", `/v1/models/${MODEL}/jobs`, { input: { service_ms: 20, steps: 1 } }, key).then(
        (r) => {
          if (r.status !== 202) throw new Error(`a quiet submit answered ${r.status}`);
          return { id: r.body.id, at };
        },
      ),
    );
  }
  return await Promise.all(sent);
}

/** Per job, the time from its send to its first dispatch (the grant of its first lease), in ms. */
async function toDispatch(key: string, jobs: { id: string; at: number }[]): Promise<number[]> {
  const out: number[] = [];
  for (const j of jobs) {
    for (;;) {
      const v = await api<{ attempts: { started_at: string }[] }>(stack, "GET", `/v1/jobs/${j.id}`, undefined, key);
      const first = v.body.attempts[0];
      if (first) {
        out.push(Date.parse(first.started_at) - j.at);
        break;
      }
      await sleep(100);
    }
  }
  return out;
}

function summary(xs: number[]): string {
  return `n ${xs.length}, p50 ${percentile(xs, 50)} ms, p90 ${percentile(xs, 90)} ms, p99 ${percentile(xs, 99)} ms, max ${Math.max(...xs)} ms`;
}

beforeAll(async () => {
  // State in memory where the machine has it: a latency comparison should not measure the disk.
  stack = await startStack({
    agents: 0,
    state: existsSync("/dev/shm") ? mkdtempSync("/dev/shm/floodgate-e2e-") : undefined,
  });
  const admin = stack.config.admin_key;
  for (const name of [MODEL, IDLE]) {
    const put = await api(
      stack,
      "PUT",
      `/v1/admin/models/${name}`,
      { input_schema: { type: "object" }, expected_runtime_s: 0.05 },
      admin,
    );
    if (put.status !== 201) throw new Error(`registering ${name}: ${JSON.stringify(put.body)}`);
  }
  const tok = await api<{ token: string }>(
    stack,
    "POST",
    "/v1/admin/agent-tokens",
    { pool: "nn", models: [MODEL], ttl_s: 3600 },
    admin,
  );
  for (let index = 0; index < AGENTS; index++) {
    agents.push(
      startAgent({
        url: stack.config.url,
        token: tok.body.token,
        state: stack.state,
        index,
        runner: "synthetic",
        extraArgs: ["--slots", String(SLOTS)],
        env: { ...process.env, FLOODGATE_SYNTHETIC_MODELS: MODEL, FLOODGATE_SYNTHETIC_ARGS: `--max-batch ${SLOTS}` },
        stdio: "ignore",
      }),
    );
  }
  for (;;) {
    const r = await api<{ agents: unknown[] }>(stack, "GET", "/v1/admin/agents", undefined, admin);
    if (r.body.agents.length === AGENTS) break;
    await sleep(200);
  }
}, 120_000);

afterAll(async () => {
  for (const a of agents) a.kill("SIGTERM");
  await Promise.all(agents.map((a) => waitExit(a, 10_000)));
  await stack?.stop("SIGTERM");
  if (stack?.state.startsWith("/dev/shm/")) rmSync(stack.state, { recursive: true, force: true });
});

/** A flood client (test/chaos/noisy.ts) in its own process, driven over its stdin. */
interface Flood {
  on(): Promise<void>;
  off(): Promise<void>;
  end(): Promise<NoisyReport>;
  kill(): void;
}

async function flood(config: NoisyConfig): Promise<Flood> {
  const child = spawn(process.execPath, [join(ROOT, "test", "chaos", "noisy.ts"), JSON.stringify(config)], {
    cwd: ROOT,
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  /** Waits for the client's next line that starts with `word`, and consumes the lines up to it. */
  const said = async (word: string): Promise<void> => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const lines = out.split("\n");
      const at = lines.slice(0, -1).findIndex((l) => l.startsWith(word));
      if (at >= 0) {
        out = lines.slice(at + 1).join("\n");
        return;
      }
      if (child.exitCode !== null || Date.now() > deadline)
        throw new Error(`the flood client did not say ${word}:\n${err}`);
      await sleep(20);
    }
  };
  await said("ready");
  const command = async (word: string): Promise<void> => {
    child.stdin.write(`${word}\n`);
    await said(word);
  };
  return {
    on: () => command("on"),
    off: () => command("off"),
    end: async () => {
      const exited = new Promise((r) => child.once("exit", r));
      child.stdin.write("end\n");
      await exited;
      return JSON.parse(out.trim().split("\n").at(-1) ?? "{}") as NoisyReport;
    },
    kill: () => child.kill("SIGKILL"),
  };
}

/** CPU time (ms) a process and every process under it have used (Linux /proc; 100 ticks a second). */
function treeCpuMs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  let ms = 0;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    ms = (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return 0;
  }
  return ms + childrenOf(pid).reduce((sum, c) => sum + treeCpuMs(c), 0);
}

/** The edge's CPU time (ms) per request over `n` requests made by `send`, 20 at a time. */
async function edgeCpuPerRequest(
  n: number,
  send: () => Promise<number>,
): Promise<{ ms: number; statuses: Set<number> }> {
  const statuses = new Set<number>();
  const before = treeCpuMs(stack.child.pid);
  for (let i = 0; i < n; i += 20) {
    for (const s of await Promise.all(Array.from({ length: 20 }, send))) statuses.add(s);
  }
  return { ms: (treeCpuMs(stack.child.pid) - before) / n, statuses };
}

describe("noisy neighbour", () => {
  it("an account at 100× its rate limit, beside its neighbour's 300 streams, is refused in the Worker, costing the edge about what a malformed key does", async () => {
    const quiet = await account("api");
    const noisyKey = await account("free");
    const streamerKey = await account("free", STREAMER_LIMIT_PER_MIN);
    const noisy = await flood({
      url: stack.config.url,
      key: noisyKey,
      stream_key: streamerKey,
      // Its own model: what its limit lets through waits there, and runs on no agent of the quiet one's.
      model: IDLE,
      input: {},
      idle_model: IDLE,
      stream_jobs: 20,
      streams: STREAMS,
      rate: NOISY_RATE,
    });
    const healthz = await flood({
      url: stack.config.url,
      model: IDLE,
      input: {},
      idle_model: IDLE,
      stream_jobs: 0,
      streams: 0,
      rate: NOISY_RATE,
    });
    const alone: number[] = [];
    const besideHealthz: number[] = [];
    const besideNoisy: number[] = [];
    let report: NoisyReport;
    try {
      // Warm the path (isolate caches, actors) before measuring.
      await toDispatch(quiet, await submitFor(quiet, QUIET_RATE, 3_000));
      // Alternating blocks, so that whatever else the machine does falls on every side alike.
      const block = async (into: number[], beside?: Flood): Promise<void> => {
        await beside?.on();
        const jobs = await submitFor(quiet, QUIET_RATE, BLOCK_MS);
        await beside?.off();
        into.push(...(await toDispatch(quiet, jobs)));
      };
      for (let round = 0; round < ROUNDS; round++) {
        await block(alone);
        await block(besideHealthz, healthz);
        await block(besideNoisy, noisy);
      }
      report = await noisy.end();
      await healthz.end();
    } finally {
      noisy.kill();
      healthz.kill();
    }

    // What one refused submit costs the edge, against the same submit with a key that cannot even
    // be parsed: refused by the first check of the Worker, with no actor to ask.
    if (Date.now() % 60_000 > 50_000) await sleep(61_000 - (Date.now() % 60_000));
    const submitNoisy = async (): Promise<number> =>
      (await api(stack, "POST", `/v1/models/${IDLE}/jobs`, { input: {} }, noisyKey)).status;
    let spent = 0;
    while (spent++ <= NOISY_LIMIT_PER_MIN && (await submitNoisy()) !== 429) await sleep(0);
    // Interleaved blocks, so that a burst of other work on the machine lands on both sides. Each
    // block of malformed keys comes from its own address (TEST-NET-2): refusals for credentials
    // are limited per address, and this measures a refusal, not that limit.
    let address = 0;
    const submitMalformed = async (): Promise<number> =>
      (
        await fetch(`${stack.config.url}/v1/models/${IDLE}/jobs`, {
          method: "POST",
          headers: {
            authorization: "Bearer fgk_malformed",
            "content-type": "application/json",
            "cf-connecting-ip": `198.51.100.${address}`,
          },
          body: JSON.stringify({ input: {} }),
        })
      ).status;
    const refused = { ms: 0, statuses: new Set<number>() };
    const malformed = { ms: 0, statuses: new Set<number>() };
    for (let block = 0; block < 5; block++) {
      for (const [into, send] of [
        [refused, submitNoisy],
        [malformed, submitMalformed],
      ] as const) {
        address += 1;
        const b = await edgeCpuPerRequest(200, send);
        into.ms += b.ms / 5;
        for (const st of b.statuses) into.statuses.add(st);
      }
    }

    const line = [
      `quiet, submit to dispatch: alone ${summary(alone)}`,
      `beside ${NOISY_RATE} GET /healthz/s: ${summary(besideHealthz)}`,
      `beside the noisy account: ${summary(besideNoisy)}`,
      `noisy: ${report.sent} submits ${JSON.stringify(report.by_code)}, ${report.streams_open} streams held`,
      `edge CPU per rate-limited submit ${refused.ms.toFixed(2)} ms, per submit with a malformed key ${malformed.ms.toFixed(2)} ms`,
    ].join("; ");
    console.log(line);
    expect([...refused.statuses]).toEqual([429]);
    expect([...malformed.statuses]).toEqual([401]);
    // The excess is refused with 429 rate_limited, in the Worker: hardly dearer than a malformed key
    // (measured 0.8–1.3× on this shared machine; an accepted submit, through the actors, is several
    // times dearer).
    expect(report.by_status["429"] ?? 0).toBe(report.by_code.rate_limited);
    expect(report.sent).toBeGreaterThanOrEqual((NOISY_RATE * ROUNDS * BLOCK_MS) / 1000 / 2);
    expect((report.by_code.rate_limited ?? 0) / report.sent).toBeGreaterThan(0.9);
    expect(refused.ms).toBeLessThanOrEqual(1.5 * malformed.ms);
    // Every stream stayed open through every block of the flood.
    expect(report.streams_open).toBe(STREAMS);
  }, 400_000);
});
