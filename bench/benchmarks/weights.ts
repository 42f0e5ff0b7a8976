/**
 * `weights`: a model version to many agents at once, through its swarm, on 127.0.0.1 with token
 * buckets standing in for links. The edge runs in workerd (local R2 holds the pieces); between
 * the agents and the edge a relay limits what the origin sends to the same rate as each agent's
 * link and counts it. Each agent is a process of its own with its own cache directory (a host)
 * running the agent's fetch path (bench/lib/swarm-agent.ts), upload and download limited to the
 * link rate.
 *
 * Runs: the swarm; the same without peers (every piece from the origin); the swarm with a
 * quarter of the agents killed mid-transfer; the swarm with a lying peer in it. Then the cached
 * version is read back as a runner loads it, beside `dd` reading the same file.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { PIECE_BYTES, versionDigest, type VersionPush } from "../../shared/repository.ts";
import { ByteBucket } from "../../gpu-agent/versions/bucket.ts";
import { call, startEdge, type Edge } from "../lib/edge.ts";
import { benchAgentId, mintAgentToken } from "../lib/fleet.ts";
import type { Benchmark, Report } from "../lib/report.ts";
import { percentile, round as roundOrNull } from "../lib/stats.ts";

const round = (v: number, digits = 3): number => roundOrNull(v, digits) ?? Number.NaN;
const median = (xs: readonly number[]): number => percentile(xs, 50);
import type { SwarmAgentArgs } from "../lib/swarm-agent.ts";

const MiB = 1024 * 1024;
const MODEL = "weights-bench";
const AGENT = join(import.meta.dirname, "..", "lib", "swarm-agent.ts");

/** A relay to the edge that limits and counts what the origin sends of pieces. */
async function originRelay(
  edge: Edge,
  mibps: number,
): Promise<{ url: string; bytes: () => number; reset: () => void; close: () => Promise<void> }> {
  let bytes = 0;
  const bucket = new ByteBucket(mibps);
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const headers = new Headers();
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string" && k !== "host") headers.set(k, v);
      try {
        const up = await fetch(edge.url + (req.url ?? "/"), {
          method: req.method,
          headers,
          ...(chunks.length > 0 ? { body: Buffer.concat(chunks) } : {}),
        });
        const out: Record<string, string> = {};
        // fetch has decoded the body already: its encoding and length headers no longer hold.
        up.headers.forEach((v, k) => {
          if (!["content-encoding", "content-length", "transfer-encoding", "connection"].includes(k)) out[k] = v;
        });
        res.writeHead(up.status, out);
        const piece = (req.url ?? "").startsWith("/v1/agent/pieces/");
        if (up.body) {
          for await (const chunk of up.body) {
            if (piece) {
              await bucket.take(chunk.length);
              bytes += chunk.length;
            }
            if (!res.write(chunk)) await new Promise((r) => res.once("drain", r));
          }
        }
        res.end();
      } catch {
        res.destroy();
      }
    })();
  });
  // Agents read pieces through their own buckets, slower than the relay writes them: an idle
  // close after the default 5 s would cut a response still being read.
  server.keepAliveTimeout = 120_000;
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    bytes: () => bytes,
    reset: () => void (bytes = 0),
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** Pushes one file of `bytes` random bytes as a version, and answers its digest and the file's sha256. */
async function pushVersion(edge: Edge, version: string, bytes: number): Promise<{ digest: string; sha256: string }> {
  const whole = createHash("sha256");
  const pieces: Buffer[] = [];
  for (let at = 0; at < bytes; at += PIECE_BYTES) {
    const p = randomBytes(Math.min(PIECE_BYTES, bytes - at));
    whole.update(p);
    pieces.push(p);
  }
  const names = pieces.map((p) => createHash("sha256").update(p).digest("hex"));
  const push: VersionPush = {
    manifest: {
      format: 1,
      model: MODEL,
      version,
      runner: "demo",
      input_schema: { type: "object" },
      resources: { gpus: 0, vram_gib: 0 },
      max_batch: 1,
      expected_runtime_s: 1,
      config: {},
    },
    piece_bytes: PIECE_BYTES,
    files: [{ path: "weights.bin", size: bytes, sha256: whole.digest("hex"), pieces: names }],
  };
  await call(edge, edge.adminKey, "POST", `/v1/admin/models/${MODEL}/versions`, push, [201]);
  for (let i = 0; i < pieces.length; i++) {
    const res = await fetch(`${edge.url}/v1/admin/pieces/${names[i]}`, {
      method: "PUT",
      headers: { authorization: `Bearer ${edge.adminKey}`, "content-type": "application/octet-stream" },
      body: new Uint8Array(pieces[i]!),
    });
    if (res.status !== 201 && res.status !== 200) throw new Error(`piece ${i}: ${res.status} ${await res.text()}`);
  }
  await call(edge, edge.adminKey, "POST", `/v1/admin/models/${MODEL}/versions/${version}/commit`, undefined, [200]);
  return { digest: await versionDigest(push), sha256: push.files[0]!.sha256 };
}

