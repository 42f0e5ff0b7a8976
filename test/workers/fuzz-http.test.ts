/**
 * HTTP fuzzing: fast-check requests against every public, admin and agent route — wrong types,
 * missing fields, huge strings, deep nesting, bad JSON and bad UTF-8, wrong content types,
 * oversized bodies, hostile ids and queries, unicode edge cases (lone surrogates included),
 * `__proto__` keys, forged credentials. Every generated request is invalid by construction (a
 * body that its route's own zod schema would accept is filtered out), so every answer must be
 * a 4xx in the `{"error":{"code","message"}}` shape, within a deadline; a job created first
 * reads back identical at the end.
 *
 * `FUZZ_RUNS` runs per property (300 by default; `npm run fuzz` passes more through
 * test/fuzz.config.ts). The last test logs how many cases ran.
 */
import { Validator, type Schema } from "@cfworker/json-schema";
import { env, exports } from "cloudflare:workers";
import * as fc from "fast-check";
import { z } from "zod";
import { beforeAll, describe, expect, it } from "vitest";
import {
  AccountCreateBody,
  AgentTokenBody,
  BatchBody,
  MAX_BODY_BYTES,
  MAX_BODY_DEPTH,
  MAX_INPUT_DEPTH,
  ModelConfigBody,
  ModelName,
  SubmitBody,
} from "../../shared/api.ts";
import { DEMO_MODEL_CONFIG } from "../../shared/models.ts";
import { DEFAULT_TIERS, TierList } from "../../shared/slo.ts";
import { PIECE_BYTES, VersionPush } from "../../shared/repository.ts";
import { pushProblem } from "../../mesh/versions/logic.ts";
import { agentId, token } from "./agent-helpers.ts";
import { ADMIN, call, makeAccount, makeModel, submit, unique } from "./helpers.ts";

/** Runs per property; `npm run fuzz` raises it (test/fuzz.config.ts passes it into workerd). */
const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
/** An answer slower than this is a hang (ms). */
const DEADLINE_MS = 10_000;
const TEST_TIMEOUT = 60_000 + RUNS * 60;
const ORIGIN = "http://edge.test";

const cases: Record<string, number> = {};
let fiveHundreds = 0;

interface Sent {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array | ReadableStream<Uint8Array>;
}

interface Got {
  status: number;
  text: string;
  headers: Headers;
}

