/**
 * The agent's piece server (`--peer-port`): serves the pieces of the versions it shares to peers
 * holding a valid swarm token for that very version (./swarm-token.ts), over plain HTTP
 * (node:http): `GET /v1/pieces/{sha256}?model=&version=` with `Authorization: Bearer <token>`.
 *
 * Only verified pieces exist under the cache's `pieces/` (a piece is written under a temporary
 * name and renamed into place once it hashed to its name), so a piece is served as soon as it
 * is verified, by any agent of the host that shares its version. Uploads pass through the
 * agent's upload bucket (`--max-upload-mibps`). Refusals are the edge's JSON error shape:
 * 401 `unauthorized` without a valid token, 404 `not_found` for a piece not held here or not of
 * that version.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { ERROR_CODES, type ErrorCode } from "../../shared/errors.ts";
import { PEER_PIECE_PATH, type SwarmKey } from "../../shared/swarm.ts";
import { type ByteBucket, throttled } from "./bucket.ts";
import type { VersionCache } from "./fetch.ts";
import { verifySwarmToken } from "./swarm-token.ts";

/** A version this server shares: its pieces, and the keys its swarm tokens verify with. */
export interface SharedVersion {
  model: string;
  version: string;
  digest: string;
  pieces: ReadonlySet<string>;
  keys: readonly SwarmKey[];
}

export interface PieceServerStats {
  /** Pieces served, and their bytes. */
  served: number;
  bytes: number;
  /** Requests refused for their token. */
  unauthorized: number;
}

const PIECE_ROUTE = new RegExp(`^${PEER_PIECE_PATH}/([0-9a-f]{64})$`);

export class PieceServer {
  readonly stats: PieceServerStats = { served: 0, bytes: 0, unauthorized: 0 };
  private readonly cache: VersionCache;
  private readonly upload: ByteBucket | undefined;
  private readonly shared = new Map<string, SharedVersion>();
  private server: Server | undefined;

  constructor(cache: VersionCache, upload?: ByteBucket) {
    this.cache = cache;
    this.upload = upload;
  }

  /** Serves `v`'s pieces from now on (again: with its latest keys). */
  share(v: SharedVersion): void {
    this.shared.set(`${v.model}@${v.version}`, v);
  }

  unshare(model: string, version: string): void {
    this.shared.delete(`${model}@${version}`);
  }

  /** Listens on `host:port` (port 0: any free one) and answers the port. */
  async listen(port: number, host: string): Promise<number> {
    const server = createServer((req, res) => void this.handle(req, res));
    // Peers keep connections open between pieces.
    server.keepAliveTimeout = 30_000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve());
    });
    this.server = server;
    return (server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  private refuse(res: ServerResponse, code: ErrorCode, message: string): void {
    res.writeHead(ERROR_CODES[code], { "content-type": "application/json" });
    res.end(JSON.stringify({ error: { code, message } }));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://peer");
    const m = PIECE_ROUTE.exec(url.pathname);
    if (req.method !== "GET" || !m) return this.refuse(res, "not_found", "no such route");
    const sha = m[1]!;
    const v = this.shared.get(`${url.searchParams.get("model")}@${url.searchParams.get("version")}`);
    const auth = /^Bearer (\S+)$/.exec(req.headers.authorization ?? "");
    if (!v || !auth || !(await verifySwarmToken(auth[1]!, v.keys, v))) {
      this.stats.unauthorized += 1;
      return this.refuse(res, "unauthorized", "a valid swarm token for this version is required");
    }
    if (!v.pieces.has(sha)) return this.refuse(res, "not_found", `${sha} is not a piece of ${v.model}@${v.version}`);
    const path = this.cache.piece(sha);
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch {
      return this.refuse(res, "not_found", `piece ${sha} is not held here`);
    }
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(size) });
    try {
      await pipeline(Readable.from(throttled(this.upload, createReadStream(path))), res);
      this.stats.served += 1;
      this.stats.bytes += size;
    } catch {
      // The peer went away (or cancelled a duplicate in the endgame): nothing to do.
      res.destroy();
    }
  }
}