interface Proc {
  child: ChildProcess;
  events: Record<string, unknown>[];
  wait: (event: string, ms: number) => Promise<Record<string, unknown>>;
}

function startAgent(args: SwarmAgentArgs, log: (l: string) => void): Proc {
  const child = spawn(process.execPath, [AGENT, JSON.stringify(args)], { stdio: ["pipe", "pipe", "pipe"] });
  const events: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  createInterface({ input: child.stdout! }).on("line", (l) => {
    try {
      events.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      return;
    }
    for (const w of waiters.splice(0)) w();
  });
  let err = "";
  // FLOODGATE_BENCH_LOGS=DIR keeps every agent's log there.
  const keep = process.env.FLOODGATE_BENCH_LOGS;
  if (keep) child.stderr!.pipe(createWriteStream(join(keep, `${args.agentId}.log`)));
  child.stderr!.on("data", (d: Buffer) => {
    err += d.toString();
    if (err.length > 20_000) err = err.slice(-10_000);
  });
  child.once("exit", () => {
    for (const w of waiters.splice(0)) w();
  });
  const wait = async (event: string, ms: number): Promise<Record<string, unknown>> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const hit = events.find((e) => e.event === event || e.event === "failed");
      if (hit) {
        if (hit.event === "failed") throw new Error(`${args.agentId} failed: ${String(hit.message)}`);
        return hit;
      }
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(`${args.agentId} exited ${child.exitCode}: ${err.slice(-6000)}`);
      if (Date.now() > deadline) {
        log(err.slice(-2000));
        throw new Error(`${args.agentId}: no ${event} within ${ms} ms`);
      }
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 250);
      });
    }
  };
  return { child, events, wait };
}

/** Resolves once `child` has exited, killing it after 5 s. */
function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      child.kill("SIGKILL");
      resolve();
    }, 5_000);
    child.once("exit", () => {
      clearTimeout(t);
      resolve();
    });
  });
}

interface RunResult {
  /** Seconds from `go` to each surviving agent's version whole. */
  times: number[];
  originBytes: number;
  corrupt: number;
  read?: { node: number; dd: number };
}

