/**
 * RegistryActor: the one global actor (named `global`). Holds models, tiers and agent tokens.
 * It is read on configuration changes and cache misses only — the edge caches its snapshot
 * for `CONFIG_CACHE_S` — and pushes changes to the schedulers that need them.
 */
import { DurableObject } from "cloudflare:workers";
import { shardSpan, type ModelConfig, type ModelConfigBody } from "../shared/api.ts";
import { fail } from "../shared/errors.ts";
import { MAX_MODEL_NUMBER, schedulerName } from "../shared/ids.ts";
import { DEFAULT_TIERS, type TierConfig } from "../shared/slo.ts";
import { actor } from "./remote.ts";
import type { AgentActor } from "./agent-actor.ts";
import type { SchedulerActor } from "./scheduler-actor.ts";
import { durableSql } from "./sql/durable.ts";
import { migrate } from "./sql/sql.ts";
import { MIGRATIONS, RegistryStore } from "./registry/store.ts";

/** What the edge caches: every model and the tier table. */
export interface RegistrySnapshot {
  models: ModelConfig[];
  tiers: TierConfig[];
}

export class RegistryActor extends DurableObject<Env> {
  private store!: RegistryStore;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    void ctx.blockConcurrencyWhile(async () => {
      const sql = durableSql(ctx.storage.sql);
      migrate(sql, MIGRATIONS);
      this.store = new RegistryStore(sql);
    });
  }

  private tiers(): TierConfig[] {
    const t = this.store.getMeta("tiers");
    return t === undefined ? [...DEFAULT_TIERS] : (JSON.parse(t) as TierConfig[]);
  }

  private models(): ModelConfig[] {
    return this.store.models().map((m) => JSON.parse(m.config) as ModelConfig);
  }

  async snapshot(): Promise<RegistrySnapshot> {
    return { models: this.models(), tiers: this.tiers() };
  }

  /** Registers or updates a model; its number is kept for life so job ids stay routable. */
  async putModel(name: string, body: ModelConfigBody) {
    const held = this.store.model(name);
    const number = held?.number ?? this.store.nextModelNumber();
    if (number > MAX_MODEL_NUMBER) return fail("conflict", "the registry holds the most models a job id can name");
    // Fewer shards: the ones past the new count drain, so the span keeps the most ever used.
    const span = Math.max(body.shards, held ? shardSpan(JSON.parse(held.config) as ModelConfig) : body.shards);
    const config: ModelConfig = {
      ...body,
      name,
      number,
      ...(span > body.shards ? { shard_span: span } : {}),
      updated_at: new Date().toISOString(),
    };
    this.store.putModel({ name, number, config: JSON.stringify(config), updated_at: config.updated_at });
    await this.push([config]);
    return { ok: true as const, model: config, created: held === undefined };
  }

  async putTiers(tiers: TierConfig[]) {
    this.store.setMeta("tiers", JSON.stringify(tiers));
    await this.push(this.models());
    return { ok: true as const, tiers };
  }

  /** Tells every shard of these models the current configuration. */
  private async push(models: ModelConfig[]): Promise<void> {
    const tiers = this.tiers();
    await Promise.all(
      models.flatMap((model) =>
        Array.from({ length: shardSpan(model) }, (_, shard) =>
          actor<SchedulerActor>(this.env.SCHEDULER, schedulerName({ modelNumber: model.number, shard })).configure({
            model,
            tiers,
          }),
        ),
      ),
    );
  }

  async putToken(t: { id: string; pool: string; models: string; created_at: number; expires_at: number }) {
    this.store.putToken({
      id: t.id,
      pool: t.pool,
      models: t.models,
      created_at: t.created_at,
      expires_at: t.expires_at,
      revoked_at: null,
    });
    return { ok: true as const };
  }

  /** Revokes a token, closes the live agents using it and fences their leases. */
  async revokeToken(id: string) {
    if (!this.store.token(id)) return fail("not_found", `no agent token ${id}`);
    this.store.revokeToken(id, Date.now());
    const agents = this.store.agentsOfToken(id);
    await Promise.all(
      agents.map((a) =>
        actor<AgentActor>(this.env.AGENT, a)
          .revoke(id)
          .catch(() => 0),
      ),
    );
    return { ok: true as const, disconnected: agents.length };
  }

  async agentSeen(a: { agent_id: string; token_id: string; pool: string; name: string }): Promise<void> {
    this.store.putAgent(a, Date.now());
  }

  async agentGone(agentId: string): Promise<void> {
    this.store.deleteAgent(agentId);
  }

  async agents() {
    return this.store.agents();
  }

  /** Whether a token id is known, not revoked and not expired. */
  async tokenLive(id: string): Promise<boolean> {
    return this.live(id, Date.now());
  }

  private live(id: string, now: number): boolean {
    const t = this.store.token(id);
    return t !== undefined && t.revoked_at === null && t.expires_at > now;
  }

  /**
   * Whether a token may act as an agent id: `dead` when the token is revoked, expired or
   * unknown; `taken` when the id is bound to another live token. An agent id is bound to the
   * token it connects with (`bind`), until that token dies or the agent is gone (its leases
   * returned), so no other token can take over its socket, its leases or its uploads.
   */
  async agentAccess(tokenId: string, agentId: string, pool: string, bind: boolean): Promise<"ok" | "dead" | "taken"> {
    const now = Date.now();
    if (!this.live(tokenId, now)) return "dead";
    const bound = this.store.agentToken(agentId);
    if (bound !== undefined && bound !== tokenId && this.live(bound, now)) return "taken";
    if (bind && bound !== tokenId) this.store.bindAgent(agentId, tokenId, pool, now);
    return "ok";
  }

  async putAccount(id: string, name: string, tier: string) {
    this.store.putAccount(id, name, tier, Date.now());
  }

  async accounts() {
    return this.store.accounts();
  }
}
