/**
 * What an agent actor passes on to job actors: per job, in order, one call at a time. A progress
 * still waiting behind a call in flight is replaced by a newer one (the latest wins), so a job
 * actor that falls behind gets the newest progress, not a backlog of stale ones; previews, logs
 * and the rest are never replaced. A job's queue is bounded: past {@link MAX_QUEUED}, new
 * messages are dropped and counted.
 *
 * Called by AgentFrames (mesh/agent/frames.ts).
 */

/** Messages waiting per job at most. */
export const MAX_QUEUED = 256;

export type RelayKind = "progress" | "other";

interface Item {
  kind: RelayKind;
  call: () => Promise<unknown>;
}

interface Lane {
  busy: boolean;
  queue: Item[];
}

export class Relay {
  private readonly lanes = new Map<string, Lane>();
  private readonly keepAlive: (p: Promise<unknown>) => void;
  /** Progress replaced by a newer one before it went. */
  replaced = 0;
  /** Messages dropped on a full queue. */
  dropped = 0;

  /** `keepAlive` holds the actor up while a job's queue drains (the context's waitUntil). */
  constructor(keepAlive: (p: Promise<unknown>) => void) {
    this.keepAlive = keepAlive;
  }

  /** Queues `call` for `key`'s job; it runs after the job's earlier calls have ended. */
  send(key: string, kind: RelayKind, call: () => Promise<unknown>): void {
    let lane = this.lanes.get(key);
    if (!lane) {
      lane = { busy: false, queue: [] };
      this.lanes.set(key, lane);
    }
    if (kind === "progress") {
      const before = lane.queue.length;
      lane.queue = lane.queue.filter((i) => i.kind !== "progress");
      this.replaced += before - lane.queue.length;
    }
    if (lane.queue.length >= MAX_QUEUED) {
      this.dropped++;
      return;
    }
    lane.queue.push({ kind, call });
    if (!lane.busy) this.keepAlive(this.drain(key, lane));
  }

  /** Messages waiting for a job (not counting the one in flight). */
  waiting(key: string): number {
    return this.lanes.get(key)?.queue.length ?? 0;
  }

  private async drain(key: string, lane: Lane): Promise<void> {
    lane.busy = true;
    for (let item = lane.queue.shift(); item; item = lane.queue.shift()) {
      try {
        await item.call();
      } catch {
        // The job actor is gone or failed: what it missed is not retried (the next progress
        // carries the state, and subscribers resync from the scheduler).
      }
    }
    lane.busy = false;
    if (this.lanes.get(key) === lane) this.lanes.delete(key);
  }
}
