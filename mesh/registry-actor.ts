/**
 * RegistryActor: the one global actor (named `global`). Holds models, tiers, agent tokens, the
 * agent directory and rollouts. It is read on configuration changes and cache misses only — the
 * edge caches its snapshot for `CONFIG_CACHE_S` — and pushes changes to the schedulers that need
 * them; a change of a model's desired versions also goes to the actors of the model's agents.
 *
 * Rollouts (the decisions are mesh/registry/rollouts.ts's): an apply checks every version it
 * names with the model repository, records a history entry, sets each model's configuration
 * from its stable version's manifest and its desired versions; shards report each version's
 * figures and agents' actors the version states their agents report, and a canary whose
 * figures or loads fail its analysis is reverted here.
 */
import { DurableObject } from "cloudflare:workers";
import { shardSpan, type ModelConfig, type ModelConfigBody } from "../shared/api.ts";
import { fail, type Failure } from "../shared/errors.ts";
import { MAX_MODEL_NUMBER, schedulerName } from "../shared/ids.ts";
import type { ModelRollout, VersionPurge } from "../shared/repository.ts";
import type { RevertRecord, RolloutEntry, RolloutStatus } from "../shared/rollouts.ts";
import { DEFAULT_TIERS, type TierConfig } from "../shared/slo.ts";
import type { VersionState } from "../shared/wire.ts";
import { actor, eachLimited } from "./remote.ts";
import type { AgentActor } from "./agent-actor.ts";
import type { SchedulerActor } from "./scheduler-actor.ts";
import type { VersionFigures } from "./scheduler/core.ts";
import { durableSql } from "./sql/durable.ts";
import { migrate } from "./sql/sql.ts";
import {
  entryOf,
  recordAgentVersions,
  recordRevert,
  recordRollout,
  rolloutStatusOf,
  verdictOf,
} from "./registry/ledger.ts";
import { laneDesired, undoTarget, type ModelDesired, type WirePurged } from "./registry/rollouts.ts";
import { MIGRATIONS, RegistryStore } from "./registry/store.ts";
import { readRollout, readyVersion } from "./registry/versions.ts";

/**
 * What the edge and agents' actors cache: every model, the tier table, the models' desired
 * versions and the latest versions purged from the fleet's caches.
 */
export interface RegistrySnapshot {
  models: ModelConfig[];
  tiers: TierConfig[];
  desired: ModelDesired[];
  purged: WirePurged[];
}

/** Purges told to agents (the latest; `agent.desired` `purged` holds at most this many). */
export const PURGES_TOLD = 256;

