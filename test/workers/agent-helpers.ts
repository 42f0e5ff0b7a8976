/**
 * A test agent for the workerd suites: a WebSocket to the Worker's own connect route, an inbox
 * of decoded frames, waits with deadlines, and output uploads through the agent routes.
 */
import { exports } from "cloudflare:workers";
import type { AgentFailure } from "../../shared/job.ts";
import {
  AGENT_PROTOCOL_VERSION,
  AGENT_SUBPROTOCOL,
  decodeFrame,
  encodeFrame,
  ToAgent,
  type FromAgent,
  type LeaseGrant,
  type LeaseRef,
  type OutputRecord,
} from "../../shared/wire.ts";
import { ADMIN, call, type Answer } from "./helpers.ts";

/** A `job.results` frame telling that the lease `ref` succeeded with `outputs`; `credits` asks for more. */
export function succeeded(ref: LeaseRef, outputs: OutputRecord[] = [], credits = 0): FromAgent {
  const result = { job_id: ref.job_id, epoch: ref.epoch, status: "succeeded" as const, outputs };
  return { v: AGENT_PROTOCOL_VERSION, type: "job.results", trace: "t", results: [result], credits };
}

/** A `job.results` frame telling that the lease `ref` failed with `code`. */
export function failed(ref: LeaseRef, code: AgentFailure, message = "x", credits = 0): FromAgent {
  const result = { job_id: ref.job_id, epoch: ref.epoch, status: "failed" as const, code, message };
  return { v: AGENT_PROTOCOL_VERSION, type: "job.results", trace: "t", results: [result], credits };
}

let seq = 0;
/** An agent.heartbeat listing `leases`, asking for `credits` more jobs. */
export function heartbeat(leases: LeaseRef[] = [], credits = 0): FromAgent {
  return {
    v: AGENT_PROTOCOL_VERSION,
    type: "agent.heartbeat",
    trace: "t",
    leases,
    gpus: [],
    credits,
    draining: false,
    versions: [],
  };
}

export function agentId(): string {
  seq += 1;
  return `agt_${String(seq).padStart(4, "0")}${Date.now().toString(36).padStart(12, "0").slice(-12)}`;
}

export async function token(models: string[], ttl = 3600): Promise<{ id: string; token: string }> {
  const r = await call<{ id: string; token: string }>("POST", "/v1/admin/agent-tokens", {
    key: ADMIN,
    body: { pool: "test", models, ttl_s: ttl },
  });
  return r.body;
}

export interface Conn {
  ws: WebSocket;
  inbox: ToAgent[];
  closed: Promise<{ code: number; reason: string }>;
  next: (type: ToAgent["type"], ms?: number) => Promise<ToAgent>;
  send: (m: FromAgent) => void;
}

/** One agent process per agent id unless a test says otherwise: reconnects keep their instance. */
const instances = new Map<string, string>();

/** The instance (AGENT_INSTANCE_HEADER) of the process speaking as `id` in these tests. */
export function instanceOf(id: string): string {
  let held = instances.get(id);
  if (held === undefined) {
    held = `inst-${crypto.randomUUID()}`;
    instances.set(id, held);
  }
  return held;
}

/**
 * The edge's answer to an agent's WebSocket upgrade with token `tok` and agent id `id`, from the
 * agent process `instance` (by default the one process these tests run as `id`).
 */
export async function connectRequest(tok: string, id = agentId(), instance = instanceOf(id)): Promise<Response> {
  return await exports.default.fetch(
    new Request("http://edge.test/v1/agent/connect", {
      headers: {
        upgrade: "websocket",
        "sec-websocket-protocol": AGENT_SUBPROTOCOL,
        authorization: `Bearer ${tok}`,
        "x-floodgate-agent": id,
        "x-floodgate-instance": instance,
      },
    }),
  );
}

export async function connect(
  tok: string,
  id = agentId(),
  instance = instanceOf(id),
): Promise<{ status: number; conn?: Conn; id: string }> {
  const answer = await connectRequest(tok, id, instance);
  if (answer.status !== 101 || !answer.webSocket) return { status: answer.status, id };
  const ws = answer.webSocket;
  ws.accept();
  const inbox: ToAgent[] = [];
  const waiters: (() => void)[] = [];
  ws.addEventListener("message", (e) => {
    // The test side of a workerd WebSocket pair receives binary frames as Blobs.
    const data = e.data as ArrayBuffer | Blob;
    void (data instanceof Blob ? data.arrayBuffer() : Promise.resolve(data)).then((buf) => {
      const f = decodeFrame(new Uint8Array(buf), ToAgent);
      if (f.ok) inbox.push(f.msg);
      for (const w of waiters.splice(0)) w();
    });
  });
  const closed = new Promise<{ code: number; reason: string }>((res) =>
    ws.addEventListener("close", (e) => res({ code: e.code, reason: e.reason })),
  );
  const next = async (type: ToAgent["type"], ms = 5000): Promise<ToAgent> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = inbox.findIndex((m) => m.type === type);
      if (i >= 0) return inbox.splice(i, 1)[0] as ToAgent;
      if (Date.now() > deadline)
        throw new Error(`no ${type} within ${ms} ms; got ${inbox.map((m) => m.type).join(",")}`);
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 50);
      });
    }
  };
  return { status: 101, id, conn: { ws, inbox, closed, next, send: (m) => ws.send(encodeFrame(m)) } };
}