async function runSwarm(
  opts: {
    edge: Edge;
    relay: Awaited<ReturnType<typeof originRelay>>;
    token: string;
    version: { name: string; digest: string };
    agents: number;
    mibps: number;
    peers: boolean;
    kill?: { fraction: number; atShare: number; weightBytes: number };
    liar?: boolean;
    /** Reads one agent's cached weights.bin back, beside dd. */
    measureRead?: number;
    tag: string;
    timeoutMs: number;
  },
  log: (l: string) => void,
): Promise<RunResult> {
  opts.relay.reset();
  const root = mkdtempSync(join(tmpdir(), `floodgate-weights-${opts.tag}-`));
  const procs: Proc[] = [];
  try {
    const base = {
      url: opts.relay.url,
      token: opts.token,
      model: MODEL,
      version: opts.version.name,
      digest: opts.version.digest,
    };
    if (opts.liar) {
      const liar = startAgent(
        {
          ...base,
          agentId: benchAgentId(`l${opts.tag}`.slice(0, 6), 0),
          cacheDir: join(root, "liar"),
          peers: true,
          lie: true,
        },
        log,
      );
      procs.push(liar);
      await liar.wait("listening", 60_000);
    }
    const agents = Array.from({ length: opts.agents }, (_, i) =>
      startAgent(
        {
          ...base,
          agentId: benchAgentId(opts.tag.slice(0, 6), i),
          cacheDir: join(root, `host-${i}`),
          mibps: opts.mibps,
          peers: opts.peers,
        },
        log,
      ),
    );
    procs.push(...agents);
    await Promise.all(agents.map((a) => a.wait("listening", 120_000)));
    const go = Date.now();
    for (const a of agents) a.child.stdin!.write("go\n");
    const killed = new Set<number>();
    if (opts.kill) {
      // Kill the last quarter once the origin has sent the given share of one copy.
      const k = opts.kill;
      const count = Math.round(opts.agents * k.fraction);
      void (async () => {
        while (opts.relay.bytes() < k.weightBytes * k.atShare) await new Promise((r) => setTimeout(r, 50));
        for (let i = opts.agents - count; i < opts.agents; i++) {
          killed.add(i);
          agents[i]!.child.kill("SIGKILL");
        }
        log(`${opts.tag}: killed ${count} agents at ${round((Date.now() - go) / 1000, 1)} s`);
      })();
    }
    const done = await Promise.all(
      agents.map(async (a, i) => {
        try {
          return await a.wait("done", opts.timeoutMs);
        } catch (err) {
          if (killed.has(i)) return undefined;
          throw err;
        }
      }),
    );
    const alive = done.filter((d): d is Record<string, unknown> => d !== undefined);
    return {
      times: alive.map((d) => (Number(d.at_ms) - go) / 1000),
      originBytes: opts.relay.bytes(),
      corrupt: alive.reduce((a, d) => a + Number(d.corrupt ?? 0), 0),
      ...(opts.measureRead !== undefined && alive[0]
        ? { read: await readRates(join(String(alive[0].dir), "weights.bin"), opts.measureRead) }
        : {}),
    };
  } finally {
    for (const p of procs) p.child.stdin?.end();
    await Promise.all(procs.map((p) => exited(p.child)));
    rmSync(root, { recursive: true, force: true });
  }
}

/** MiB/s reading `path` as a runner loads a cached version (a stream), and `dd` reading it. */
async function readRates(path: string, bytes: number): Promise<{ node: number; dd: number }> {
  // Both read the same file, warm in the page cache after the fetch wrote it; each twice, the best kept.
  const nodeRead = async (): Promise<number> => {
    const t = performance.now();
    for await (const _ of createReadStream(path, { highWaterMark: 8 * MiB })) void _;
    return bytes / MiB / ((performance.now() - t) / 1000);
  };
  const ddRead = (): number => {
    const t = performance.now();
    const r = spawnSync("dd", [`if=${path}`, "of=/dev/null", "bs=8M"], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`dd failed: ${r.stderr}`);
    return bytes / MiB / ((performance.now() - t) / 1000);
  };
  return { node: Math.max(await nodeRead(), await nodeRead()), dd: Math.max(ddRead(), ddRead()) };
}

