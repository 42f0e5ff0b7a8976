/**
 * Per-account rate limits through the Workers rate-limiting binding, so a flood is refused in
 * the Worker before any actor is touched. A binding's limit is fixed in wrangler.toml, so an
 * account uses the largest step at or below its limit (requests per minute).
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

export async function checkRateLimit(env: Env, p: Principal): Promise<void> {
  const perMinute =
    p.rate_limit ?? (await registry(env)).tiers.find((t) => t.name === p.tier)?.rate_limit_per_min ?? 60;
  const { success } = await binding(env, stepFor(perMinute)).limit({ key: p.account_id });
  if (!success) {
    throw new FloodgateError(
      "rate_limited",
      `account ${p.account_id} is over its rate limit of ${stepFor(perMinute)} requests per minute`,
      60,
    );
  }
}
