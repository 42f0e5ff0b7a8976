/**
 * All SQL of the registry actor: models (with the stable number written into job ids), the
 * tier table, agent tokens (for revocation) and the account directory for admins.
 */
import { getMeta, one, setMeta, type Sql, type SqlValue } from "../sql/sql.ts";

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
];

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

  accounts(): { id: string; name: string; tier: string; created_at: number }[] {
    return this.sql.all("SELECT * FROM accounts ORDER BY created_at") as {
      id: string;
      name: string;
      tier: string;
      created_at: number;
    }[];
  }
}
