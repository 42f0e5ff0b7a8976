/**
 * A noisy neighbour, as its own process so that its load does not share the measuring client's
 * event loop: `node test/chaos/noisy.ts '<json NoisyConfig>'`. It submits a few jobs to a model
 * no agent serves and mints a stream token for each (as the streaming account, which may be
 * another than the flooding one: opening a stream counts against its account's rate limit), then
 * prints `ready`. Told `on` (a line on
 * stdin) it opens `streams` Server-Sent Event streams on those jobs and, once every one has
 * answered, submits to `model` at `rate` per second (it prints `on`); told `off` it stops and
 * closes them (it prints `off` and, as JSON, the answers by status since `on`: a {@link BlockTally}). Told `end` it prints one JSON line: the answers by status and error code,
 * the fewest streams it held open at once while on, and the jobs its 202s made.
 */
import { createInterface } from "node:readline";
import { Agent, fetch } from "undici";

export interface NoisyConfig {
  url: string;
  /** The account's key; absent, the flood is of `GET /healthz` (the cheapest answer the edge gives) and there are no streams. */
  key?: string;
  /**
   * The key of the account that holds the streams (defaults to `key`). Opening a stream counts
   * against its account's rate limit, so an account flooding far past its limit cannot also
   * open hundreds of streams: the neighbour holds them with a second account.
   */
  stream_key?: string;
  /** The model it floods. */
  model: string;
  input: Record<string, unknown>;
  /** A model no agent serves: its jobs stay queued, so their streams stay open. */
  idle_model: string;
  /** Jobs of the idle model the streams are spread over. */
  stream_jobs: number;
  streams: number;
  /** Submits per second. */
  rate: number;
}

export interface NoisyReport {
  sent: number;
  by_status: Record<string, number>;
  by_code: Record<string, number>;
  accepted: string[];
  /** The fewest streams open at once while flooding. */
  streams_open: number;
  setup_requests: number;
}

/** What one flood (from `on` to `off`) sent, and its answers by HTTP status (`0`: no answer). */
export interface BlockTally {
  sent: number;
  by_status: Record<string, number>;
}

const config = JSON.parse(process.argv[2] ?? "{}") as NoisyConfig;
const dispatcher = new Agent({ keepAliveTimeout: 60_000, headersTimeout: 30_000, bodyTimeout: 0 });
const auth = { authorization: `Bearer ${config.key}` };
const streamAuth = { authorization: `Bearer ${config.stream_key ?? config.key}` };
const report: NoisyReport = { sent: 0, by_status: {}, by_code: {}, accepted: [], streams_open: 0, setup_requests: 0 };
let block: BlockTally = { sent: 0, by_status: {} };

async function call(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  report.setup_requests++;
  const r = await fetch(config.url + path, {
    method,
    dispatcher,
    headers: { ...streamAuth, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, json: await r.json() };
}

const tokens: { job: string; token: string }[] = [];
for (let i = 0; i < config.stream_jobs; i++) {
  const job = await call("POST", `/v1/models/${config.idle_model}/jobs`, { input: {} });
  if (job.status !== 202) throw new Error(`the noisy account's setup submit answered ${job.status}`);
  const id = (job.json as { id: string }).id;
  const tok = await call("POST", `/v1/jobs/${id}/stream-token`);
  if (tok.status !== 201) throw new Error(`minting a stream token answered ${tok.status}`);
  tokens.push({ job: id, token: (tok.json as { token: string }).token });
}

let aborts: AbortController[] = [];
let open = 0;
/** Opens the streams; resolves once every one has answered. */
async function openStreams(): Promise<void> {
  const mine = Array.from({ length: config.streams }, () => new AbortController());
  aborts = mine;
  const opened = await Promise.all(
    mine.map(async (abort, i) => {
      const { job, token } = tokens[i % tokens.length]!;
      const r = await fetch(`${config.url}/v1/jobs/${job}/events?token=${encodeURIComponent(token)}`, {
        dispatcher,
        headers: { accept: "text/event-stream" },
        signal: abort.signal,
      });
      if (r.status !== 200 || !r.body) return false;
      const reader = r.body.getReader();
      await reader.read();
      open++;
      void (async () => {
        try {
          while (!(await reader.read()).done);
        } catch {
          // closed by us
        }
        open--;
      })();
      return true;
    }),
  );
  if (opened.some((ok) => !ok)) throw new Error("a stream did not open");
}

let flooding: NodeJS.Timeout | undefined;
let blocks = 0;
const inflight = new Set<Promise<void>>();
const send = (): void => {
  report.sent++;
  const tally = block;
  tally.sent++;
  const p = (async () => {
    try {
      const r =
        config.key === undefined
          ? await fetch(`${config.url}/healthz`, { dispatcher })
          : await fetch(`${config.url}/v1/models/${config.model}/jobs`, {
              method: "POST",
              dispatcher,
              headers: { ...auth, "content-type": "application/json" },
              body: JSON.stringify({ input: config.input }),
            });
      const body = (await r.json()) as { id?: string; error?: { code?: string } };
      report.by_status[r.status] = (report.by_status[r.status] ?? 0) + 1;
      tally.by_status[r.status] = (tally.by_status[r.status] ?? 0) + 1;
      const code = body.error?.code ?? "ok";
      report.by_code[code] = (report.by_code[code] ?? 0) + 1;
      if (r.status === 202 && body.id) report.accepted.push(body.id);
    } catch {
      report.by_status["0"] = (report.by_status["0"] ?? 0) + 1;
      tally.by_status["0"] = (tally.by_status["0"] ?? 0) + 1;
    }
  })();
  inflight.add(p);
  void p.finally(() => inflight.delete(p));
};

/** `on`: streams open, then the flood; answers `on` with the streams open. */
async function on(): Promise<void> {
  await openStreams();
  block = { sent: 0, by_status: {} };
  const started = performance.now();
  const base = report.sent;
  flooding = setInterval(() => {
    const due = base + Math.floor(((performance.now() - started) / 1000) * config.rate);
    while (report.sent < due) send();
  }, 5);
  process.stdout.write(`on ${open}\n`);
}

/** `off`: the flood stops and the streams close; answers `off`. */
async function off(): Promise<void> {
  if (flooding === undefined) return;
  clearInterval(flooding);
  flooding = undefined;
  await Promise.all(inflight);
  // Still open after the whole flood: every one was held all along.
  report.streams_open = blocks++ === 0 ? open : Math.min(report.streams_open, open);
  for (const a of aborts) a.abort();
  for (;;) {
    if (open === 0) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  process.stdout.write(`off ${JSON.stringify(block)}\n`);
}

async function end(): Promise<void> {
  await off();
  process.stdout.write(JSON.stringify(report) + "\n");
  await dispatcher.close().catch(() => undefined);
  process.exit(0);
}

let chain = Promise.resolve();
const commands: Record<string, () => Promise<void>> = { on, off, end };
createInterface({ input: process.stdin }).on("line", (line) => {
  const command = commands[line.trim()];
  if (command) chain = chain.then(command);
});
process.stdout.write("ready\n");
