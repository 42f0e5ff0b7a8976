/**
 * The admin client (the edge's `ADMIN_KEY`): accounts, agent tokens, connected agents, queues,
 * capacity, models, their versions and rollouts. What the CLI's admin commands call.
 */
import { UsageAnswer } from "../shared/usage.ts";
import { usagePath, type UsageOptions } from "./usage.ts";
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
import { CapacityView } from "../shared/capacity.ts";
import { PoolsStatus, type PoolsFile } from "../shared/pools.ts";
import {
  PieceStored,
  VersionPurge,
  VersionPushAnswer,
  VersionRecord,
  VersionSummary,
  type RolloutFile,
  type VersionPush,
} from "../shared/repository.ts";
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
  agents: {
    list(opts?: Signal): Promise<AgentView[]>;
    /** Takes a connected agent's machine back: its jobs go back to their queues without spending attempts. */
    reclaim(id: string, opts?: Signal): Promise<{ agent_id: string; released: number }>;
  };
  queues: { list(opts?: Signal): Promise<QueueStats[]> };
  /** Per model: agents connected and needed, busy slots, queued jobs, seconds to the first SLO breach. */
  capacity: { read(opts?: Signal): Promise<CapacityView> };
  pools: {
    /** Replaces the pools; answers the signing secrets of new webhook pools (shown once). */
    apply(
      file: z.input<typeof PoolsFile>,
      source?: string,
      opts?: Signal,
    ): Promise<{ pools: string[]; secrets: Record<string, string> }>;
    /** Every pool: desired, connected and busy agents, recent calls and answers. */
    status(opts?: Signal): Promise<PoolsStatus>;
    /** Mints a provisioner token for some pools. */
    token(pools: string[], ttlS?: number, opts?: Signal): Promise<z.infer<typeof AgentTokenCreated>>;
  };
  models: { list(opts?: Signal): Promise<ModelConfig[]> };
  versions: {
    /** A push's first step: records the version (pending) and answers the pieces the store lacks. */
    push(model: string, push: VersionPush, opts?: Signal): Promise<VersionPushAnswer>;
    /** Stores one piece (its bytes, whose SHA-256 is `sha256`); a piece already stored is left as it is. */
    putPiece(
      sha256: string,
      bytes: Uint8Array<ArrayBuffer>,
      opts?: Signal & { timeoutMs?: number },
    ): Promise<PieceStored>;
    /** Makes a pushed version ready once every piece is stored. */
    commit(model: string, version: string, opts?: Signal): Promise<VersionRecord>;
    /** A model's versions, or every model's without `model`, newest first. */
    list(model?: string, opts?: Signal): Promise<VersionSummary[]>;
    /** One version with its file list. */
    get(model: string, version: string, opts?: Signal): Promise<VersionRecord>;
    /**
     * Purges a version from every agent's cache (refused with `conflict` while the rollout
     * desires it); agents delete it once nothing on their host serves it.
     */
    purge(model: string, version: string, opts?: Signal): Promise<VersionPurge>;
  };
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
  /** One account's usage, as the account reads its own. */
  usage(account: string, opts?: UsageOptions): Promise<UsageAnswer>;
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
      reclaim: (id, o = {}) =>
        http.request(
          `/v1/admin/agents/${encodeURIComponent(id)}/reclaim`,
          z.object({ agent_id: z.string(), released: z.number() }),
          { method: "POST", signal: o.signal, idempotent: true },
        ),
    },
    capacity: {
      read: (o = {}) => http.request("/v1/admin/capacity", CapacityView, { signal: o.signal, idempotent: true }),
    },
    pools: {
      apply: (file, source, o = {}) =>
        http.request(
          "/v1/admin/pools",
          z.object({ pools: z.array(z.string()), secrets: z.record(z.string(), z.string()) }),
          {
            method: "PUT",
            body: { file, ...(source === undefined ? {} : { source }) },
            signal: o.signal,
            idempotent: true,
          },
        ),
      status: (o = {}) => http.request("/v1/admin/pools", PoolsStatus, { signal: o.signal, idempotent: true }),
      token: (pools, ttlS, o = {}) =>
        http.request("/v1/admin/provisioner-tokens", AgentTokenCreated, {
          method: "POST",
          body: { pools, ...(ttlS === undefined ? {} : { ttl_s: ttlS }) },
          signal: o.signal,
        }),
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
    versions: {
      // Each step is safe to repeat: the same push answers the same version, a stored piece
      // is stored once, a ready version commits as it is.
      push: (model, push, o = {}) =>
        http.request(`/v1/admin/models/${encodeURIComponent(model)}/versions`, VersionPushAnswer, {
          method: "POST",
          body: push,
          signal: o.signal,
          idempotent: true,
        }),
      putPiece: (sha256, bytes, o = {}) =>
        http.request(`/v1/admin/pieces/${encodeURIComponent(sha256)}`, PieceStored, {
          method: "PUT",
          bytes,
          signal: o.signal,
          idempotent: true,
          timeoutMs: o.timeoutMs,
        }),
      commit: (model, version, o = {}) =>
        http.request(
          `/v1/admin/models/${encodeURIComponent(model)}/versions/${encodeURIComponent(version)}/commit`,
          VersionRecord,
          { method: "POST", signal: o.signal, idempotent: true },
        ),
      list: async (model, o = {}) =>
        (
          await http.request(
            model === undefined ? "/v1/admin/versions" : `/v1/admin/models/${encodeURIComponent(model)}/versions`,
            z.object({ versions: z.array(VersionSummary) }),
            { signal: o.signal, idempotent: true },
          )
        ).versions,
      get: (model, version, o = {}) =>
        http.request(
          `/v1/admin/models/${encodeURIComponent(model)}/versions/${encodeURIComponent(version)}`,
          VersionRecord,
          { signal: o.signal, idempotent: true },
        ),
      purge: (model, version, o = {}) =>
        http.request(
          `/v1/admin/models/${encodeURIComponent(model)}/versions/${encodeURIComponent(version)}/purge`,
          VersionPurge,
          { method: "POST", signal: o.signal, idempotent: true },
        ),
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
    usage: (account, o = {}) =>
      http.request(usagePath("/v1/admin/usage", o, { account }), UsageAnswer, { signal: o.signal, idempotent: true }),
  };
}
