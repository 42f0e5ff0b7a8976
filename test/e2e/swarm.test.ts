/**
 * Weights peer to peer, end to end: real `floodgate agent` processes serving a rollout against
 * the real local stack fetch a pushed version through its swarm. Three hosts (cache directories),
 * one of them with two agents; a lying peer (a piece server in this process that announces every
 * piece with a valid agent token and answers garbage) is in the swarm from the start.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PIECE_BYTES, piecesOf, versionDigest, type VersionPush } from "../../shared/repository.ts";
import { encodeBitfield } from "../../shared/swarm.ts";
import { PER_PEER } from "../../gpu-agent/versions/swarm.ts";
import { api, BIN, freePort, ROOT, startStack, type Stack } from "./stack.ts";

let stack: Stack;
const dirs: string[] = [];
const agents: ChildProcess[] = [];
let liar: Server | undefined;
let liarAnnounces: NodeJS.Timeout | undefined;

beforeAll(async () => {
  stack = await startStack({ agents: 0 });
});

afterAll(async () => {
  clearInterval(liarAnnounces);
  for (const a of agents) if (a.exitCode === null) a.kill("SIGKILL");
  await new Promise<void>((res) => (liar ? liar.close(() => res()) : res()));
  await stack?.stop("SIGTERM");
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const sha = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "floodgate-swarm-"));
  dirs.push(d);
  return d;
}

/** Pushes a version of `demo` with `n` one-piece files of `size` bytes. */
async function pushVersion(
  version: string,
  n: number,
  size: number,
): Promise<{ push: VersionPush; files: Map<string, Buffer> }> {
  const files = new Map<string, Buffer>();
  for (let i = 0; i < n; i++) files.set(`w/part-${i}.bin`, randomBytes(size));
  const push: VersionPush = {
    manifest: {
      format: 1,
      model: "demo",
      version,
      runner: "demo",
      input_schema: { type: "object" },
      resources: { gpus: 0, vram_gib: 0 },
      max_batch: 1,
      expected_runtime_s: 1,
      config: {},
    },
    piece_bytes: PIECE_BYTES,
    files: [...files].map(([path, bytes]) => ({ path, size: bytes.length, sha256: sha(bytes), pieces: [sha(bytes)] })),
  };
  const admin = stack.config.admin_key;
  expect((await api(stack, "POST", "/v1/admin/models/demo/versions", push, admin)).status).toBe(201);
  for (const bytes of files.values()) {
    const res = await fetch(`${stack.config.url}/v1/admin/pieces/${sha(bytes)}`, {
      method: "PUT",
      headers: { authorization: `Bearer ${admin}`, "content-type": "application/octet-stream" },
      body: new Uint8Array(bytes),
    });
    expect(res.status).toBe(201);
  }
  expect((await api(stack, "POST", `/v1/admin/models/demo/versions/${version}/commit`, undefined, admin)).status).toBe(
    200,
  );
  return { push, files };
}

async function rollOut(version: string): Promise<void> {
  const r = await api(stack, "POST", "/v1/admin/rollouts", { models: { demo: { version } } }, stack.config.admin_key);
  expect(r.status).toBe(201);
}

