/**
 * Helpers for the workerd suites: requests through the Worker's own fetch handler, and a fresh
 * model and account per test so tests never share queues.
 */
import { env, exports } from "cloudflare:workers";
import { DEMO_MODEL_CONFIG } from "../../shared/models.ts";

export const ADMIN = env.ADMIN_KEY;

export interface Answer<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
}

export async function call<T = Record<string, unknown>>(
  method: string,
  path: string,
  opts: { key?: string; body?: unknown; raw?: string; headers?: Record<string, string> } = {},
): Promise<Answer<T>> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.key !== undefined) headers.authorization = `Bearer ${opts.key}`;
  let body: string | undefined = opts.raw;
  if (opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    headers["content-type"] ??= "application/json";
  }
  const res = await exports.default.fetch(new Request(`http://edge.test${path}`, { method, headers, body }));
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: (text ? JSON.parse(text) : null) as T };
}

let seq = 0;
/** A unique name for this test's model or account. */
export function unique(prefix: string): string {
  seq += 1;
  return `${prefix}-${Date.now().toString(36)}-${seq}`;
}

/**
 * Registers a model like the demo model (its input schema and timings) under a fresh name. Its
 * outputs section is the default one (no output required) unless `overrides` gives one.
 */
export async function makeModel(overrides: Record<string, unknown> = {}): Promise<string> {
  const name = unique("m");
  const { outputs: _demoOutputs, ...demo } = DEMO_MODEL_CONFIG;
  const r = await call("PUT", `/v1/admin/models/${name}`, { key: ADMIN, body: { ...demo, ...overrides } });
  if (r.status !== 201) throw new Error(`model: ${r.status} ${JSON.stringify(r.body)}`);
  return name;
}

/** Creates an account and answers its id and first key. */
export async function makeAccount(
  tier = "plus",
  rateLimit?: number,
): Promise<{ id: string; key: string; keyId: string }> {
  const r = await call<{ id: string; api_key: string; key_id: string }>("POST", "/v1/admin/accounts", {
    key: ADMIN,
    body: { name: unique("acct"), tier, ...(rateLimit === undefined ? {} : { rate_limit: rateLimit }) },
  });
  if (r.status !== 201) throw new Error(`account: ${r.status} ${JSON.stringify(r.body)}`);
  return { id: r.body.id, key: r.body.api_key, keyId: r.body.key_id };
}

export async function submit(
  model: string,
  key: string,
  input: Record<string, unknown> = { prompt: "a red fox" },
  headers: Record<string, string> = {},
) {
  return call<{ id: string; status: string; tier: string; model: string; created_at: string }>(
    "POST",
    `/v1/models/${model}/jobs`,
    {
      key,
      body: { input },
      headers,
    },
  );
}