async function send(r: Sent): Promise<Got> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no answer within ${DEADLINE_MS} ms: ${r.method} ${r.path}`)),
      DEADLINE_MS,
    );
  });
  try {
    const res = await Promise.race([
      exports.default.fetch(new Request(`${ORIGIN}${r.path}`, { method: r.method, headers: r.headers, body: r.body })),
      hang,
    ]);
    const text = res.webSocket ? "" : await Promise.race([res.text(), hang]);
    if (res.webSocket) {
      res.webSocket.accept();
      res.webSocket.close(1000, "fuzz");
    }
    return { status: res.status, text, headers: res.headers };
  } finally {
    clearTimeout(timer ?? null);
  }
}

/**
 * The one promise every generated request gets: a 4xx in the error shape (with one of `codes`
 * when given). Answers what is wrong with the answer, or undefined.
 */
function problem(got: Got, r: Sent, codes?: readonly string[]): string | undefined {
  const label = `${r.method} ${r.path.slice(0, 200)} → ${got.status} ${got.text.slice(0, 200)}`;
  if (got.status >= 500) fiveHundreds++;
  if (got.status < 400 || got.status >= 500) return `not a 4xx: ${label}`;
  let body: unknown;
  try {
    body = JSON.parse(got.text);
  } catch {
    return `not JSON: ${label}`;
  }
  const shaped = ErrorShape.safeParse(body);
  if (!shaped.success) return `not the error shape: ${label}`;
  if (codes && !codes.includes(shaped.data.error.code)) return `not ${codes.join("|")}: ${label}`;
  return undefined;
}

/** `{"error":{"code","message"}}` and nothing else. */
const ErrorShape = z.strictObject({ error: z.strictObject({ code: z.string().min(1), message: z.string().min(1) }) });

function count(property: string): void {
  cases[property] = (cases[property] ?? 0) + 1;
}

// ---- the world the requests are aimed at ----

interface World {
  model: string;
  scratchModel: string;
  key: string;
  job: string;
  before: unknown;
  agent: Record<string, string>;
}

let w: World;

/** A job view without the fields that move with the clock. */
function stable(view: unknown): unknown {
  const v = structuredClone(view) as { timings?: Record<string, unknown>; queue?: Record<string, unknown> | null };
  if (v.timings) delete v.timings.queued_s;
  if (v.queue) {
    delete v.queue.eta_s;
    delete v.queue.reason;
  }
  return v;
}

beforeAll(async () => {
  const model = await makeModel();
  const scratchModel = await makeModel();
  const acct = await makeAccount("api", 600_000);
  const { body: job } = await submit(model, acct.key);
  const before = (await call("GET", `/v1/jobs/${job.id}`, { key: acct.key })).body;
  const t = await token([model]);
  w = {
    model,
    scratchModel,
    key: acct.key,
    job: job.id,
    before,
    agent: { authorization: `Bearer ${t.token}`, "x-floodgate-agent": agentId() },
  };
});

// ---- generators ----

const LONE = ["\ud800", "\udfff", "a\ud83d", "\ude00b", "\ud800\ud800"];
const ODD_STRINGS = [
  ...LONE,
  "\u0000",
  "\u202e\u0041",
  "\u200b",
  "\ufeff",
  "\uffff",
  "😀".repeat(50),
  "e\u0301",
  "%00",
  "../../etc/passwd",
  "' OR 1=1 --",
  "<script>",
  "__proto__",
  "constructor",
];
const ODD_KEYS = ["__proto__", "constructor", "prototype", "", "toString", "hasOwnProperty", ...LONE];

/** Hostile JSON values: wrong types, edge numbers, odd and huge strings, empty containers. */
const hostile: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(...ODD_STRINGS),
  fc.string({ unit: "binary", maxLength: 64 }),
  fc.constantFrom(-0, 1e308, -1e308, 2 ** 53 + 2, 0.5, -1, 0, 4294967296, 1e-300),
  fc.constantFrom(true, false, null, [], {}, [[]], { a: {} }, "", "0", "1", "true", "null"),
  fc.integer({ min: 10_000, max: 200_000 }).map((n) => "x".repeat(n)),
  fc.integer({ min: 1, max: 2000 }).map((n) => "\ud83d\ude00".repeat(n)),
);

/** A value nested `depth` deep, past the edge's nesting limits; the deepest cases are tested below. */
const nested = fc.tuple(fc.integer({ min: 2, max: 200 }), fc.boolean(), hostile).map(([depth, arrays, leaf]) => {
  let v: unknown = leaf;
  for (let i = 0; i < depth; i++) v = arrays ? [v] : { a: v };
  return v;
});

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Every path to a container or field inside a JSON value. */
function paths(v: unknown, at: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [at];
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...paths(x, [...at, i])));
  else if (v !== null && typeof v === "object")
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) out.push(...paths(x, [...at, k]));
  return out;
}

function setOwn(o: object, k: string | number, v: unknown): void {
  // defineProperty, so a "__proto__" key becomes an own field as JSON.parse would make it.
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

type Mutation = "delete" | "replace" | "add" | "wrap" | "nest";

/** Applies one mutation at one path of a copy of `example`. */
function mutate(example: Json, pick: number, kind: Mutation, value: unknown, key: string): unknown {
  const root: unknown = JSON.parse(JSON.stringify(example));
  const all = paths(root);
  const path = all[pick % all.length] ?? [];
  if (path.length === 0) {
    if (kind === "add" && root !== null && typeof root === "object") {
      setOwn(root, key, value);
      return root;
    }
    return kind === "wrap" ? [root] : value;
  }
  let parent = root as Record<string | number, unknown>;
  for (const p of path.slice(0, -1)) parent = parent[p] as Record<string | number, unknown>;
  const last = path.at(-1) as string | number;
  const current = parent[last];
  switch (kind) {
    case "delete":
      if (Array.isArray(parent)) parent.splice(Number(last), 1);
      else delete parent[last];
      break;
    case "replace":
    case "nest":
      setOwn(parent, last, value);
      break;
    case "add":
      if (current !== null && typeof current === "object" && !Array.isArray(current)) setOwn(current, key, value);
      else setOwn(parent, last, [current, value]);
      break;
    case "wrap":
      setOwn(parent, last, Array.isArray(current) ? { 0: current } : [current]);
      break;
  }
  return root;
}

interface BodyRoute {
  name: string;
  method: string;
  path: () => string;
  auth: () => Record<string, string>;
  example: () => Json;
  /** Whether the edge would accept this body, or it is otherwise left out (then it is skipped). */
  legit?: (body: unknown) => boolean;
}

const demoValidator = new Validator(DEMO_MODEL_CONFIG.input_schema as Schema, "2020-12", false);
const TiersBody = z.strictObject({ tiers: TierList });
const admin = (): Record<string, string> => ({ authorization: `Bearer ${ADMIN}` });
const user = (): Record<string, string> => ({ authorization: `Bearer ${w.key}` });

/** The model the version routes are fuzzed on. */
const VERSIONS_MODEL = "fuzz-versions";

const BODY_ROUTES: BodyRoute[] = [
  {
    name: "submit",
    method: "POST",
    path: () => `/v1/models/${w.model}/jobs`,
    auth: user,
    example: () => ({ input: { prompt: "a red fox", steps: 10 }, metadata: { k: "v" } }),
    legit: (b) => {
      const p = SubmitBody.safeParse(b);
      if (!p.success) return false;
      try {
        return demoValidator.validate(p.data.input).valid;
      } catch {
        // The validator throws on an input key with a lone surrogate; the edge refuses such keys.
        return false;
      }
    },
  },
  {
    name: "batch",
    method: "POST",
    path: () => `/v1/models/${w.model}/jobs/batch`,
    auth: user,
    example: () => ({
      jobs: [
        { input: { prompt: "x" }, idempotency_key: "k1" },
        { input: { prompt: "y" }, idempotency_key: "k2" },
      ],
    }),
    legit: (b) => BatchBody.safeParse(b).success,
  },
  {
    name: "admin model",
    method: "PUT",
    path: () => "/v1/admin/models/fuzz-model",
    auth: admin,
    example: () => ({
      input_schema: { type: "object", properties: { prompt: { type: "string", maxLength: 10 } }, required: ["prompt"] },
      max_attempts: 3,
      shards: 1,
    }),
    legit: (b) => ModelConfigBody.safeParse(b).success,
  },
  {
    name: "admin account",
    method: "POST",
    path: () => "/v1/admin/accounts",
    auth: admin,
    example: () => ({ name: "fuzz", tier: "plus", rate_limit: 60 }),
    legit: (b) => AccountCreateBody.safeParse(b).success,
  },
  {
    name: "admin tiers",
    method: "PUT",
    path: () => "/v1/admin/tiers",
    auth: admin,
    example: () => ({ tiers: DEFAULT_TIERS.map((t) => ({ ...t })) }),
    legit: (b) => TiersBody.safeParse(b).success,
  },
  {
    name: "admin agent token",
    method: "POST",
    path: () => "/v1/admin/agent-tokens",
    auth: admin,
    example: () => ({ pool: "p", models: ["demo"], ttl_s: 3600 }),
    legit: (b) => AgentTokenBody.safeParse(b).success,
  },
  {
    name: "admin version push",
    method: "POST",
    path: () => `/v1/admin/models/${VERSIONS_MODEL}/versions`,
    auth: admin,
    example: () => ({
      manifest: { format: 1, model: VERSIONS_MODEL, version: "1", runner: "demo", input_schema: { type: "object" } },
      piece_bytes: PIECE_BYTES,
      files: [{ path: "w/a.bin", size: 3, sha256: "a".repeat(64), pieces: ["b".repeat(64)] }],
    }),
    legit: (b) => {
      const push = VersionPush.safeParse(b);
      return push.success && pushProblem(VERSIONS_MODEL, push.data) === undefined;
    },
  },
  {
    name: "agent upload start",
    method: "POST",
    path: () => "/v1/agent/uploads",
    auth: () => w.agent,
    example: () => ({ job_id: w.job, epoch: 1, name: "a.png", content_type: "image/png", size: 1 }),
  },
  {
    name: "agent upload complete",
    method: "POST",
    path: () => "/v1/agent/uploads/u1/complete",
    auth: () => w.agent,
    example: () => ({
      key: `outputs/${w.job}/1/a.png`,
      parts: [{ part_number: 1, etag: "e" }],
      size: 1,
      sha256: "0".repeat(64),
    }),
  },
];

const utf8 = new TextEncoder();

/** Bytes that are not JSON, or not UTF-8, or JSON of the wrong kind. */
function badJson(example: string): fc.Arbitrary<string | Uint8Array> {
  return fc.oneof(
    fc.string({ unit: "binary", maxLength: 200 }),
    fc.nat({ max: Math.max(0, example.length - 1) }).map((n) => example.slice(0, n)),
    fc.constantFrom(
      "",
      "{",
      "}",
      "[",
      "NaN",
      "{'input':{}}",
      '{"input":{},}',
      '{"input":{}}{"input":{}}',
      "[1,2",
      '"str"',
      "1e999999",
      "\ufeff{}",
      '{"input":{"prompt":"\\ud800"}, "input": 5}',
      '{"__proto__":{"input":{}}}',
      '{"constructor":{"prototype":{"polluted":true}}}',
    ),
    fc
      .tuple(fc.nat({ max: example.length }), fc.constantFrom([0xff], [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xf8, 0x88]))
      .map(([at, bad]) => {
        const bytes = utf8.encode(example);
        return new Uint8Array([...bytes.subarray(0, at), ...bad, ...bytes.subarray(at)]);
      }),
  );
}

const JSON_TYPES = ["application/json", "application/json; charset=utf-8", "APPLICATION/JSON", "application/x+json"];

function badBody(route: BodyRoute): fc.Arbitrary<{ body: string | Uint8Array; parsed: unknown }> {
  const example = route.example();
  const text = JSON.stringify(example);
  const mutated = fc
    .tuple(
      fc.nat(),
      fc.constantFrom<Mutation>("delete", "replace", "add", "wrap", "nest"),
      hostile,
      nested,
      fc.oneof(fc.constantFrom(...ODD_KEYS), fc.string({ maxLength: 12 })),
    )
    .chain(([pick, kind, value, deep, key]) => {
      const once = mutate(example, pick, kind, kind === "nest" ? deep : value, key);
      // Sometimes a second mutation on top of the first.
      return fc.oneof(
        fc.constant(once),
        fc
          .tuple(fc.nat(), fc.constantFrom<Mutation>("delete", "replace", "add"), hostile)
          .map(([p, k, v]) => mutate(once as Json, p, k, v, key)),
      );
    })
    .map((v) => ({ body: JSON.stringify(v) ?? "", parsed: v as unknown }));
  const wrongKind = fc.jsonValue({ maxDepth: 4 }).map((v) => ({ body: JSON.stringify(v), parsed: v as unknown }));
  const garbage = badJson(text).map((body) => ({ body, parsed: undefined as unknown }));
  return fc.oneof({ weight: 3, arbitrary: mutated }, wrongKind, garbage).filter(({ body, parsed }) => {
    if (!route.legit) return true;
    // Judge by what the edge will parse, not by the value before serialising.
    let seen: unknown = parsed;
    try {
      seen = JSON.parse(typeof body === "string" ? body : new TextDecoder().decode(body));
    } catch {
      return true;
    }
    return !route.legit(seen);
  });
}

/** A path segment: percent-encoded unicode (lone surrogates as their raw UTF-8-style bytes), odd ids. */
function encodeSegment(s: string, rawPercent: boolean): string {
  let out = "";
  for (const ch of s) {
    const cp = ch.codePointAt(0) ?? 0;
    if (/^[A-Za-z0-9._~-]$/.test(ch)) out += ch;
    else if (cp >= 0xd800 && cp <= 0xdfff)
      out += rawPercent
        ? `%${(0xe0 | (cp >> 12)).toString(16)}%${(0x80 | ((cp >> 6) & 0x3f)).toString(16)}%${(0x80 | (cp & 0x3f)).toString(16)}`
        : "";
    else out += [...utf8.encode(ch)].map((b) => `%${b.toString(16).padStart(2, "0").toUpperCase()}`).join("");
  }
  return out;
}

const CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz";
const jobShaped = fc
  .array(fc.constantFrom(...CROCKFORD), { minLength: 30, maxLength: 30 })
  .map((cs) => `job_${cs.join("")}`);

/** Segments for ids. `rawPercent`: may carry percent sequences that do not decode. */
function segment(rawPercent: boolean): fc.Arbitrary<string> {
  const options: fc.Arbitrary<string>[] = [
    fc.string({ unit: "binary", minLength: 1, maxLength: 40 }).map((s) => encodeSegment(s, rawPercent) || "x"),
    fc.string({ minLength: 1, maxLength: 40 }).map((s) => encodeSegment(s, false) || "x"),
    fc.constantFrom("..", ".", "%2e%2e", "%2F", "%00", "__proto__", "constructor", "null", "undefined", "0", "-1"),
    fc.integer({ min: 200, max: 8000 }).map((n) => "j".repeat(n)),
    jobShaped,
    jobShaped.map((id) => id.toUpperCase()),
  ];
  if (rawPercent) options.push(fc.constantFrom("%", "%Z", "%E0%A4%A", "%C0%AF", "%ED%A0%80", "%FF", "%%", "%u0041"));
  return fc.oneof(...options);
}

interface IdRoute {
  name: string;
  method: string;
  path: (seg: string) => string;
  auth: () => Record<string, string>;
  body?: () => Json;
  rawPercent: boolean;
}

const ID_ROUTES: IdRoute[] = [
  { name: "read job", method: "GET", path: (s) => `/v1/jobs/${s}`, auth: user, rawPercent: true },
  { name: "delete job", method: "DELETE", path: (s) => `/v1/jobs/${s}`, auth: user, rawPercent: true },
  { name: "cancel job", method: "POST", path: (s) => `/v1/jobs/${s}/cancel`, auth: user, rawPercent: true },
  { name: "job events", method: "GET", path: (s) => `/v1/jobs/${s}/events`, auth: user, rawPercent: true },
  { name: "stream token", method: "POST", path: (s) => `/v1/jobs/${s}/stream-token`, auth: user, rawPercent: true },
  { name: "preview", method: "GET", path: (s) => `/v1/jobs/${s}/preview?exp=1&sig=x`, auth: user, rawPercent: true },
  { name: "file", method: "GET", path: (s) => `/v1/files/${s}?exp=9999999999&sig=x`, auth: user, rawPercent: true },
  {
    name: "submit to a model",
    method: "POST",
    path: (s) => `/v1/models/${s}/jobs`,
    auth: user,
    body: () => ({ input: { prompt: "x" } }),
    rawPercent: true,
  },
  {
    name: "admin model",
    method: "PUT",
    path: (s) => `/v1/admin/models/${s}`,
    auth: admin,
    body: () => ({ input_schema: { type: "object" } }),
    rawPercent: true,
  },
  { name: "admin add key", method: "POST", path: (s) => `/v1/admin/accounts/${s}/keys`, auth: admin, rawPercent: true },
  {
    name: "admin revoke key",
    method: "DELETE",
    path: (s) => `/v1/admin/accounts/${s}/keys/${s}`,
    auth: admin,
    rawPercent: true,
  },
  {
    name: "admin revoke token",
    method: "DELETE",
    path: (s) => `/v1/admin/agent-tokens/${s}`,
    auth: admin,
    rawPercent: true,
  },
  {
    name: "admin versions",
    method: "GET",
    path: (s) => `/v1/admin/models/${s}/versions`,
    auth: admin,
    rawPercent: true,
  },
  {
    name: "admin version",
    method: "GET",
    path: (s) => `/v1/admin/models/${s}/versions/${s}`,
    auth: admin,
    rawPercent: true,
  },
  {
    name: "admin version commit",
    method: "POST",
    path: (s) => `/v1/admin/models/${s}/versions/${s}/commit`,
    auth: admin,
    rawPercent: true,
  },
  { name: "admin piece", method: "PUT", path: (s) => `/v1/admin/pieces/${s}`, auth: admin, rawPercent: true },
  {
    name: "agent version",
    method: "GET",
    path: (s) => `/v1/agent/versions/${s}/${s}`,
    auth: () => w.agent,
    rawPercent: true,
  },
  {
    name: "agent piece",
    method: "GET",
    path: (s) => `/v1/agent/pieces/${s}?model=${s}&version=${s}`,
    auth: () => w.agent,
    rawPercent: true,
  },
  {
    name: "agent part",
    method: "PUT",
    path: (s) => `/v1/agent/uploads/${s}/parts/${s}?key=${s}`,
    auth: () => w.agent,
    rawPercent: true,
  },
  {
    name: "agent complete",
    method: "POST",
    path: (s) => `/v1/agent/uploads/${s}/complete`,
    auth: () => w.agent,
    body: () => ({ key: "k", parts: [{ part_number: 1, etag: "e" }], size: 1, sha256: "0".repeat(64) }),
    rawPercent: true,
  },
];

/** Every route of the API, with a sample path, for the credentials property. */
const ALL_ROUTES: { method: string; path: () => string; body?: () => Json }[] = [
  { method: "POST", path: () => `/v1/models/${w.model}/jobs`, body: () => ({ input: { prompt: "x" } }) },
  {
    method: "POST",
    path: () => `/v1/models/${w.model}/jobs/batch`,
    body: () => ({ jobs: [{ input: { prompt: "x" } }] }),
  },
  { method: "GET", path: () => `/v1/jobs/${w.job}` },
  { method: "GET", path: () => "/v1/jobs" },
  { method: "POST", path: () => `/v1/jobs/${w.job}/cancel` },
  { method: "DELETE", path: () => `/v1/jobs/${w.job}` },
  { method: "GET", path: () => `/v1/jobs/${w.job}/events` },
  { method: "POST", path: () => `/v1/jobs/${w.job}/stream-token` },
  { method: "GET", path: () => `/v1/jobs/${w.job}/preview` },
  { method: "GET", path: () => `/v1/files/outputs/${w.job}/1/a.png` },
  { method: "PUT", path: () => `/v1/admin/models/${w.model}`, body: () => ({ input_schema: { type: "object" } }) },
  { method: "GET", path: () => "/v1/admin/models" },
  { method: "POST", path: () => "/v1/admin/accounts", body: () => ({ name: "x", tier: "plus" }) },
  { method: "GET", path: () => "/v1/admin/accounts" },
  { method: "POST", path: () => `/v1/admin/accounts/acc_0123456789abcdef/keys` },
  { method: "DELETE", path: () => `/v1/admin/accounts/acc_0123456789abcdef/keys/key_0123456789abcdef` },
  { method: "GET", path: () => "/v1/admin/tiers" },
  { method: "PUT", path: () => "/v1/admin/tiers", body: () => ({ tiers: DEFAULT_TIERS.map((t) => ({ ...t })) }) },
  { method: "GET", path: () => "/v1/admin/queues" },
  { method: "POST", path: () => "/v1/admin/agent-tokens", body: () => ({ pool: "p", models: ["demo"], ttl_s: 60 }) },
  { method: "GET", path: () => "/v1/admin/agents" },
  { method: "DELETE", path: () => "/v1/admin/agent-tokens/tok_0123456789abcdef" },
  { method: "GET", path: () => "/v1/admin/versions" },
  { method: "GET", path: () => `/v1/admin/models/${VERSIONS_MODEL}/versions` },
  { method: "GET", path: () => `/v1/admin/models/${VERSIONS_MODEL}/versions/1` },
  { method: "POST", path: () => `/v1/admin/models/${VERSIONS_MODEL}/versions/1/commit` },
  {
    method: "POST",
    path: () => `/v1/admin/models/${VERSIONS_MODEL}/versions`,
    body: () => ({ manifest: {}, piece_bytes: PIECE_BYTES, files: [] }),
  },
  { method: "PUT", path: () => `/v1/admin/pieces/${"a".repeat(64)}` },
  { method: "GET", path: () => `/v1/agent/versions/${VERSIONS_MODEL}/1` },
  { method: "GET", path: () => `/v1/agent/pieces/${"a".repeat(64)}?model=${VERSIONS_MODEL}&version=1` },
  { method: "GET", path: () => "/v1/agent/connect" },
  {
    method: "POST",
    path: () => "/v1/agent/uploads",
    body: () => ({ job_id: w.job, epoch: 1, name: "a.png", content_type: "image/png", size: 1 }),
  },
  { method: "PUT", path: () => `/v1/agent/uploads/u1/parts/1?key=outputs/${w.job}/1/a.png` },
  { method: "POST", path: () => "/v1/agent/uploads/u1/complete", body: () => ({ key: "k", parts: [], size: 0 }) },
];

/** `real` with one character changed. */
function nearMiss(real: string): fc.Arbitrary<string> {
  return fc
    .tuple(fc.nat({ max: real.length - 1 }), fc.constantFrom(..."abcxyzABC019_-."))
    .map(([i, c]) => real.slice(0, i) + c + real.slice(i + 1))
    .filter((k) => k !== real);
}

/** Credentials that are wrong: none, garbage, near misses of real ones, other schemes. */
function badAuth(): fc.Arbitrary<Record<string, string>> {
  const visible = fc.string({
    unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)),
    maxLength: 300,
  });
  const value = fc.oneof(
    visible.map((s) => `Bearer ${s}`),
    visible,
    fc.constantFrom("Bearer", "Bearer ", "bearer", "Basic YTpi", "Bearer a b", `Bearer ${"A".repeat(9000)}`),
    nearMiss(ADMIN).map((k) => `Bearer ${k}`),
    fc.constant(0).map(() => `Bearer ${w.key.slice(0, -1)}${w.key.endsWith("A") ? "B" : "A"}`),
    fc
      .tuple(
        fc.stringMatching(/^[0-9a-z]{16}$/),
        fc.stringMatching(/^[0-9a-z]{16}$/),
        fc.stringMatching(/^[A-Za-z0-9_-]{32}$/),
      )
      .map(([a, k, s]) => `Bearer fgk_${a}.${k}.${s}`),
    fc
      .tuple(fc.base64String(), fc.base64String(), fc.base64String())
      .map((p) => `Bearer ${p.join(".").replaceAll("=", "")}`),
  );
  return fc.oneof(
    fc.constant({}),
    value.map((v) => ({ authorization: v })),
    value.map((v) => ({ authorization: v, "x-floodgate-agent": agentId(), upgrade: "websocket" })),
  );
}

// ---- the properties ----

describe("HTTP fuzzing: every bad request is a 4xx in the error shape, never a 5xx or a hang", () => {
  it(
    "bodies: mutated, mistyped, nested, hostile-unicode, __proto__-keyed, non-JSON and non-UTF-8 bodies on every body route",
    async () => {
      const arb = fc.constantFrom(...BODY_ROUTES).chain((route) =>
        fc.record({
          route: fc.constant(route),
          body: badBody(route),
          type: fc.constantFrom(...JSON_TYPES),
          idem: fc.option(
            fc.string({
              unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
              maxLength: 300,
            }),
          ),
        }),
      );
      await fc.assert(
        fc.asyncProperty(arb, async ({ route, body, type, idem }) => {
          count("bodies");
          const r: Sent = {
            method: route.method,
            path: route.path(),
            headers: { ...route.auth(), "content-type": type, ...(idem === null ? {} : { "idempotency-key": idem }) },
            body: body.body,
          };
          expect(problem(await send(r), r)).toBeUndefined();
        }),
        { numRuns: RUNS },
      );
      expect(cases["bodies"]).toBeGreaterThanOrEqual(RUNS);
    },
    TEST_TIMEOUT,
  );

  it(
    "content types: a body that would be accepted as JSON is refused with 415 under any other content type",
    async () => {
      const types = fc
        .oneof(
          fc.constantFrom(
            "text/plain",
            "text/json",
            "application/jsonx",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/octet-stream",
            "json",
            "application/",
            " application/json",
            "",
          ),
          fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 60 }),
          // Header values are trimmed on the way in, so leading and trailing blanks do not count.
        )
        .filter((t) => !/^application\/(.+\+)?json\b/i.test(t.trim()));
      const arb = fc.record({ route: fc.constantFrom(...BODY_ROUTES), type: fc.option(types) });
      await fc.assert(
        fc.asyncProperty(arb, async ({ route, type }) => {
          count("content types");
          const headers: Record<string, string> = { ...route.auth() };
          if (type !== null) headers["content-type"] = type;
          // The scratch model takes the submits, so the fuzzed model's queue never moves.
          const path = route.name === "submit" ? `/v1/models/${w.scratchModel}/jobs` : route.path();
          const r: Sent = { method: route.method, path, headers, body: JSON.stringify(route.example()) };
          expect(problem(await send(r), r, ["unsupported_media_type"])).toBeUndefined();
        }),
        { numRuns: RUNS },
      );
      expect(cases["content types"]).toBeGreaterThanOrEqual(RUNS);
    },
    TEST_TIMEOUT,
  );

  it(
    "ids: hostile, percent-encoded, over-long and job-shaped ids in every route that takes one",
    async () => {
      const arb = fc
        .constantFrom(...ID_ROUTES)
        .chain((route) => fc.record({ route: fc.constant(route), seg: segment(route.rawPercent) }));
      await fc.assert(
        fc.asyncProperty(arb, async ({ route, seg }) => {
          count("ids");
          // A valid model name would register a model, or list its (no) versions; those are not bad requests.
          if (route.name === "admin model" || route.name === "admin versions")
            fc.pre(!ModelName.safeParse(decodeURIComponentSafe(seg)).success);
          // `/v1/admin/models/../versions` is, once the URL is resolved, every model's versions.
          if (route.name === "admin versions") fc.pre(!/^(\.|%2e){2}$/i.test(seg));
          const body = route.body?.();
          const r: Sent = {
            method: route.method,
            path: route.path(seg),
            headers: { ...route.auth(), ...(body ? { "content-type": "application/json" } : {}) },
            body: body ? JSON.stringify(body) : route.method === "PUT" ? new Uint8Array(3) : undefined,
          };
          expect(problem(await send(r), r)).toBeUndefined();
        }),
        { numRuns: RUNS },
      );
      expect(cases["ids"]).toBeGreaterThanOrEqual(RUNS);
    },
    TEST_TIMEOUT,
  );

  it(
    "queries: a job list query with at least one bad parameter is 400 invalid_query",
    async () => {
      const bad = fc
        .oneof(
          fc.record({
            k: fc.constant("limit"),
            v: fc.constantFrom("0", "101", "-1", "1.5", "abc", "", "1e3", "NaN", "two"),
          }),
          fc.record({
            k: fc.constant("status"),
            v: fc.oneof(fc.constantFrom("QUEUED", "done", "", "__proto__"), fc.string()),
          }),
          fc.record({ k: fc.constant("cursor"), v: fc.integer({ min: 65, max: 5000 }).map((n) => "c".repeat(n)) }),
          fc.record({ k: fc.constantFrom("foo", "constructor", "LIMIT", "status[]", "limit "), v: fc.string() }),
        )
        .filter(
          ({ k, v }) =>
            !(k === "status" && ["queued", "running", "succeeded", "failed", "cancelled", "expired"].includes(v)),
        );
      const extra = fc.array(
        fc.record({
          k: fc.constantFrom("__proto__", "limit", "status", "cursor", "x"),
          v: fc.string({ maxLength: 20 }),
        }),
        { maxLength: 3 },
      );
      await fc.assert(
        fc.asyncProperty(bad, extra, async (b, more) => {
          count("queries");
          const q = new URLSearchParams();
          for (const { k, v } of more) if (k !== b.k) q.append(k, v);
          q.append(b.k, b.v);
          const r: Sent = { method: "GET", path: `/v1/jobs?${q.toString()}`, headers: user() };
          expect(problem(await send(r), r, ["invalid_query"])).toBeUndefined();
        }),
        { numRuns: RUNS },
      );
      expect(cases["queries"]).toBeGreaterThanOrEqual(RUNS);
    },
    TEST_TIMEOUT,
  );

  it(
    "credentials: missing, malformed, forged and near-miss keys and tokens on every route are refused",
    async () => {
      const arb = fc.record({
        route: fc.constantFrom(...ALL_ROUTES),
        auth: badAuth(),
        method: fc.option(fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")),
      });
      await fc.assert(
        fc.asyncProperty(arb, async ({ route, auth, method }) => {
          count("credentials");
          const body = route.body?.();
          const m = method ?? route.method;
          const r: Sent = {
            method: m,
            path: route.path(),
            headers: { ...auth, ...(body ? { "content-type": "application/json" } : {}) },
            body: body && m !== "GET" ? JSON.stringify(body) : undefined,
          };
          expect(problem(await send(r), r)).toBeUndefined();
        }),
        { numRuns: RUNS },
      );
      expect(cases["credentials"]).toBeGreaterThanOrEqual(RUNS);
    },
    TEST_TIMEOUT,
  );

  it(
    "oversized: bodies over 1 MiB, with or without a Content-Length, are 413 on every body route",
    async () => {
      const arb = fc.record({
        route: fc.constantFrom(...BODY_ROUTES),
        over: fc.integer({ min: 1, max: 256 * 1024 }),
        streamed: fc.boolean(),
      });
      const runs = Math.max(20, Math.ceil(RUNS / 10));
      await fc.assert(
        fc.asyncProperty(arb, async ({ route, over, streamed }) => {
          count("oversized");
          const prefix = '{"input":{"prompt":"';
          const bytes = utf8.encode(prefix + "x".repeat(MAX_BODY_BYTES + over - prefix.length - 3) + '"}}');
          const body = streamed
            ? new ReadableStream<Uint8Array>({
                start(c) {
                  for (let i = 0; i < bytes.length; i += 65_536) c.enqueue(bytes.slice(i, i + 65_536));
                  c.close();
                },
              })
            : bytes;
          const r: Sent = {
            method: route.method,
            path: route.path(),
            headers: { ...route.auth(), "content-type": "application/json" },
            body,
          };
          expect(problem(await send(r), r, ["payload_too_large"])).toBeUndefined();
        }),
        { numRuns: runs },
      );
      expect(cases["oversized"]).toBeGreaterThanOrEqual(runs);
    },
    TEST_TIMEOUT,
  );

  it(
    "system routes: anything but GET on /healthz and /openapi.json, and unknown paths, are 404 in the error shape",
    async () => {
      const arb = fc.oneof(
        fc.record({
          method: fc.constantFrom("POST", "PUT", "DELETE", "PATCH"),
          path: fc.constantFrom("/healthz", "/openapi.json"),
        }),
        fc.record({
          method: fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH"),
          path: fc
            .array(segment(true), { minLength: 1, maxLength: 4 })
            .map((s) => `/${s.join("/")}`)
            .filter((p) => !p.startsWith("/v1/")),
        }),
      );
      await fc.assert(
        fc.asyncProperty(arb, async ({ method, path }) => {
          count("system routes");
          const r: Sent = { method, path, headers: {} };
          expect(problem(await send(r), r, ["not_found"])).toBeUndefined();
        }),
        { numRuns: RUNS },
      );
      expect(cases["system routes"]).toBeGreaterThanOrEqual(RUNS);
    },
    TEST_TIMEOUT,
  );
});

describe("HTTP fuzzing: hostile but valid submits", () => {
  it(
    "schema-valid submits with lone surrogates, odd unicode and __proto__ keys are accepted or refused, never 5xx, and read back",
    async () => {
      const odd = fc.oneof(
        fc.constantFrom(...ODD_STRINGS),
        fc.string({ unit: "binary", minLength: 1, maxLength: 200 }),
      );
      const metadata = fc.dictionary(
        fc.oneof(fc.constantFrom(...ODD_KEYS), fc.string({ unit: "binary", maxLength: 16 })),
        fc.oneof(
          odd.map((s) => s.slice(0, 1024)),
          fc.double({ noNaN: true, noDefaultInfinity: true }),
          fc.boolean(),
        ),
        { maxKeys: 5 },
      );
      const arb = fc.record({
        prompt: odd.filter((s) => s.length >= 1 && s.length <= 2000),
        meta: fc.option(metadata),
        version: fc.option(odd.filter((s) => s.length >= 1 && s.length <= 128)),
        idem: fc.option(fc.stringMatching(/^[\x21-\x7e]{1,40}$/)),
      });
      await fc.assert(
        fc.asyncProperty(arb, async ({ prompt, meta, version, idem }) => {
          count("valid submits");
          const body: Record<string, unknown> = { input: { prompt } };
          if (meta !== null) {
            const m = {};
            for (const [k, v] of Object.entries(meta)) setOwn(m, k, v);
            body.metadata = m;
          }
          if (version !== null) body.version = version;
          const r: Sent = {
            method: "POST",
            path: `/v1/models/${w.scratchModel}/jobs`,
            headers: {
              ...user(),
              "content-type": "application/json",
              ...(idem === null ? {} : { "idempotency-key": idem }),
            },
            body: JSON.stringify(body),
          };
          const got = await send(r);
          // Accepted: it must read back. Refused: as any bad request.
          const id = got.status === 202 ? (JSON.parse(got.text) as { id: string }).id : undefined;
          const back =
            id === undefined ? undefined : await send({ method: "GET", path: `/v1/jobs/${id}`, headers: user() });
          expect(
            back === undefined ? problem(got, r) : back.status === 200 ? undefined : `read back ${back.status}`,
          ).toBeUndefined();
        }),
        { numRuns: RUNS },
      );
      expect(cases["valid submits"]).toBeGreaterThanOrEqual(RUNS);
    },
    TEST_TIMEOUT,
  );
});

/** An object nested `depth` levels deep, as JSON text (written out: no serializer recurses). */
function nestedObject(depth: number): string {
  return `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
}