/** A peer that announces every piece and answers each request with random bytes. */
async function startLiar(push: VersionPush): Promise<{ served: () => number }> {
  let served = 0;
  liar = createServer((req, res) => {
    served += 1;
    const body = randomBytes(4096);
    res.writeHead(200, { "content-length": String(body.length) });
    res.end(body);
  });
  await new Promise<void>((res) => liar!.listen(0, "127.0.0.1", () => res()));
  const port = (liar.address() as AddressInfo).port;
  const count = piecesOf(push.files).length;
  const digest = await versionDigest(push);
  const announce = async (): Promise<number> => {
    const res = await fetch(`${stack.config.url}/v1/agent/swarm/demo/${push.manifest.version}`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${stack.config.agent_token}`,
        "x-floodgate-agent": "agt_liar000000000001",
        "content-type": "application/json",
      },
      body: JSON.stringify({
        digest,
        addr: `127.0.0.1:${port}`,
        have: encodeBitfield(Array.from({ length: count }, () => true)),
      }),
    });
    await res.body?.cancel();
    return res.status;
  };
  expect(await announce()).toBe(200);
  // It stays in the swarm as any peer holding everything does.
  liarAnnounces = setInterval(() => void announce().catch(() => undefined), 5_000);
  return { served: () => served };
}

interface Running {
  child: ChildProcess;
  output: () => string;
}

function startAgent(cacheDir: string, peerPort: number): Running {
  const child = spawn(
    process.execPath,
    [
      BIN,
      "agent",
      "--url",
      stack.config.url,
      "--token",
      stack.config.agent_token,
      "--cache-dir",
      cacheDir,
      "--gpus",
      "all",
      "--peer-addr",
      `127.0.0.1:${peerPort}`,
      "--max-download-mibps",
      "6",
    ],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  agents.push(child);
  let out = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (out += d.toString()));
  return { child, output: () => out };
}

async function until(what: string, ok: () => boolean, ms: number, show: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms\n${show()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const MiB = 1024 * 1024;

describe("weights peer to peer", () => {
  it("agents fetch a version from each other and the origin sends about one copy; two agents of one host fetch it once; a lying peer's pieces are all caught", async () => {
    const { push, files } = await pushVersion("swarm-1", 8, 1 * MiB);
    const lying = await startLiar(push);
    const hostA = tempDir();
    const hosts = [hostA, hostA, tempDir(), tempDir()];
    const running: Running[] = [];
    for (const dir of hosts) running.push(startAgent(dir, await freePort()));
    const all = () => running.map((r, i) => `--- agent ${i}\n${r.output()}`).join("\n");
    // The rollout reaches agents already connected, so they fetch at about the same time.
    await until("every agent connects", () => running.every((r) => r.output().includes("connected to")), 60_000, all);
    await rollOut("swarm-1");
    await until(
      "every agent serves swarm-1",
      () => running.every((r) => /demo@swarm-1#\d+ serves on the CPU/.test(r.output())),
      120_000,
      all,
    );

    // Host A fetched once: one of its agents fetched, the other waited for it.
    const fetchedOn = running.map((r) => /demo@swarm-1: ready in .*\((\d+) piece\(s\) fetched/.exec(r.output()));
    const waited = running.map((r) => r.output().includes("demo@swarm-1: another agent of this host holds it"));
    expect(fetchedOn.slice(0, 2).filter((m) => m !== null)).toHaveLength(1);
    expect(waited.slice(0, 2).filter(Boolean)).toHaveLength(1);
    expect(fetchedOn.slice(2).every((m) => m !== null)).toBe(true);

    // The origin sent about one copy between the three hosts; the rest came from peers.
    const sources = running.flatMap((r) => {
      const m = /demo@swarm-1: ready in .*; ([\d.]+) MiB from the origin, ([\d.]+) MiB from peers/.exec(r.output());
      return m ? [{ origin: Number(m[1]), peers: Number(m[2]) }] : [];
    });
    expect(sources).toHaveLength(3);
    const origin = sources.reduce((a, s) => a + s.origin, 0);
    const peers = sources.reduce((a, s) => a + s.peers, 0);
    console.log(`swarm e2e: ${JSON.stringify(sources)} MiB by host (origin, peers)`);
    // Every host got its 8 MiB; endgame duplicates may add a little.
    expect(origin + peers).toBeGreaterThanOrEqual(23.9);
    expect(origin + peers).toBeLessThanOrEqual(24 * 1.25);
    // Without peers the three hosts would take 24 MiB from the origin.
    expect(origin).toBeLessThanOrEqual(8 * 1.5);
    expect(peers).toBeGreaterThan(0);

    // Every piece the liar sent was caught: each host that asked it discarded what it sent and
    // never asked again; and the files the runners got are the pushed bytes.
    const corrupt = running.map((r) =>
      Number(/(\d+) corrupt piece\(s\) from peers discarded/.exec(r.output())?.[1] ?? 0),
    );
    expect(lying.served()).toBeGreaterThan(0);
    expect(corrupt.reduce((a, b) => a + b, 0)).toBe(lying.served());
    // Once caught, never asked again: at most the requests already in flight to it.
    for (const c of corrupt) expect(c).toBeLessThanOrEqual(PER_PEER);
    for (const dir of new Set(hosts)) {
      for (const [path, bytes] of files) {
        expect(sha(readFileSync(join(dir, "versions", "demo", "swarm-1", path)))).toBe(sha(bytes));
      }
    }
  }, 240_000);
});
