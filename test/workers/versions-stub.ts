/**
 * Test-only: a stand-in for the model repository's actor on the `VERSIONS` namespace (one per
 * model name), which the rollout suites seed with ready versions. It answers `record` as the
 * registry asks it (mesh/registry/versions.ts): a ready version's record, or null.
 */
import { DurableObject } from "cloudflare:workers";
import type { VersionRecord } from "../../shared/repository.ts";

export class VersionsActor extends DurableObject<Env> {
  /** Stores a version's record as the repository keeps it (`pending` until every piece is stored). */
  async seed(record: VersionRecord): Promise<void> {
    await this.ctx.storage.put(`version:${record.manifest.version}`, record);
  }

  async record(version: string): Promise<VersionRecord | null> {
    const held = await this.ctx.storage.get<VersionRecord>(`version:${version}`);
    return held?.state === "ready" ? held : null;
  }
}
