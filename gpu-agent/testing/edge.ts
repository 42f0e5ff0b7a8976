/**
 * A stand-in for the edge in the agent's unit tests, on 127.0.0.1: the agent's WebSocket
 * session (hello, welcome, `agent.desired`, leases, heartbeat acks), the repository routes an
 * agent fetches versions from (`GET /v1/agent/versions/{model}/{version}`,
 * `GET /v1/agent/pieces/{sha256}`), shaped as docs/protocol.md says, and output uploads that
 * accept anything. The end-to-end tests run the real edge; this one lets a test corrupt a piece,
 * fail requests or watch every frame.
 */
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { WebSocketServer, type WebSocket } from "ws";
import {
  PIECE_BYTES,
  type VersionFile,
  VersionManifest,
  type VersionRecord,
  versionDigest,
} from "../../shared/repository.ts";
import {
  AGENT_PROTOCOL_VERSION,
  AGENT_SUBPROTOCOL,
  CONTROL_FRAME_CAP,
  decodeFrame,
  encodeFrame,
  FromAgent,
  type LeaseGrant,
  PREVIEW_FRAME_CAP,
  type ToAgent,
} from "../../shared/wire.ts";

const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

/** A version as the edge would hold it: its record and its pieces' bytes. */
export interface StoredVersion {
  record: VersionRecord;
  pieces: Map<string, Uint8Array>;
}

/**
 * Builds a ready version from a manifest (as an author writes it) and files, cut into pieces
 * of `PIECE_BYTES` as a push cuts them.
 */
export async function makeVersion(
  manifest: unknown,
  files: Record<string, Uint8Array | string>,
): Promise<StoredVersion> {
  const m = VersionManifest.parse(manifest);
  const pieces = new Map<string, Uint8Array>();
  const list: VersionFile[] = [];
  for (const [path, content] of Object.entries(files)) {
    const bytes = typeof content === "string" ? new TextEncoder().encode(content) : content;
    const shas: string[] = [];
    for (let at = 0; at < bytes.length; at += PIECE_BYTES) {
      const piece = bytes.subarray(at, at + PIECE_BYTES);
      const sha = sha256(piece);
      pieces.set(sha, piece);
      shas.push(sha);
    }
    list.push({ path, size: bytes.length, sha256: sha256(bytes), pieces: shas });
  }
  const push = { manifest: m, piece_bytes: PIECE_BYTES, files: list } as const;
  const record: VersionRecord = {
    ...push,
    digest: await versionDigest(push),
    state: "ready",
    bytes: list.reduce((a, f) => a + f.size, 0),
    created_at: new Date(0).toISOString(),
    created_by: "admin",
  };
  return { record, pieces };
}

type Said = ToAgent extends infer M ? (M extends ToAgent ? Omit<M, "v" | "trace"> : never) : never;

export class FakeEdge {
  readonly url: string;
  /** Every frame the agents sent, in order. */
  readonly received: FromAgent[] = [];
  /** Every repository request: `record <model>@<version>` or `piece <sha256>`. */
  readonly requests: string[] = [];
  /** Pieces answered with other bytes than their own (a corrupted store). */
  readonly corrupt = new Set<string>();
  /** Per path prefix, how many more requests to answer with this status first. */
  readonly failNext = new Map<string, { status: number; times: number }>();
  /** Pieces in flight now, and the most at once. */
  inFlight = 0;
  maxInFlight = 0;
  /** Delay before each piece is answered (ms). */
  pieceDelayMs = 0;
  private readonly versions = new Map<string, StoredVersion>();
  private readonly server: Server;
  private readonly wss: WebSocketServer;
  private desired: Said | undefined;
  private readonly sockets = new Set<WebSocket>();
  private readonly waiters: (() => void)[] = [];

  private constructor(server: Server, wss: WebSocketServer, url: string) {
    this.server = server;
    this.wss = wss;
    this.url = url;
  }

  static async start(opts: { heartbeatMs?: number } = {}): Promise<FakeEdge> {
    const server = createServer();
    const wss = new WebSocketServer({ server, path: "/v1/agent/connect", handleProtocols: () => AGENT_SUBPROTOCOL });
    await new Promise<void>((res) => server.listen(0, "127.0.0.1", () => res()));
    const { port } = server.address() as AddressInfo;
    const edge = new FakeEdge(server, wss, `http://127.0.0.1:${port}`);
    server.on("request", (req, res) => void edge.http(req, res));
    wss.on("connection", (ws) => edge.connection(ws, opts.heartbeatMs ?? 60_000));
    return edge;
  }

  /** Makes a version fetchable. */
  add(v: StoredVersion): StoredVersion {
    this.versions.set(`${v.record.manifest.model}@${v.record.manifest.version}`, v);
    return v;
  }

  /** Sends `agent.desired` now to every agent connected, and after each later welcome. */
  desire(
    models: Extract<ToAgent, { type: "agent.desired" }>["models"],
    purged?: Extract<ToAgent, { type: "agent.desired" }>["purged"],
  ): void {
    this.desired = { type: "agent.desired", models, ...(purged ? { purged } : {}) };
    for (const ws of this.sockets) this.say(ws, this.desired);
  }

