/**
 * VersionsActor: one per model (named by the model's name), holding its versions: each push's
 * manifest and file list, its digest, whether it is `pending` or `ready`, and who pushed it. The
 * pieces themselves live in R2 (the WEIGHTS bucket, `pieces/<sha256>`), stored by the edge
 * (edge/routes/versions.ts); this actor asks the bucket which of a version's pieces are there.
 * Called by the edge's version routes; other actors may call {@link VersionsActor.record} and
 * {@link VersionsActor.hasPiece}.
 *
 * Its tables are made by the first push of the model, never by a read: an actor asked about a
 * model, version or piece it does not hold answers "not found" and writes nothing. The actor
 * named {@link VERSION_INDEX} (not a model name) is the directory of models that have versions.
 *
 * Awaits on R2 let other calls in (only storage calls hold the input gate), so every decision
 * that reads and writes the tables is made again after the last await, in one synchronous step.
 */
import { DurableObject } from "cloudflare:workers";
import pMap from "p-map";
import { fail, type Failure } from "../shared/errors.ts";
import {
  piecesOf,
  versionDigest,
  type VersionPush,
  type VersionRecord,
  type VersionSummary,
} from "../shared/repository.ts";
import { actor } from "./remote.ts";
import { durableSql } from "./sql/durable.ts";
import { migrate, migrated } from "./sql/sql.ts";
import { pieceSizes, pushProblem, storedSizeProblem, totals } from "./versions/logic.ts";
import { MIGRATIONS, VersionsStore, type PieceRow, type VersionRow } from "./versions/store.ts";

/** The name of the actor that lists the models with versions; model names start with a-z or 0-9. */
export const VERSION_INDEX = "_index";

/** The R2 key of a piece. */
export function pieceKey(sha256: string): string {
  return `pieces/${sha256}`;
}

/** R2 lookups in flight at once when the actor checks which pieces the bucket has. */
const LOOKUPS_AT_ONCE = 32;

export type PushOutcome = { ok: true; created: boolean; version: VersionRecord; missing: string[] } | Failure;

export type CommitOutcome = { ok: true; version: VersionRecord } | Failure;

function recordOf(row: VersionRow): VersionRecord {
  const push = JSON.parse(row.push) as VersionPush;
  return {
    ...push,
    digest: row.digest,
    state: row.state,
    bytes: row.bytes,
    created_at: new Date(row.created_at).toISOString(),
    created_by: row.created_by,
  };
}

const conflict = (version: string, row: VersionRow): Failure =>
  fail(
    "version_conflict",
    `version ${version} exists (${row.state}, digest ${row.digest}) with other content; versions are immutable: push this as a new version`,
  );