export function hello(
  id: string,
  leases: { job_id: string; epoch: number }[] = [],
  versions: { model: string; version: string }[] = [],
): Extract<FromAgent, { type: "agent.hello" }> {
  const serving = versions.map((v) => ({ ...v, state: "serving" as const }));
  return {
    v: AGENT_PROTOCOL_VERSION,
    type: "agent.hello",
    trace: "t",
    agent_id: id,
    name: "test-agent",
    gpus: [],
    versions: serving,
    slots: 2,
    prefetch: 1,
    leases,
  };
}

/** A connected test agent for a model that has said hello and been welcomed. */
export async function welcomed(model: string): Promise<{ conn: Conn; id: string; t: { id: string; token: string } }> {
  const t = await token([model]);
  const { conn, id } = await connect(t.token);
  if (!conn) throw new Error("no connection");
  conn.send(hello(id));
  await conn.next("agent.welcome");
  return { conn, id, t };
}

/** Asks for one job and answers the lease granted. */
export async function leaseOne(conn: Conn): Promise<LeaseGrant> {
  conn.send({ v: AGENT_PROTOCOL_VERSION, type: "work.request", trace: "t", credits: 1 });
  return ((await conn.next("job.leases")) as { leases: LeaseGrant[] }).leases[0] as LeaseGrant;
}

/** `p`, or an error naming `what` when it takes longer than `ms`. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer ?? null);
  }
}

/** The headers of an agent's HTTP calls (uploads). */
export function agentHeaders(a: { token: string; id: string }): Record<string, string> {
  return { authorization: `Bearer ${a.token}`, "x-floodgate-agent": a.id };
}

/** Hex SHA-256 of some bytes. */
export async function sha256Of(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export interface Started {
  upload_id: string;
  key: string;
  part_bytes: number;
}

/** Starts an upload as an agent does; the answer as it came. */
export async function startUpload(
  a: { token: string; id: string },
  lease: { job_id: string; epoch: number },
  output: { name: string; content_type: string; size: number; part_bytes?: number },
): Promise<Answer<Started & { error?: { code: string; message: string } }>> {
  return await call("POST", "/v1/agent/uploads", { body: { ...lease, ...output }, headers: agentHeaders(a) });
}

/** Puts part `n` of a started upload; the answer as it came. */
export async function putPart(
  a: { token: string; id: string },
  started: Started,
  n: number,
  bytes: Uint8Array,
): Promise<{ status: number; etag?: string; code?: string }> {
  const res = await exports.default.fetch(
    new Request(
      `http://edge.test/v1/agent/uploads/${encodeURIComponent(started.upload_id)}/parts/${n}?key=${encodeURIComponent(started.key)}`,
      { method: "PUT", headers: agentHeaders(a), body: bytes },
    ),
  );
  const body = (await res.json()) as { etag?: string; error?: { code: string } };
  return { status: res.status, etag: body.etag, code: body.error?.code };
}

/** Completes a started upload; the answer as it came (the output record on success). */
export async function completeUpload(
  a: { token: string; id: string },
  started: Started,
  parts: { part_number: number; etag: string }[],
  size: number,
  sha256: string,
): Promise<Answer<OutputRecord & { error?: { code: string; message: string } }>> {
  return await call("POST", `/v1/agent/uploads/${encodeURIComponent(started.upload_id)}/complete`, {
    body: { key: started.key, parts, size, sha256 },
    headers: agentHeaders(a),
  });
}

/** Uploads `bytes` as one output of a lease, in one part, as an agent does; the record. */
export async function uploadOutput(
  a: { token: string; id: string },
  lease: { job_id: string; epoch: number },
  name: string,
  contentType: string,
  bytes: Uint8Array,
): Promise<OutputRecord> {
  const started = await startUpload(a, lease, { name, content_type: contentType, size: bytes.length });
  if (started.status !== 201) throw new Error(`upload start: ${started.status} ${JSON.stringify(started.body)}`);
  const part = await putPart(a, started.body, 1, bytes);
  if (part.status !== 200 || !part.etag) throw new Error(`upload part: ${part.status} ${part.code}`);
  const done = await completeUpload(
    a,
    started.body,
    [{ part_number: 1, etag: part.etag }],
    bytes.length,
    await sha256Of(bytes),
  );
  if (done.status !== 200) throw new Error(`upload complete: ${done.status} ${JSON.stringify(done.body)}`);
  return done.body;
}