export const weights: Benchmark = {
  name: "weights",
  description: "a version to many agents through its swarm, with token-bucket links (peers and origin-only)",
  async run({ quick, log }): Promise<Report> {
    const agents = quick ? 8 : 16;
    const weightBytes = (quick ? 64 : 512) * MiB;
    const mibps = 25;
    const lowerBound = weightBytes / MiB / mibps;
    const edge = await startEdge();
    const relay = await originRelay(edge, mibps);
    try {
      const token = await mintAgentToken(edge, [MODEL]);
      log(`pushing ${weightBytes / MiB} MiB`);
      const v = await pushVersion(edge, "1", weightBytes);
      const version = { name: "1", digest: v.digest };
      const common = { edge, relay, token, version, agents, mibps };
      log(`swarm: ${agents} agents`);
      const swarm = await runSwarm(
        { ...common, peers: true, tag: "swarm", measureRead: weightBytes, timeoutMs: lowerBound * 4_000 + 60_000 },
        log,
      );
      const lastS = Math.max(...swarm.times);
      log(`swarm: last ${round(lastS, 2)} s, origin ${round(swarm.originBytes / MiB, 1)} MiB`);
      log(`origin only: ${agents} agents`);
      const alone = await runSwarm(
        { ...common, peers: false, tag: "origin", timeoutMs: lowerBound * agents * 2_000 + 60_000 },
        log,
      );
      log(`origin only: last ${round(Math.max(...alone.times), 2)} s`);
      log("swarm, a quarter of the agents killed mid-transfer");
      const killed = await runSwarm(
        {
          ...common,
          peers: true,
          tag: "kill",
          kill: { fraction: 0.25, atShare: 0.4, weightBytes },
          timeoutMs: lowerBound * 6_000 + 60_000,
        },
        log,
      );
      log("swarm with a lying peer");
      const lied = await runSwarm(
        { ...common, peers: true, liar: true, tag: "liar", timeoutMs: lowerBound * 6_000 + 60_000 },
        log,
      );
      const killedLast = Math.max(...killed.times);
      const result = {
        agents,
        weight_bytes: weightBytes,
        mibps,
        lower_bound_s: round(lowerBound, 2),
        last_s: round(lastS, 2),
        median_s: round(median(swarm.times), 2),
        origin_bytes: swarm.originBytes,
        origin_only: { last_s: round(Math.max(...alone.times), 2), origin_bytes: alone.originBytes },
      };
      const goalS = 1.15 * lowerBound + 1;
      return {
        target:
          "agents (own processes, own cache directories) on 127.0.0.1; origin: the edge in workerd behind a relay limited to the link rate",
        setup: { agents, weight_mib: weightBytes / MiB, link_mibps: mibps, piece_mib: PIECE_BYTES / MiB },
        tables: [
          {
            title: "time to the whole version",
            columns: ["run", "last (s)", "median (s)", "origin (MiB)", "goal"],
            rows: [
              [
                "swarm",
                round(lastS, 2),
                round(median(swarm.times), 2),
                round(swarm.originBytes / MiB, 1),
                `last ≤ ${round(goalS, 1)} s, origin ≤ ${round((1.05 * weightBytes) / MiB, 1)} MiB`,
              ],
              [
                "origin only",
                round(Math.max(...alone.times), 2),
                round(median(alone.times), 2),
                round(alone.originBytes / MiB, 1),
                "—",
              ],
              [
                "swarm, 25% killed",
                round(killedLast, 2),
                round(median(killed.times), 2),
                round(killed.originBytes / MiB, 1),
                `last ≤ ${round(lastS * 1.2, 1)} s (+20%)`,
              ],
              [
                "swarm + lying peer",
                round(Math.max(...lied.times), 2),
                round(median(lied.times), 2),
                round(lied.originBytes / MiB, 1),
                "every corrupt piece caught",
              ],
            ],
          },
        ],
        metrics: {
          last_s: result.last_s,
          median_s: result.median_s,
          lower_bound_s: result.lower_bound_s,
          origin_copies: round(swarm.originBytes / weightBytes, 3),
          last_within_goal: lastS <= goalS,
          origin_within_goal: swarm.originBytes <= 1.05 * weightBytes,
          killed_slowdown: round(killedLast / lastS, 3),
          cached_read_mibps: swarm.read ? round(swarm.read.node, 0) : null,
          dd_read_mibps: swarm.read ? round(swarm.read.dd, 0) : null,
          liar_corrupt_caught: lied.corrupt,
        },
        notes: [
          `lower bound W/B = ${round(lowerBound, 2)} s; goal: last agent within 1.15 × W/B + 1 s = ${round(goalS, 2)} s`,
          "every agent checks each piece's sha256 and the assembled file's before saying done: a finished agent holds no bad byte",
          "cached read: the assembled weights.bin of one agent read as a stream (8 MiB reads), beside dd bs=8M on the same file; both warm in the page cache, best of two",
        ],
        extra: result,
      };
    } finally {
      await relay.close();
      await edge.stop();
    }
  },
};
