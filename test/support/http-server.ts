/**
 * Test-only (Node): a real HTTP server on 127.0.0.1 for the SDK's unit tests, with a free port,
 * every request recorded, and a `close` that also ends open streams. Not exported by the SDK.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface Recorded {
  method: string;
  path: string;
  headers: IncomingMessage["headers"];
  body: string;
}

export interface TestServer {
  url: string;
  requests: Recorded[];
  close(): Promise<void>;
}

export type Handler = (req: Recorded, res: ServerResponse, raw: IncomingMessage) => unknown;

/** Starts a server answering with `handler`; stop it with `close()`. */
export async function startServer(handler: Handler): Promise<TestServer> {
  const requests: Recorded[] = [];
  const server = createServer((raw, res) => {
    const chunks: Buffer[] = [];
    raw.on("data", (c: Buffer) => chunks.push(c));
    raw.on("end", () => {
      const rec: Recorded = {
        method: raw.method ?? "GET",
        path: raw.url ?? "/",
        headers: raw.headers,
        body: Buffer.concat(chunks).toString("utf8"),
      };
      requests.push(rec);
      Promise.resolve(handler(rec, res, raw)).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
        res.end(String(err));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Answers JSON with a status (and headers). */
export function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "application/json", "x-request-id": "req-test", ...headers });
  res.end(JSON.stringify(body));
}

/** One SSE frame. */
export function sse(id: string, event: string, data: unknown): string {
  return `id: ${id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** A job view with defaults, for answers of GET /v1/jobs/{id}. */
export function jobView(id: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id,
    model: "demo",
    tier: "plus",
    status: "queued",
    phase: "waiting",
    created_at: "2025-01-01T00:00:00.000Z",
    metadata: null,
    deadline: null,
    version: null,
    attempts: [],
    queue: { position: 0, eta_s: null, reason: "capacity" },
    progress: null,
    outputs: null,
    error: null,
    timings: {
      created_at: "2025-01-01T00:00:00.000Z",
      started_at: null,
      finished_at: null,
      queued_s: null,
      running_s: null,
    },
    ...over,
  };
}
