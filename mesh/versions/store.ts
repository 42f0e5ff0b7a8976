/**
 * All SQL of the VersionsActor (mesh/versions-actor.ts): a model's versions, the pieces each
 * names, and the pieces this actor has seen in the piece store. The hot query is an agent's
 * piece fetch (`hasPiece`), one seek on `version_pieces`' primary key; listings read
 * `versions_created` newest first (both proved by `EXPLAIN QUERY PLAN` in store.test.ts).
 *
 * The actor named `_index` (not a model name) uses only `models`: the directory of models that
 * have versions, so a listing across models knows which actors to ask.
 */
import { one, type Sql, type SqlValue } from "../sql/sql.ts";

export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE versions (
     version TEXT PRIMARY KEY,
     digest TEXT NOT NULL,
     state TEXT NOT NULL,
     bytes INTEGER NOT NULL,
     pieces INTEGER NOT NULL,
     push TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     created_by TEXT NOT NULL,
     ready_at INTEGER
   ) WITHOUT ROWID;
   CREATE INDEX versions_created ON versions (created_at, version);
   CREATE TABLE version_pieces (
     version TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL, PRIMARY KEY (version, sha256)
   ) WITHOUT ROWID;
   CREATE TABLE pieces (sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL) WITHOUT ROWID;
   CREATE TABLE models (name TEXT PRIMARY KEY, first_at INTEGER NOT NULL) WITHOUT ROWID`,
];

/** Every version, newest first, without its push (a file list can be large). */
export const LIST_QUERY = `SELECT version, digest, state, bytes, pieces, created_at, created_by, ready_at
  FROM versions ORDER BY created_at DESC, version DESC`;

/** A version's pieces this actor has not seen in the piece store (`?` the version). */
export const UNSEEN_QUERY = `SELECT vp.sha256, vp.size FROM version_pieces vp
  WHERE vp.version = ? AND NOT EXISTS (SELECT 1 FROM pieces p WHERE p.sha256 = vp.sha256)`;

/** Whether a piece is one of a ready version's (`?` the version, then the sha256): an agent's fetch. */
export const HAS_PIECE_QUERY = `SELECT 1 AS x FROM version_pieces vp JOIN versions v ON v.version = vp.version
  WHERE vp.version = ? AND vp.sha256 = ? AND v.state = 'ready'`;

/** A version as listings read it (without its push). */
export interface VersionHead {
  [k: string]: SqlValue;
  version: string;
  digest: string;
  state: "pending" | "ready";
  bytes: number;
  pieces: number;
  created_at: number;
  created_by: string;
  ready_at: number | null;
}

export interface VersionRow extends VersionHead {
  /** The push as sent (JSON of the parsed `VersionPush`). */
  push: string;
}

/** What a push adds: a version, pending. */
export interface NewVersion {
  version: string;
  digest: string;
  bytes: number;
  pieces: number;
  push: string;
  created_at: number;
  created_by: string;
}

export interface PieceRow {
  [k: string]: SqlValue;
  sha256: string;
  size: number;
}

export class VersionsStore {
  readonly sql: Sql;

  constructor(sql: Sql) {
    this.sql = sql;
  }

  version(version: string): VersionRow | undefined {
    return one<VersionRow>(this.sql, "SELECT * FROM versions WHERE version = ?", version);
  }

  /** Every version, newest first, without its push (the file list can be large). */
  versions(): VersionHead[] {
    return this.sql.all<VersionHead>(LIST_QUERY);
  }

  /** Adds a pending version and the pieces it names, each with the size its place implies. */
  addVersion(row: NewVersion, pieces: ReadonlyMap<string, number>): void {
    this.sql.run(
      `INSERT INTO versions (version, digest, state, bytes, pieces, push, created_at, created_by)
       VALUES (?, ?, 'pending', ?, ?, ?, ?, ?)`,
      row.version,
      row.digest,
      row.bytes,
      row.pieces,
      row.push,
      row.created_at,
      row.created_by,
    );
    for (const [sha256, size] of pieces) {
      this.sql.run("INSERT INTO version_pieces (version, sha256, size) VALUES (?, ?, ?)", row.version, sha256, size);
    }
  }

  markReady(version: string, now: number): void {
    this.sql.run("UPDATE versions SET state = 'ready', ready_at = ? WHERE version = ?", now, version);
  }

  /** Whether this actor has seen `sha256` in the piece store. */
  pieceKnown(sha256: string): boolean {
    return one(this.sql, "SELECT 1 AS x FROM pieces WHERE sha256 = ?", sha256) !== undefined;
  }

  /** Records pieces seen in the piece store. */
  notePieces(pieces: readonly PieceRow[]): void {
    for (const p of pieces) {
      this.sql.run("INSERT INTO pieces (sha256, size) VALUES (?, ?) ON CONFLICT DO NOTHING", p.sha256, p.size);
    }
  }

  /** A version's pieces this actor has not seen in the piece store, with the sizes they must have. */
  unseenPieces(version: string): PieceRow[] {
    return this.sql.all<PieceRow>(UNSEEN_QUERY, version);
  }

  /** Whether `sha256` is a piece of `version` and that version is ready. */
  hasPiece(version: string, sha256: string): boolean {
    return one(this.sql, HAS_PIECE_QUERY, version, sha256) !== undefined;
  }

  /** The index's directory: notes that `name` has versions. */
  noteModel(name: string, now: number): void {
    this.sql.run("INSERT INTO models (name, first_at) VALUES (?, ?) ON CONFLICT DO NOTHING", name, now);
  }

  models(): string[] {
    return this.sql.all<{ name: string }>("SELECT name FROM models ORDER BY name").map((r) => r.name);
  }
}
