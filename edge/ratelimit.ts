/**
 * Rate limits through the Workers rate-limiting bindings, so a flood is refused in the Worker
 * before any actor is touched: per account (user keys and stream tokens), per client address
 * (requests refused for their credentials) and per agent token (agent routes). A binding's limit
 * is fixed in wrangler.toml, so an account uses the largest step at or below its limit (requests
 * per minute).
 */
import { FloodgateError } from "../shared/errors.ts";
import type { Principal } from "../mesh/index.ts";
import { registry } from "./registry-cache.ts";

const STEPS = [600_000, 60_000, 6000, 600, 60] as const;
type Step = (typeof STEPS)[number];

function binding(env: Env, step: Step): RateLimit {
  switch (step) {
    case 600_000:
      return env.RL_600000;
    case 60_000:
      return env.RL_60000;
    case 6000:
      return env.RL_6000;
    case 600:
      return env.RL_600;
    case 60:
      return env.RL_60;
  }
}

/** The step used for a limit in requests per minute. */
export function stepFor(perMinute: number): Step {
  return STEPS.find((s) => s <= perMinute) ?? 60;
}

/** How long a refusal is remembered in the isolate (ms): the binding is not asked again meanwhile. */
export const REFUSAL_MEMORY_MS = 1_000;
/** Refusals remembered at most; past it the memory starts over. */
const MAX_REMEMBERED = 10_000;
/** Binding and key → until when a refusal stands (ms). */
const refusedUntil = new Map<string, number>();

/**
 * Asks a binding whether `key` may go on. A refusal is remembered for {@link REFUSAL_MEMORY_MS},
 * so a client far past its limit costs one binding call a second, not one per request: its
 * flood is refused from memory and its neighbours' requests do not queue behind it. A refused
 * key may then wait up to that long past the moment its window frees a request.
 */
export async function allowed(rl: RateLimit, scope: string, key: string): Promise<boolean> {
  const memo = `${scope}\n${key}`;
  const until = refusedUntil.get(memo);
  if (until !== undefined) {
    if (Date.now() < until) return false;
    refusedUntil.delete(memo);
  }
  const { success } = await rl.limit({ key });
  if (!success) {
    if (refusedUntil.size >= MAX_REMEMBERED) refusedUntil.clear();
    refusedUntil.set(memo, Date.now() + REFUSAL_MEMORY_MS);
  }
  return success;
}

export async function checkRateLimit(env: Env, p: Principal): Promise<void> {
  const perMinute =
    p.rate_limit ?? (await registry(env)).tiers.find((t) => t.name === p.tier)?.rate_limit_per_min ?? 60;
  const step = stepFor(perMinute);
  if (!(await allowed(binding(env, step), `account:${step}`, p.account_id))) {
    throw new FloodgateError(
      "rate_limited",
      `account ${p.account_id} is over its rate limit of ${stepFor(perMinute)} requests per minute`,
      60,
    );
  }
}

/** The bucket of requests without a client address: local `wrangler dev`, tests. */
export const LOCAL_ADDRESS = "local";

/** The client's address as Cloudflare's edge gives it (it overwrites any the client sent). */
export function clientAddress(req: Request): string {
  return req.headers.get("cf-connecting-ip") ?? LOCAL_ADDRESS;
}

/**
 * Counts a request refused for its credentials against its client address; past the address's
 * limit (`RL_ADDRESS`) the refusal becomes `429 rate_limited`, so guessing keys or tokens is
 * slowed as well as fruitless.
 */
export async function checkAddressLimit(env: Env, req: Request): Promise<void> {
  const address = clientAddress(req);
  if (!(await allowed(env.RL_ADDRESS, "address", address))) {
    throw new FloodgateError(
      "rate_limited",
      `too many requests with missing or invalid credentials from ${address}; check the key or token`,
      60,
    );
  }
}

/** Counts an agent route's request against its token (`RL_AGENT`); past the limit, 429. */
export async function checkAgentLimit(env: Env, tokenId: string): Promise<void> {
  if (!(await allowed(env.RL_AGENT, "agent", tokenId))) {
    throw new FloodgateError(
      "rate_limited",
      `agent token ${tokenId} is over its rate limit; its agents share it (mint a token per group of agents)`,
      10,
    );
  }
}
