/**
 * The admin client (the edge's `ADMIN_KEY`): accounts, agent tokens, connected agents, queues
 * and models. What the CLI's admin commands call.
 */
import { z } from "zod";
import {
  AgentView,
  AccountCreated,
  AgentTokenCreated,
  ModelConfig,
  QueueStats,
  type AccountCreateBody,
  type AgentTokenBody,
} from "../shared/api.ts";
import { Http } from "./http.ts";

/**
 * A connected agent as `GET /v1/admin/agents` lists it. The edge has no shared schema for this
 * answer yet (it returns the agent actor's `info()`), so it is checked here, loosely: the fields
 * admins read must have their types, others pass through.
 */

export interface AdminClientOptions {
  url: string;
  /** The edge's admin key (the Worker secret `ADMIN_KEY`). */
  adminKey: string;
  fetch?: typeof fetch | undefined;
  /** Deadline of one HTTP request (ms). Default 30 000. */
  timeoutMs?: number | undefined;
  retries?: number | undefined;
}

type Signal = { signal?: AbortSignal };

export interface FloodgateAdminClient {
  accounts: {
    /** Creates an account and its first API key (the key is shown once). */
    create(body: z.input<typeof AccountCreateBody>, opts?: Signal): Promise<z.infer<typeof AccountCreated>>;
  };
  tokens: {
    /** Mints an agent token for a pool and its models. */
    create(body: z.input<typeof AgentTokenBody>, opts?: Signal): Promise<z.infer<typeof AgentTokenCreated>>;
    /** Revokes an agent token; connected agents using it are closed. */
    revoke(id: string, opts?: Signal): Promise<void>;
  };
  agents: { list(opts?: Signal): Promise<AgentView[]> };
  queues: { list(opts?: Signal): Promise<QueueStats[]> };
  models: { list(opts?: Signal): Promise<ModelConfig[]> };
}

/**
 * Makes an admin client.
 *
 * @example
 * const admin = createAdminClient({ url, adminKey });
 * const { id, api_key } = await admin.accounts.create({ name: "acme", tier: "api" });
 */
export function createAdminClient(opts: AdminClientOptions): FloodgateAdminClient {
  const http = new Http({
    url: opts.url,
    key: opts.adminKey,
    fetch: opts.fetch,
    timeoutMs: opts.timeoutMs,
    retries: opts.retries,
  });
  return {
    accounts: {
      create: (body, o = {}) =>
        http.request("/v1/admin/accounts", AccountCreated, { method: "POST", body, signal: o.signal }),
    },
    tokens: {
      create: (body, o = {}) =>
        http.request("/v1/admin/agent-tokens", AgentTokenCreated, { method: "POST", body, signal: o.signal }),
      revoke: async (id, o = {}) => {
        await http.request(`/v1/admin/agent-tokens/${encodeURIComponent(id)}`, z.undefined(), {
          method: "DELETE",
          signal: o.signal,
          idempotent: true,
        });
      },
    },
    agents: {
      list: async (o = {}) =>
        (
          await http.request("/v1/admin/agents", z.object({ agents: z.array(AgentView) }), {
            signal: o.signal,
            idempotent: true,
          })
        ).agents,
    },
    queues: {
      list: async (o = {}) =>
        (
          await http.request("/v1/admin/queues", z.object({ queues: z.array(QueueStats) }), {
            signal: o.signal,
            idempotent: true,
          })
        ).queues,
    },
    models: {
      list: async (o = {}) =>
        (
          await http.request("/v1/admin/models", z.object({ models: z.array(ModelConfig) }), {
            signal: o.signal,
            idempotent: true,
          })
        ).models,
    },
  };
}