interface Posted {
  status: number;
  body: { error?: { code: string }; jobs?: { ok: boolean; error?: { code: string } }[] };
}

/** A user's POST of a raw JSON text. */
async function post(path: string, body: string, headers: Record<string, string> = {}): Promise<Posted> {
  const got = await send({
    method: "POST",
    path,
    headers: { ...user(), "content-type": "application/json", ...headers },
    body,
  });
  return { status: got.status, body: JSON.parse(got.text) as Posted["body"] };
}

function code(r: Posted): { status: number; code: string | undefined } {
  return { status: r.status, code: r.body.error?.code };
}

function batchCodes(r: Posted): { status: number; jobs: (string | undefined)[] | undefined } {
  return { status: r.status, jobs: r.body.jobs?.map((j) => (j.ok ? "ok" : j.error?.code)) };
}

describe("hostile inputs are refused with 400 and a stable code, never a 5xx", () => {
  it("an input key with a lone surrogate is 400 invalid_input, alone and inside a batch", async () => {
    const open = await makeModel({ input_schema: { type: "object" } });
    for (const model of [w.scratchModel, open]) {
      const single = await post(`/v1/models/${model}/jobs`, '{"input":{"\\ud800":1,"prompt":"x"}}');
      expect(code(single)).toEqual({ status: 400, code: "invalid_input" });
      const nestedKey = await post(`/v1/models/${open}/jobs`, '{"input":{"a":{"x\\udfffy":1}}}');
      expect(code(nestedKey)).toEqual({ status: 400, code: "invalid_input" });
      const batch = await post(
        `/v1/models/${model}/jobs/batch`,
        '{"jobs":[{"input":{"prompt":"fine"}},{"input":{"\\ud800":1,"prompt":"x"}}]}',
      );
      expect(batchCodes(batch)).toEqual({ status: 202, jobs: ["ok", "invalid_input"] });
    }
  });

  it(`a body nested past ${MAX_BODY_DEPTH} levels is 400 invalid_body and an input past ${MAX_INPUT_DEPTH} is 400 invalid_input, with or without an Idempotency-Key; an input of ${MAX_INPUT_DEPTH} levels is accepted`, async () => {
    const open = await makeModel({ input_schema: { type: "object" } });
    const jobs = `/v1/models/${open}/jobs`;
    const idem = { "idempotency-key": `deep-${Date.now()}` };
    for (const headers of [{}, idem]) {
      expect(code(await post(jobs, `{"input":${nestedObject(5000)}}`, headers))).toEqual({
        status: 400,
        code: "invalid_body",
      });
      expect(code(await post(jobs, `{"input":${nestedObject(MAX_BODY_DEPTH)}}`, headers))).toEqual({
        status: 400,
        code: "invalid_body",
      });
      expect(code(await post(jobs, `{"input":${nestedObject(MAX_INPUT_DEPTH + 1)}}`, headers))).toEqual({
        status: 400,
        code: "invalid_input",
      });
    }
    expect(code(await post(`${jobs}/batch`, `{"jobs":[{"input":${nestedObject(5000)}}]}`))).toEqual({
      status: 400,
      code: "invalid_body",
    });
    const batch = await post(
      `${jobs}/batch`,
      `{"jobs":[{"input":${nestedObject(MAX_INPUT_DEPTH)}},{"input":${nestedObject(MAX_INPUT_DEPTH + 1)}}]}`,
    );
    expect(batchCodes(batch)).toEqual({ status: 202, jobs: ["ok", "invalid_input"] });
    expect((await post(jobs, `{"input":${nestedObject(MAX_INPUT_DEPTH)}}`, idem)).status).toBe(202);
    const arrays = `{"input":{"a":${"[".repeat(MAX_INPUT_DEPTH)}1${"]".repeat(MAX_INPUT_DEPTH)}}}`;
    expect(code(await post(jobs, arrays))).toEqual({ status: 400, code: "invalid_input" });
  });

  it("a model's input_schema nested 1,000 deep is 400 invalid_body", async () => {
    const schema = `{"type":"object","properties":{"a":${'{"type":"object","properties":{"a":'.repeat(1000)}{}${"}}".repeat(1000)}}}`;
    const got = await send({
      method: "PUT",
      path: `/v1/admin/models/${unique("deep")}`,
      headers: { ...admin(), "content-type": "application/json" },
      body: `{"input_schema":${schema}}`,
    });
    expect({ status: got.status, code: (JSON.parse(got.text) as { error?: { code: string } }).error?.code }).toEqual({
      status: 400,
      code: "invalid_body",
    });
  });

  it("constructor and prototype keys anywhere in an input are 400 invalid_input, since agents refuse them; a __proto__ key anywhere in a body is 400 invalid_body", async () => {
    const open = await makeModel({ input_schema: { type: "object" } });
    for (const input of ['{"constructor":{"name":"x"}}', '{"prototype":1}', '{"a":{"b":[{"constructor":1}]}}']) {
      expect(code(await post(`/v1/models/${open}/jobs`, `{"input":${input}}`))).toEqual({
        status: 400,
        code: "invalid_input",
      });
    }
    for (const body of [
      '{"input":{"__proto__":{"polluted":true}}}',
      '{"input":{"a":[{"__proto__":1}]}}',
      '{"input":{"prompt":"x"},"metadata":{"__proto__":"x"}}',
    ]) {
      expect(code(await post(`/v1/models/${open}/jobs`, body))).toEqual({ status: 400, code: "invalid_body" });
    }
    // Not keys: the same words as values are plain data.
    expect(
      (await post(`/v1/models/${open}/jobs`, '{"input":{"word":"constructor","list":["prototype"]}}')).status,
    ).toBe(202);
  });
});

describe("HTTP fuzzing: afterwards", () => {
  it("the job created before the fuzzing reads back identical, and no answer was a 5xx", async () => {
    const after = (await call("GET", `/v1/jobs/${w.job}`, { key: w.key })).body;
    expect(stable(after)).toEqual(stable(w.before));
    const total = Object.values(cases).reduce((a, b) => a + b, 0);
    console.log(
      `HTTP fuzz: ${total} cases (${Object.entries(cases)
        .map(([k, v]) => `${k} ${v}`)
        .join(", ")}), ${fiveHundreds} answered 5xx, FUZZ_RUNS=${RUNS}`,
    );
    expect(fiveHundreds).toBe(0);
    void env;
  });
});

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