export class VersionsActor extends DurableObject<Env> {
  /** Absent until the model's first push. */
  private store: VersionsStore | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    void ctx.blockConcurrencyWhile(async () => {
      const sql = durableSql(ctx.storage.sql);
      // Only an actor that has storage gets its pending migrations here.
      if (migrated(sql)) this.store = this.open();
    });
  }

  private open(): VersionsStore {
    const sql = durableSql(this.ctx.storage.sql);
    migrate(sql, MIGRATIONS);
    return new VersionsStore(sql);
  }

  /**
   * Which of `pieces` the bucket holds, with their stored sizes; the first whose stored size is
   * not the one its place implies is a problem (the file list cannot be assembled from it).
   */
  private async lookup(pieces: readonly PieceRow[]): Promise<{ found: PieceRow[]; problem?: string }> {
    const heads = await pMap(pieces, (p) => this.env.WEIGHTS.head(pieceKey(p.sha256)), {
      concurrency: LOOKUPS_AT_ONCE,
    });
    const found: PieceRow[] = [];
    for (const [i, head] of heads.entries()) {
      const p = pieces[i] as PieceRow;
      if (!head) continue;
      const problem = storedSizeProblem(p.sha256, head.size, p.size);
      if (problem) return { found, problem };
      found.push({ sha256: p.sha256, size: head.size });
    }
    return { found };
  }

  /**
   * The first step of a push: records the version (pending) unless it exists, and answers the
   * pieces the bucket still lacks. The same model and version with another digest is refused.
   */
  async push(model: string, push: VersionPush, by: string): Promise<PushOutcome> {
    const problem = pushProblem(model, push);
    if (problem) return fail("invalid_body", `body.${problem}`);
    const name = push.manifest.version;
    const digest = await versionDigest(push);
    const held = this.store?.version(name);
    if (held && held.digest !== digest) return conflict(name, held);
    const sized = pieceSizes(push);
    if (!sized.ok) return fail("invalid_body", `body.${sized.problem}`);
    const unseen = [...sized.sizes]
      .filter(([sha]) => !this.store?.pieceKnown(sha))
      .map(([sha256, size]) => ({ sha256, size }));
    const { found, problem: stored } = await this.lookup(unseen);
    if (stored) return fail("invalid_body", `body.files: ${stored}`);
    // The directory first: a model with versions is always listed.
    if (!held) await actor<VersionsActor>(this.env.VERSIONS, VERSION_INDEX).noteModel(model);
    // Decided again after the awaits, which let other calls in.
    this.store ??= this.open();
    const now = this.store.version(name);
    if (now && now.digest !== digest) return conflict(name, now);
    if (!now) {
      this.store.addVersion(
        { version: name, digest, ...totals(push), push: JSON.stringify(push), created_at: Date.now(), created_by: by },
        sized.sizes,
      );
    }
    this.store.notePieces(found);
    const unseenNow = new Set(this.store.unseenPieces(name).map((p) => p.sha256));
    const row = this.store.version(name) as VersionRow;
    return {
      ok: true,
      created: !now,
      version: recordOf(row),
      missing: piecesOf(push.files).filter((sha) => unseenNow.has(sha)),
    };
  }

  /** Makes a version ready once every piece is in the bucket; a ready version answers as it is. */
  async commit(version: string): Promise<CommitOutcome> {
    const row = this.store?.version(version);
    if (!this.store || !row) return fail("version_not_found", `no version ${version} of this model`);
    if (row.state === "ready") return { ok: true, version: recordOf(row) };
    const { found, problem } = await this.lookup(this.store.unseenPieces(version));
    if (problem) return fail("conflict", `${problem}; this version can never be ready: push it as a new version`);
    this.store.notePieces(found);
    const missing = this.store.unseenPieces(version).length;
    if (missing > 0) {
      return fail(
        "pieces_missing",
        `${missing} of version ${version}'s ${row.pieces} pieces are not in the store yet; upload them (PUT /v1/admin/pieces/{sha256}) and commit again`,
      );
    }
    const now = this.store.version(version) as VersionRow;
    if (now.state !== "ready") this.store.markReady(version, Date.now());
    return { ok: true, version: recordOf(this.store.version(version) as VersionRow) };
  }

  /** A version in either state, or null. */
  async version(version: string): Promise<VersionRecord | null> {
    const row = this.store?.version(version);
    return row ? recordOf(row) : null;
  }

  /** A ready version, or null (unknown or still pending): what agents and rollouts may use. */
  async record(version: string): Promise<VersionRecord | null> {
    const row = this.store?.version(version);
    return row?.state === "ready" ? recordOf(row) : null;
  }

  /** Whether `sha256` is a piece of `version` and that version is ready. */
  async hasPiece(version: string, sha256: string): Promise<boolean> {
    return this.store?.hasPiece(version, sha256) ?? false;
  }

  /** The model's versions, newest first, without their file lists. */
  async list(model: string): Promise<VersionSummary[]> {
    return (this.store?.versions() ?? []).map((r) => ({
      model,
      version: r.version,
      digest: r.digest,
      state: r.state,
      bytes: r.bytes,
      pieces: r.pieces,
      created_at: new Date(r.created_at).toISOString(),
      created_by: r.created_by,
    }));
  }

  /** (The index) notes that `model` has versions. */
  async noteModel(model: string): Promise<void> {
    this.store ??= this.open();
    this.store.noteModel(model, Date.now());
  }

  /** (The index) the models that have versions, by name. */
  async models(): Promise<string[]> {
    return this.store?.models() ?? [];
  }
}
