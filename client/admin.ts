/**
 * The admin client (the edge's `ADMIN_KEY`): accounts, agent tokens, connected agents, queues,
 * models and rollouts. What the CLI's admin commands call.
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
import type { RolloutFile } from "../shared/repository.ts";
import {
  RevertAnswer,
  RolloutEntry,
  RolloutHistory,
  RolloutStatus,
  type RevertAnswer as Revert,
  type RolloutEntry as Entry,
  type RolloutStatus as Status,
} from "../shared/rollouts.ts";
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
  rollouts: {
    /** Applies a rollout file (its text, when given, is kept in the history). */
    apply(file: z.input<typeof RolloutFile>, source?: string, opts?: Signal): Promise<Entry>;
    /** The history, newest first. */
    history(limit?: number, opts?: Signal): Promise<Entry[]>;
    /** Per model: desired versions, agents' versions, figures per version, reverts. */
    status(opts?: Signal): Promise<Status>;
    /** Applies a model's previous entry again. */
    undo(model: string, opts?: Signal): Promise<Entry>;
    /** Ends a model's canary now. */
    revert(model: string, opts?: Signal): Promise<Revert>;
  };
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
    rollouts: {
      apply: (file, source, o = {}) =>
        http.request("/v1/admin/rollouts", RolloutEntry, {
          method: "POST",
          body: { ...file, ...(source === undefined ? {} : { source }) },
          signal: o.signal,
        }),
      history: async (limit, o = {}) =>
        (
          await http.request(`/v1/admin/rollouts${limit === undefined ? "" : `?limit=${limit}`}`, RolloutHistory, {
            signal: o.signal,
            idempotent: true,
          })
        ).rollouts,
      status: (o = {}) =>
        http.request("/v1/admin/rollouts/status", RolloutStatus, { signal: o.signal, idempotent: true }),
      undo: (model, o = {}) =>
        http.request("/v1/admin/rollouts/undo", RolloutEntry, { method: "POST", body: { model }, signal: o.signal }),
      revert: (model, o = {}) =>
        http.request("/v1/admin/rollouts/revert", RevertAnswer, { method: "POST", body: { model }, signal: o.signal }),
    },
  };
}
