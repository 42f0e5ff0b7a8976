/**
 * What an agent is told to serve (`agent.desired`): the desired versions of the models its token
 * allows and the versions of them purged from the fleet's caches, and a short signature of it
 * kept in the socket's attachment, so the actor sends the message again only when it changed (a
 * rollout, an undo, a revert, a purge), however it learns of the change — the registry's push,
 * or the re-check on each heartbeat.
 *
 * Called by AgentFrames; tested in plain Node (frames.test.ts).
 */
import { canonicalJson } from "../../shared/canonical.ts";
import { type DesiredBody, wireDesired, type ModelDesired, type WirePurged } from "../registry/rollouts.ts";

/**
 * What an agent whose token allows `tokenModels` is told: the desired versions of those models,
 * by model name, and the purged versions of those models that are not desired now (a version
 * purged, then named by a rollout again, is not deleted).
 */
export function desiredFor(
  all: readonly ModelDesired[],
  tokenModels: readonly string[],
  purged: readonly WirePurged[] = [],
): DesiredBody {
  const models = all
    .filter((d) => tokenModels.includes(d.model))
    .sort((a, b) => (a.model < b.model ? -1 : a.model > b.model ? 1 : 0))
    .map(wireDesired);
  const wanted = new Set(
    models.flatMap((d) => [d.stable, d.canary].flatMap((w) => (w ? [`${d.model}/${w.version}`] : []))),
  );
  const gone = purged
    .filter((p) => tokenModels.includes(p.model) && !wanted.has(`${p.model}/${p.version}`))
    .map((p) => ({ model: p.model, version: p.version }));
  return gone.length > 0 ? { models, purged: gone } : { models };
}

/**
 * A signature of what an agent was told: 16 hex chars (two 32-bit FNV-1a hashes of the canonical
 * JSON with different offsets), small enough for the attachment's 2 KiB whatever the models.
 */
export function desiredSignature(body: DesiredBody): string {
  const text = canonicalJson(body);
  const fnv = (seed: number): string => {
    let h = seed;
    for (let i = 0; i < text.length; i++) {
      h ^= text.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
    return (h >>> 0).toString(16).padStart(8, "0");
  };
  return fnv(0x811c9dc5) + fnv(0x01234567);
}
