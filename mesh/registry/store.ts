/**
 * All SQL of the registry actor: models (with the stable number written into job ids), the
 * tier table, agent tokens (for revocation), the account directory for admins, the agent
 * directory, and rollouts: the history applied, each model's desired versions, their figures
 * over their windows, the reverts, and the version states agents report.
 */
import type { ModelRollout } from "../../shared/repository.ts";
import type { RevertReason } from "../../shared/rollouts.ts";
import { getMeta, one, setMeta, type Sql, type SqlValue } from "../sql/sql.ts";
import type { AgentVersionRow, ModelDesired } from "./rollouts.ts";

export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
   CREATE TABLE models (
     name TEXT PRIMARY KEY, number INTEGER NOT NULL UNIQUE, config TEXT NOT NULL, updated_at TEXT NOT NULL
   );
   CREATE TABLE agent_tokens (
     id TEXT PRIMARY KEY, pool TEXT NOT NULL, models TEXT NOT NULL, created_at INTEGER NOT NULL,
     expires_at INTEGER NOT NULL, revoked_at INTEGER
   );
   CREATE TABLE accounts (id TEXT PRIMARY KEY, name TEXT NOT NULL, tier TEXT NOT NULL, created_at INTEGER NOT NULL)`,
  `CREATE TABLE agents (
     agent_id TEXT PRIMARY KEY, token_id TEXT NOT NULL, pool TEXT NOT NULL, name TEXT NOT NULL, seen_at INTEGER NOT NULL
   );
   CREATE INDEX agents_token ON agents (token_id)`,
  // Rollouts: the history (each entry's models also in rollout_models, to find a model's
  // entries by index), each model's desired versions, the figures of its desired versions since
  // each became desired, its reverts, what each agent reports of its versions, and which agents'
  // failed loads a desired version's figures already count.
  `CREATE TABLE rollouts (
     id INTEGER PRIMARY KEY AUTOINCREMENT, applied_at INTEGER NOT NULL, by TEXT NOT NULL, kind TEXT NOT NULL,
     models TEXT NOT NULL, source TEXT
   );
   CREATE TABLE rollout_models (model TEXT NOT NULL, rollout_id INTEGER NOT NULL, PRIMARY KEY (model, rollout_id)) WITHOUT ROWID;
   CREATE TABLE desired (model TEXT PRIMARY KEY, state TEXT NOT NULL) WITHOUT ROWID;
   CREATE TABLE version_windows (
     model TEXT NOT NULL, version TEXT NOT NULL, jobs INTEGER NOT NULL, failed INTEGER NOT NULL, since INTEGER NOT NULL,
     PRIMARY KEY (model, version)
   ) WITHOUT ROWID;
   CREATE TABLE reverts (
     id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, at INTEGER NOT NULL, version TEXT NOT NULL,
     reason TEXT NOT NULL, jobs INTEGER NOT NULL, failed INTEGER NOT NULL
   );
   CREATE INDEX reverts_model ON reverts (model, id);
   CREATE TABLE agent_versions (
     agent_id TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, state TEXT NOT NULL, message TEXT,
     PRIMARY KEY (agent_id, model, version)
   ) WITHOUT ROWID;
   CREATE INDEX agent_versions_model ON agent_versions (model, version);
   CREATE TABLE load_failures (
     model TEXT NOT NULL, version TEXT NOT NULL, agent_id TEXT NOT NULL, PRIMARY KEY (model, version, agent_id)
   ) WITHOUT ROWID`,
  // Versions purged from the fleet's caches: the latest are told to agents in `agent.desired`.
  `CREATE TABLE purges (
     model TEXT NOT NULL, version TEXT NOT NULL, at INTEGER NOT NULL, by TEXT NOT NULL, PRIMARY KEY (model, version)
   ) WITHOUT ROWID;
   CREATE INDEX purges_at ON purges (at)`,
];

/** A purge as stored. */
export interface PurgeRow {
  [k: string]: SqlValue;
  model: string;
  version: string;
  at: number;
  by: string;
}

/** A history entry as stored. */
export interface RolloutRow {
  [k: string]: SqlValue;
  id: number;
  applied_at: number;
  by: string;
  kind: string;
  /** JSON: model name → its ModelRollout. */
  models: string;
  source: string | null;
}

/** A revert as stored. */
export interface RevertRow {
  [k: string]: SqlValue;
  model: string;
  at: number;
  version: string;
  reason: string;
  jobs: number;
  failed: number;
}

export interface ModelRow {
  [k: string]: SqlValue;
  name: string;
  number: number;
  config: string;
  updated_at: string;
}

export interface TokenRow {
  [k: string]: SqlValue;
  id: string;
  pool: string;
  models: string;
  created_at: number;
  expires_at: number;
  revoked_at: number | null;
}

export class RegistryStore {
  readonly sql: Sql;

  constructor(sql: Sql) {
    this.sql = sql;
  }

  getMeta(k: string): string | undefined {
    return getMeta(this.sql, k);
  }

  setMeta(k: string, v: string): void {
    setMeta(this.sql, k, v);
  }

  models(): ModelRow[] {
    return this.sql.all<ModelRow>("SELECT * FROM models ORDER BY number");
  }

  model(name: string): ModelRow | undefined {
    return one<ModelRow>(this.sql, "SELECT * FROM models WHERE name = ?", name);
  }

  nextModelNumber(): number {
    return (one<{ n: number | null }>(this.sql, "SELECT max(number) AS n FROM models")?.n ?? -1) + 1;
  }

  putModel(m: ModelRow): void {
    this.sql.run(
      `INSERT INTO models (name, number, config, updated_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at`,
      m.name,
      m.number,
      m.config,
      m.updated_at,
    );
  }

  putToken(t: TokenRow): void {
    this.sql.run(
      "INSERT INTO agent_tokens (id, pool, models, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
      t.id,
      t.pool,
      t.models,
      t.created_at,
      t.expires_at,
    );
  }

  token(id: string): TokenRow | undefined {
    return one<TokenRow>(this.sql, "SELECT * FROM agent_tokens WHERE id = ?", id);
  }

  revokeToken(id: string, now: number): number {
    return this.sql.run("UPDATE agent_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", now, id);
  }

  putAccount(id: string, name: string, tier: string, now: number): void {
    this.sql.run(
      `INSERT INTO accounts (id, name, tier, created_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET name = excluded.name, tier = excluded.tier`,
      id,
      name,
      tier,
      now,
    );
  }

  putAgent(a: { agent_id: string; token_id: string; pool: string; name: string }, now: number): void {
    this.sql.run(
      `INSERT INTO agents (agent_id, token_id, pool, name, seen_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (agent_id) DO UPDATE SET token_id = excluded.token_id, pool = excluded.pool, name = excluded.name,
         seen_at = excluded.seen_at`,
      a.agent_id,
      a.token_id,
      a.pool,
      a.name,
      now,
    );
  }

  /** The token an agent id is bound to, when it is. */
  agentToken(agentId: string): string | undefined {
    return one<{ token_id: string }>(this.sql, "SELECT token_id FROM agents WHERE agent_id = ?", agentId)?.token_id;
  }

  /** Binds an agent id to a token (its name stays until the agent says hello). */
  bindAgent(agentId: string, tokenId: string, pool: string, now: number): void {
    this.sql.run(
      `INSERT INTO agents (agent_id, token_id, pool, name, seen_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (agent_id) DO UPDATE SET token_id = excluded.token_id, pool = excluded.pool, seen_at = excluded.seen_at`,
      agentId,
      tokenId,
      pool,
      agentId,
      now,
    );
  }

  deleteAgent(agentId: string): void {
    this.sql.run("DELETE FROM agents WHERE agent_id = ?", agentId);
    this.sql.run("DELETE FROM agent_versions WHERE agent_id = ?", agentId);
  }

  agents(): { agent_id: string; token_id: string; pool: string; name: string; seen_at: number }[] {
    return this.sql.all("SELECT * FROM agents ORDER BY seen_at") as {
      agent_id: string;
      token_id: string;
      pool: string;
      name: string;
      seen_at: number;
    }[];
  }

  agentsOfToken(tokenId: string): string[] {
    return this.sql
      .all<{ agent_id: string }>("SELECT agent_id FROM agents WHERE token_id = ?", tokenId)
      .map((r) => r.agent_id);
  }

  // ---- rollouts ----

  /** Adds a history entry; answers its id. */
  addRollout(e: {
    applied_at: number;
    by: string;
    kind: "apply" | "undo";
    models: Record<string, ModelRollout>;
    source: string | null;
  }): number {
    this.sql.run(
      "INSERT INTO rollouts (applied_at, by, kind, models, source) VALUES (?, ?, ?, ?, ?)",
      e.applied_at,
      e.by,
      e.kind,
      JSON.stringify(e.models),
      e.source,
    );
    const id = one<{ id: number }>(this.sql, "SELECT last_insert_rowid() AS id")?.id ?? 0;
    for (const model of Object.keys(e.models)) {
      this.sql.run("INSERT INTO rollout_models (model, rollout_id) VALUES (?, ?)", model, id);
    }
    return id;
  }

  /** The history, newest first, at most `limit` entries. */
  rollouts(limit: number): RolloutRow[] {
    return this.sql.all<RolloutRow>("SELECT * FROM rollouts ORDER BY id DESC LIMIT ?", limit);
  }

  /** The newest `limit` history entries naming a model, newest first. */
  rolloutsOf(model: string, limit: number): RolloutRow[] {
    return this.sql.all<RolloutRow>(
      `SELECT r.* FROM rollout_models m JOIN rollouts r ON r.id = m.rollout_id
       WHERE m.model = ? ORDER BY m.rollout_id DESC LIMIT ?`,
      model,
      limit,
    );
  }

  desired(model: string): ModelDesired | undefined {
    const row = one<{ state: string }>(this.sql, "SELECT state FROM desired WHERE model = ?", model);
    return row ? (JSON.parse(row.state) as ModelDesired) : undefined;
  }

  /** Records a purge (again: its time is now). */
  purge(row: PurgeRow): void {
    this.sql.run(
      "INSERT INTO purges (model, version, at, by) VALUES (?, ?, ?, ?) ON CONFLICT (model, version) DO UPDATE SET at = excluded.at, by = excluded.by",
      row.model,
      row.version,
      row.at,
      row.by,
    );
  }

  /** The latest purges, newest first. */
  purges(limit: number): PurgeRow[] {
    return this.sql.all<PurgeRow>(
      "SELECT model, version, at, by FROM purges ORDER BY at DESC, model, version LIMIT ?",
      limit,
    );
  }

  allDesired(): ModelDesired[] {
    return this.sql
      .all<{ state: string }>("SELECT state FROM desired ORDER BY model")
      .map((r) => JSON.parse(r.state) as ModelDesired);
  }

  /**
   * Sets a model's desired versions: the windows of versions no longer desired go, those of
   * versions newly desired start empty now, and those of versions still desired keep counting.
   */
  setDesired(d: ModelDesired, versions: readonly string[], now: number): void {
    this.sql.run(
      "INSERT INTO desired (model, state) VALUES (?, ?) ON CONFLICT (model) DO UPDATE SET state = excluded.state",
      d.model,
      JSON.stringify(d),
    );
    const held = this.windows(d.model).map((w) => w.version);
    for (const v of held) {
      if (versions.includes(v)) continue;
      this.sql.run("DELETE FROM version_windows WHERE model = ? AND version = ?", d.model, v);
      this.sql.run("DELETE FROM load_failures WHERE model = ? AND version = ?", d.model, v);
    }
    for (const v of versions) {
      this.sql.run(
        "INSERT OR IGNORE INTO version_windows (model, version, jobs, failed, since) VALUES (?, ?, 0, 0, ?)",
        d.model,
        v,
        now,
      );
    }
  }

  windows(model: string): { version: string; jobs: number; failed: number; since: number }[] {
    return this.sql.all("SELECT version, jobs, failed, since FROM version_windows WHERE model = ?", model) as {
      version: string;
      jobs: number;
      failed: number;
      since: number;
    }[];
  }

  window(model: string, version: string): { jobs: number; failed: number } | undefined {
    return one<{ jobs: number; failed: number }>(
      this.sql,
      "SELECT jobs, failed FROM version_windows WHERE model = ? AND version = ?",
      model,
      version,
    );
  }

  /** Adds to a desired version's figures; answers whether it has a window (is desired). */
  addFigures(model: string, version: string, jobs: number, failed: number): boolean {
    return (
      this.sql.run(
        "UPDATE version_windows SET jobs = jobs + ?, failed = failed + ? WHERE model = ? AND version = ?",
        jobs,
        failed,
        model,
        version,
      ) > 0
    );
  }

  /**
   * Notes that an agent failed to load a desired version; answers whether this is the first
   * time in the version's window (each agent's failed load counts once, however often it tries).
   */
  noteLoadFailure(model: string, version: string, agentId: string): boolean {
    if (!this.window(model, version)) return false;
    return (
      this.sql.run(
        "INSERT OR IGNORE INTO load_failures (model, version, agent_id) VALUES (?, ?, ?)",
        model,
        version,
        agentId,
      ) > 0
    );
  }

  addRevert(r: {
    model: string;
    at: number;
    version: string;
    reason: RevertReason;
    jobs: number;
    failed: number;
  }): void {
    this.sql.run(
      "INSERT INTO reverts (model, at, version, reason, jobs, failed) VALUES (?, ?, ?, ?, ?, ?)",
      r.model,
      r.at,
      r.version,
      r.reason,
      r.jobs,
      r.failed,
    );
  }

  /** A model's reverts, newest first. */
  reverts(model: string, limit: number): RevertRow[] {
    return this.sql.all<RevertRow>("SELECT * FROM reverts WHERE model = ? ORDER BY id DESC LIMIT ?", model, limit);
  }

  /** What an agent last reported of its versions. */
  agentVersions(agentId: string): AgentVersionRow[] {
    return this.sql.all("SELECT * FROM agent_versions WHERE agent_id = ?", agentId) as unknown as AgentVersionRow[];
  }

  /** What the agents report of a model's versions, by agent. */
  modelAgentVersions(model: string): AgentVersionRow[] {
    return this.sql.all(
      "SELECT * FROM agent_versions WHERE model = ? ORDER BY agent_id, version",
      model,
    ) as unknown as AgentVersionRow[];
  }

  /** The states a model's agents report for one version. */
  versionStates(model: string, version: string): AgentVersionRow["state"][] {
    return this.sql
      .all<{ state: string }>("SELECT state FROM agent_versions WHERE model = ? AND version = ?", model, version)
      .map((r) => r.state as AgentVersionRow["state"]);
  }

  /** Replaces what an agent reports of its versions. */
  setAgentVersions(agentId: string, rows: readonly Omit<AgentVersionRow, "agent_id">[]): void {
    this.sql.run("DELETE FROM agent_versions WHERE agent_id = ?", agentId);
    for (const r of rows) {
      this.sql.run(
        "INSERT OR REPLACE INTO agent_versions (agent_id, model, version, state, message) VALUES (?, ?, ?, ?, ?)",
        agentId,
        r.model,
        r.version,
        r.state,
        r.message,
      );
    }
  }

  /** The agents whose token allows a model: those to tell when its desired versions change. */
  agentsOfModel(model: string): string[] {
    return this.sql
      .all<{ agent_id: string }>(
        `SELECT a.agent_id FROM agents a JOIN agent_tokens t ON t.id = a.token_id
         WHERE EXISTS (SELECT 1 FROM json_each(t.models) WHERE value = ?)`,
        model,
      )
      .map((r) => r.agent_id);
  }

  accounts(): { id: string; name: string; tier: string; created_at: number }[] {
    return this.sql.all("SELECT * FROM accounts ORDER BY created_at") as {
      id: string;
      name: string;
      tier: string;
      created_at: number;
    }[];
  }
}
