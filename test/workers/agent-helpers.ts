/**
 * A test agent for the workerd suites: a WebSocket to the Worker's own connect route, an inbox
 * of decoded frames, and waits with deadlines.
 */
import { exports } from "cloudflare:workers";
import {
  AGENT_PROTOCOL_VERSION,
  decodeFrame,
  encodeFrame,
  ToAgent,
  type FromAgent,
  type LeaseGrant,
} from "../../shared/wire.ts";
import { ADMIN, call } from "./helpers.ts";

let seq = 0;
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
        "sec-websocket-protocol": "floodgate.v1",
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
): FromAgent {
  return {
    v: AGENT_PROTOCOL_VERSION,
    type: "agent.hello",
    trace: "t",
    agent_id: id,
    name: "test-agent",
    gpus: [],
    versions,
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
