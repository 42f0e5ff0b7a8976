/**
 * One agent of the weights benchmark (bench/benchmarks/weights.ts), as a process of its own: the
 * agent's fetch path (gpu-agent/versions/fetch.ts with its swarm session, piece server and byte
 * buckets), without the job WebSocket the benchmark does not measure. Started with one JSON
 * argument ({@link SwarmAgentArgs}); says `{"event":"listening"}` once its piece server is up,
 * starts fetching on a `go` line on stdin, says `{"event":"done",...}` when the version is
 * whole, and keeps serving it until stdin closes.
 *
 * `lie: true` makes it a lying peer instead: it announces every piece and answers every request
 * with random bytes.
 */
import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createInterface } from "node:readline";
import { piecesOf } from "../../shared/repository.ts";
import { encodeBitfield } from "../../shared/swarm.ts";
import { ByteBucket } from "../../gpu-agent/versions/bucket.ts";
import { fetchVersion, VersionCache } from "../../gpu-agent/versions/fetch.ts";
import { PieceServer } from "../../gpu-agent/versions/peer-server.ts";
import { Swarm } from "../../gpu-agent/versions/swarm.ts";

export interface SwarmAgentArgs {
  url: string;
  token: string;
  agentId: string;
  cacheDir: string;
  model: string;
  version: string;
  digest: string;
  /** MiB/s each way; absent: no limit. */
  mibps?: number;
  /** Without peers: every piece from the origin, as an agent without a swarm. */
  peers: boolean;
  lie?: boolean;
}

const args = JSON.parse(process.argv[2] ?? "{}") as SwarmAgentArgs;
const say = (o: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(o)}\n`);
const edge = { baseUrl: args.url, token: args.token, agentId: () => args.agentId };
const lines = createInterface({ input: process.stdin });
const go = new Promise<void>((res) => lines.on("line", (l) => l.trim() === "go" && res()));
const closed = new Promise<void>((res) => lines.on("close", () => res()));

if (args.lie) {
  const server = createServer((_req, res) => {
    const body = randomBytes(64 * 1024);
    res.writeHead(200, { "content-length": String(body.length) });
    res.end(body);
  });
  await new Promise<void>((res) => server.listen(0, "127.0.0.1", () => res()));
  const addr = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  const rec = (await (
    await fetch(`${args.url}/v1/agent/versions/${args.model}/${args.version}`, {
      headers: { authorization: `Bearer ${args.token}`, "x-floodgate-agent": args.agentId },
    })
  ).json()) as { files: { pieces: string[]; path: string; size: number; sha256: string }[] };
  const have = encodeBitfield(piecesOf(rec.files).map(() => true));
  const announce = async (): Promise<void> => {
    const res = await fetch(`${args.url}/v1/agent/swarm/${args.model}/${args.version}`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${args.token}`,
        "x-floodgate-agent": args.agentId,
        "content-type": "application/json",
      },
      body: JSON.stringify({ digest: args.digest, addr, have }),
    });
    await res.body?.cancel();
  };
  await announce();
  const timer = setInterval(() => void announce().catch(() => undefined), 2_000);
  say({ event: "listening", addr });
  await closed;
  clearInterval(timer);
  server.closeAllConnections();
  server.close();
} else {
  const cache = new VersionCache(args.cacheDir);
  const bucket = (): ByteBucket | undefined => (args.mibps === undefined ? undefined : new ByteBucket(args.mibps));
  const download = bucket();
  let swarm: Swarm | undefined;
  if (args.peers) {
    const server = new PieceServer(cache, bucket());
    const port = await server.listen(0, "127.0.0.1");
    swarm = new Swarm({ addr: `127.0.0.1:${port}`, server, ...(download ? { download } : {}) });
  }
  say({ event: "listening" });
  await go;
  const started = Date.now();
  const got = await fetchVersion(
    edge,
    cache,
    { model: args.model, version: args.version, digest: args.digest },
    {
      ...(swarm ? { swarm } : {}),
      ...(download ? { download } : {}),
      log: (l) => process.stderr.write(`[${args.agentId}] ${l}\n`),
    },
  );
  if (!got.ok) {
    say({ event: "failed", message: got.message });
    process.exitCode = 1;
  } else {
    say({
      event: "done",
      at_ms: Date.now(),
      took_ms: Date.now() - started,
      dir: got.version.dir,
      origin_bytes: got.swarm?.originBytes ?? got.fetched.bytes,
      peer_bytes: got.swarm?.peerBytes ?? 0,
      corrupt: got.swarm?.corrupt ?? 0,
    });
  }
  await closed;
  await swarm?.close();
}