  /** Sends leases to every agent connected. */
  lease(leases: LeaseGrant[]): void {
    for (const ws of this.sockets) this.say(ws, { type: "job.leases", leases });
  }

  /** Frames of one type the agents sent. */
  of<T extends FromAgent["type"]>(type: T): Extract<FromAgent, { type: T }>[] {
    return this.received.filter((m): m is Extract<FromAgent, { type: T }> => m.type === type);
  }

  /** Resolves when `probe` holds (checked on every frame received), or rejects after `ms`. */
  async until<T>(what: string, probe: () => T | undefined, ms = 10_000): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = probe();
      if (v !== undefined) return v;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((res) => {
        const t = setTimeout(res, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          res();
        });
      });
    }
  }

  async close(): Promise<void> {
    for (const ws of this.wss.clients) ws.terminate();
    this.wss.close();
    this.server.closeAllConnections();
    await new Promise<void>((res) => this.server.close(() => res()));
  }

  private say(ws: WebSocket, msg: Said): void {
    ws.send(encodeFrame({ v: AGENT_PROTOCOL_VERSION, trace: "edge", ...msg } as ToAgent));
  }

  private connection(ws: WebSocket, heartbeatMs: number): void {
    ws.on("message", (data: Buffer) => {
      const f = decodeFrame(new Uint8Array(data), FromAgent);
      if (!f.ok) return;
      this.received.push(f.msg);
      for (const w of this.waiters.splice(0)) w();
      switch (f.msg.type) {
        case "agent.hello":
          this.sockets.add(ws);
          ws.once("close", () => this.sockets.delete(ws));
          this.say(ws, {
            type: "agent.welcome",
            heartbeat_ms: heartbeatMs,
            lease_ttl_ms: 30_000,
            control_frame_cap: CONTROL_FRAME_CAP,
            preview_frame_cap: PREVIEW_FRAME_CAP,
            resumed: f.msg.leases,
            stale: [],
          });
          if (this.desired) this.say(ws, this.desired);
          return;
        case "agent.heartbeat":
          this.say(ws, { type: "agent.heartbeat_ack", stale: [] });
          return;
        default:
          return;
      }
    });
  }

  private failing(path: string): number | undefined {
    for (const [prefix, f] of this.failNext) {
      if (!path.startsWith(prefix) || f.times <= 0) continue;
      f.times -= 1;
      return f.status;
    }
    return undefined;
  }

  private async http(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", this.url);
    const error = (status: number, code: string, message: string): void => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { code, message } }));
    };
    const failStatus = this.failing(url.pathname);
    if (failStatus !== undefined) return error(failStatus, "unavailable", "failing on purpose");
    const record = /^\/v1\/agent\/versions\/([^/]+)\/([^/]+)$/.exec(url.pathname);
    if (req.method === "GET" && record) {
      const key = `${decodeURIComponent(record[1] ?? "")}@${decodeURIComponent(record[2] ?? "")}`;
      this.requests.push(`record ${key}`);
      const v = this.versions.get(key);
      if (!v) return error(404, "version_not_found", `no ready version ${key}`);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(v.record));
      return;
    }
    const piece = /^\/v1\/agent\/pieces\/([0-9a-f]{64})$/.exec(url.pathname);
    if (req.method === "GET" && piece) {
      const sha = piece[1] ?? "";
      this.requests.push(`piece ${sha}`);
      const v = this.versions.get(`${url.searchParams.get("model")}@${url.searchParams.get("version")}`);
      const bytes = v?.pieces.get(sha);
      if (!bytes) return error(404, "not_found", "no such piece in that version");
      this.inFlight++;
      this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
      if (this.pieceDelayMs > 0) await new Promise((r) => setTimeout(r, this.pieceDelayMs));
      this.inFlight--;
      const body = this.corrupt.has(sha) ? bytes.map((b, i) => (i === 0 ? b ^ 0xff : b)) : bytes;
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(body.length) });
      res.end(body);
      return;
    }
    if (req.method === "POST" && url.pathname === "/v1/agent/uploads") {
      const body = JSON.parse(await text(req)) as { job_id: string; epoch: number; name: string };
      const key = `outputs/${body.job_id}/${body.epoch}/${body.name}`;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ upload_id: `up_${key}`, key, part_bytes: 8 * 1024 * 1024 }));
      return;
    }
    if (req.method === "PUT" && url.pathname.startsWith("/v1/agent/uploads/")) {
      await text(req);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ part_number: Number(url.pathname.split("/").at(-1)), etag: "e" }));
      return;
    }
    if (req.method === "POST" && url.pathname.endsWith("/complete")) {
      const body = JSON.parse(await text(req)) as { key: string; size: number; sha256: string };
      const name = body.key.split("/").at(-1) ?? "out";
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          name,
          key: body.key,
          content_type: "application/octet-stream",
          size: body.size,
          sha256: body.sha256,
          receipt: "r".repeat(43),
        }),
      );
      return;
    }
    error(404, "not_found", `${req.method} ${url.pathname}`);
  }
}

async function text(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}
