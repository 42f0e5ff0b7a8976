/**
 * Usage: an account's own (`GET /v1/usage`) and, for admins, any account's
 * (`GET /v1/admin/usage`). Each model shard keeps its hourly buckets (written where attempts end);
 * a read fans out over every shard of every model, like the job list, and sums them here.
 */
import {
  AdminUsageQuery,
  DEFAULT_USAGE_DAYS,
  MAX_USAGE_DAYS,
  summarizeUsage,
  UsageAnswer,
  UsageQuery,
} from "../../shared/usage.ts";
import { fail } from "../../shared/errors.ts";
import { raise } from "../errors.ts";
import { apiRoute, firstValues, json, routesApp } from "../openapi.ts";
import { registry } from "../registry-cache.ts";
import { scheduler } from "./jobs.ts";

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/** An account's usage over [from, to), summed from every shard of every model. */
export async function readUsage(env: Env, accountId: string, q: UsageQuery): Promise<UsageAnswer> {
  const to = q.to === undefined ? Date.now() : Date.parse(q.to);
  const asked = q.from === undefined ? to - DEFAULT_USAGE_DAYS * DAY_MS : Date.parse(q.from);
  const from = Math.floor(asked / HOUR_MS) * HOUR_MS;
  if (from >= to) raise(fail("bad_request", "`from` must come before `to`"));
  if (to - from > MAX_USAGE_DAYS * DAY_MS) {
    raise(fail("bad_request", `a usage query covers at most ${MAX_USAGE_DAYS} days; ask for a shorter span`));
  }
  const { byName } = await registry(env);
  const routes = [...byName.values()].flatMap((m) =>
    Array.from({ length: m.shards }, (_, shard) => ({ modelNumber: m.number, shard })),
  );
  const buckets = (await Promise.all(routes.map((r) => scheduler(env, r).usage(accountId, from, to)))).flat();
  const { usage, totals } = summarizeUsage(buckets, q.group_by);
  return {
    account: accountId,
    from: new Date(from).toISOString(),
    to: new Date(to).toISOString(),
    group_by: q.group_by,
    usage,
    totals,
  };
}

const ownUsage = apiRoute("user", {
  method: "get",
  path: "/v1/usage",
  summary: "The caller's usage: GPU-seconds executing, attempts, jobs by outcome, output bytes, per model",
  request: { query: firstValues(UsageQuery) },
  responses: { 200: json("Usage", UsageAnswer) },
});

const accountUsage = apiRoute("admin", {
  method: "get",
  path: "/v1/admin/usage",
  summary: "One account's usage, as the account reads its own",
  request: { query: firstValues(AdminUsageQuery) },
  responses: { 200: json("Usage", UsageAnswer) },
});

export const usageRoutes = routesApp()
  .openapi(ownUsage, async (c) =>
    c.json(await readUsage(c.env, c.get("principal").account_id, c.req.valid("query")), 200),
  )
  .openapi(accountUsage, async (c) => {
    const { account, ...q } = c.req.valid("query");
    return c.json(await readUsage(c.env, account, q), 200);
  });