/** Agents' actors told at once of a change of desired versions. */
const TELL_AGENTS_AT_ONCE = 16;
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
    return {
      models: this.models(),
      tiers: this.tiers(),
      desired: this.store.allDesired(),
      purged: this.store.purges(PURGES_TOLD).map((p) => ({ model: p.model, version: p.version })),
    };
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

  /** Tells every shard of these models the current configuration and desired versions. */
  private async push(models: ModelConfig[]): Promise<void> {
    const tiers = this.tiers();
    await Promise.all(
      models.flatMap((model) => {
        const d = this.store.desired(model.name);
        const config = { model, tiers, ...(d ? { desired: laneDesired(d) } : {}) };
        return Array.from({ length: shardSpan(model) }, (_, shard) =>
          actor<SchedulerActor>(this.env.SCHEDULER, schedulerName({ modelNumber: model.number, shard })).configure(
            config,
          ),
        );
      }),
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
    const models = new Set(this.store.agentVersions(agentId).map((r) => r.model));
    this.store.deleteAgent(agentId);
    // A canary that failed to load elsewhere may now serve on no agent at all.
    for (const model of models) await this.analyse(model);
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

  // ---- rollouts ----

  /**
   * Applies a rollout (a rollout file's models, or one model's earlier entry again: `undo`):
   * every version it names must be ready in the model repository; then one history entry, each
   * model's configuration from its stable version's manifest (the model is made when absent)
   * and its desired versions, pushed to its shards before the answer and told to its agents.
   */
  async applyRollout(
    models: Record<string, ModelRollout>,
    source: string | null,
    by: string,
    kind: "apply" | "undo" = "apply",
  ): Promise<{ ok: true; entry: RolloutEntry } | Failure> {
    const read = await readRollout(this.env, models);
    if (!read.ok) return read;
    // From here on nothing awaits until every write is made: one event, one commit.
    const out = recordRollout(this.store, models, read.models, { source, by, kind, now: Date.now() });
    if (!out.ok) return out;
    await this.desiredChanged(Object.keys(models));
    return out;
  }

  /** Applies a model's previous history entry again, as a new entry (see rollouts.ts, undoTarget). */
  async undoRollout(model: string, by: string): Promise<{ ok: true; entry: RolloutEntry } | Failure> {
    const target = undoTarget(this.store.rolloutsOf(model, 2).map(entryOf), model);
    if (!target) return fail("conflict", `model ${model} has no earlier rollout entry to go back to`);
    return await this.applyRollout({ [model]: target.entry }, null, by, "undo");
  }

  /** Ends a model's canary now, at an operator's word. */
  async revertCanary(model: string): Promise<{ ok: true; revert: RevertRecord } | Failure> {
    const out = recordRevert(this.store, model, "operator", Date.now());
    if (!out.ok) return out;
    await this.desiredChanged([model]);
    return out;
  }

  /**
   * Purges a version from the fleet's caches: refused (`conflict`) while the rollout desires it
   * as the stable or the canary; recorded, and told to the model's agents (`agent.desired`
   * `purged`), who delete it once nothing on their host serves it.
   */
  async purgeVersion(model: string, version: string, by: string): Promise<{ ok: true; purge: VersionPurge } | Failure> {
    const d = this.store.desired(model);
    const as = d?.stable.version === version ? "stable" : d?.canary?.version === version ? "canary" : undefined;
    if (as) {
      return fail(
        "conflict",
        `${model}@${version} is the rollout's ${as} version: roll out another version before purging it`,
      );
    }
    const known = await readyVersion(this.env, model, version);
    if (!known.ok) return known;
    const at = Date.now();
    this.store.purge({ model, version, at, by });
    await this.tellAgents([model]);
    return { ok: true, purge: { model, version, purged_at: new Date(at).toISOString(), purged_by: by } };
  }

  /** Runs a model's canary analysis; a canary that fails it is reverted, and shards and agents told. */
  private async analyse(model: string): Promise<void> {
    const verdict = verdictOf(this.store, model);
    if (verdict === undefined) return;
    const out = recordRevert(this.store, model, verdict, Date.now());
    if (!out.ok) return;
    console.warn(JSON.stringify({ level: "warn", what: "canary reverted", model, ...out.revert }));
    // Not awaited: the shard or agent whose report led here is not held up by the fan-out.
    this.ctx.waitUntil(this.desiredChanged([model]).catch(() => undefined));
  }

  /**
   * A change of these models' desired versions: their shards are configured (re-laning routed
   * jobs), and the actors of their agents told, a few at a time, after the answer.
   */
  private async desiredChanged(models: readonly string[]): Promise<void> {
    const configs = models.flatMap((m) => {
      const row = this.store.model(m);
      return row ? [JSON.parse(row.config) as ModelConfig] : [];
    });
    await this.tellAgents(models);
    await this.push(configs);
  }

  /** The actors of these models' agents are sent the snapshot, a few at a time, after the answer. */
  private async tellAgents(models: readonly string[]): Promise<void> {
    const agents = [...new Set(models.flatMap((m) => this.store.agentsOfModel(m)))];
    const snapshot = await this.snapshot();
    this.ctx.waitUntil(
      eachLimited(agents, TELL_AGENTS_AT_ONCE, (id) =>
        actor<AgentActor>(this.env.AGENT, id)
          .desiredChanged(snapshot)
          .catch(() => undefined),
      ),
    );
  }

  /** A shard's figures since its last report: added to the desired versions' windows, then analysed. */
  async versionFigures(model: string, figures: VersionFigures[]): Promise<void> {
    for (const f of figures) this.store.addFigures(model, f.version, f.jobs, f.failed);
    await this.analyse(model);
  }

  /**
   * An agent's version states changed (its actor tells only changes): kept for `rollout status`;
   * a load that failed counts as a failed job of a desired version, once per agent in the
   * version's window (an agent that retries and fails again does not count twice); each model
   * touched is analysed.
   */
  async agentVersions(agentId: string, states: VersionState[]): Promise<void> {
    for (const model of recordAgentVersions(this.store, agentId, states)) await this.analyse(model);
  }

  /** The rollout history, newest first. */
  async rolloutHistory(limit: number): Promise<RolloutEntry[]> {
    return this.store.rollouts(limit).map(entryOf);
  }

  /** Every model with a rollout: desired versions, agents' versions, windows and reverts. */
  async rolloutStatus(): Promise<RolloutStatus> {
    return rolloutStatusOf(this.store);
  }
}
