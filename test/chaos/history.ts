/**
 * The chaos run's history: every operation the run did and every answer it saw, one JSON object
 * per line, written as it happens. The checker (checker.ts) reads nothing else, so a verdict can
 * be recomputed from a kept history file.
 */
import { closeSync, openSync, readFileSync, writeSync } from "node:fs";

/** An attempt as a client saw it in a job's view (times in ms since the epoch). */
export interface SeenAttempt {
  epoch: number;
  /** The agent that ran it: in admins' views only (the run's final listing). */
  agent?: string;
  outcome: string;
  reason: string | null;
  started_at: number;
  ended_at: number | null;
}

/** A job as a client saw it. `result` is what the client would act on once the job is terminal. */
export interface SeenJob {
  status: string;
  tier: string;
  /** `metadata.op` of the job: the logical submit it came from. */
  op: number | null;
  created_at: number;
  attempts: SeenAttempt[];
  /**
   * The visible result: for a succeeded job its outputs (key and sha256 of each, sorted), for
   * another terminal job its status and error code; null while the job is not terminal.
   */
  result: string | null;
  /** The epochs named by the output keys (`outputs/<job>/<epoch>/<name>`). */
  output_epochs: number[];
  error: string | null;
}

export type HistoryEvent =
  | {
      t: number;
      type: "run";
      seed: number;
      jobs: number;
      mode: string;
      max_attempts: number;
      tiers: { name: string; slo_s: number }[];
      accounts: { id: string; tier: string }[];
      /** Faults that leave an agent with leases it no longer holds: stale refusals must be seen. */
      expect_stale: boolean;
    }
  | {
      t: number;
      type: "submit.send";
      op: number;
      try: number;
      copy: number;
      account: string;
      tier: string;
      key: string;
      fault: string | null;
      /** The client gives up waiting for this answer after this many ms. */
      timeout_ms: number;
    }
  | { t: number; type: "submit.ok"; op: number; try: number; copy: number; job: string; status: string }
  | {
      t: number;
      type: "submit.fail";
      op: number;
      try: number;
      copy: number;
      /** HTTP status, or 0 when no answer came (refused connection, reset, client timeout). */
      status: number;
      code: string;
      retry: boolean;
    }
  /** The client stopped trying this logical submit without an answer that gave a job. */
  | { t: number; type: "submit.abandoned"; op: number; why: string }
  | { t: number; type: "observe"; via: "get" | "list"; job: string; seen: SeenJob }
  | { t: number; type: "missing"; job: string; status: number }
  | {
      t: number;
      type: "fault";
      kind: "kill" | "start" | "cut" | "partition" | "stall" | "zombie" | "resume" | "edge.stop" | "edge.start";
      agent?: string;
      detail?: string;
    }
  /** The edge refused, as stale, something an agent sent under a lease (`what`: resume, renewal, result or progress, upload). */
  | { t: number; type: "stale.refused"; agent: string; job: string; epoch: number; what: string }
  /** Every job an account holds at the end, by id and `metadata.op`. */
  | { t: number; type: "listing"; account: string; jobs: { id: string; op: number | null }[] }
  | {
      t: number;
      type: "end";
      drained: boolean;
      /**
       * How the drain ended: every accepted job ended; no open job moved for the quiet period
       * (what is left is stuck); or the cap passed while jobs still moved (a slow machine).
       */
      drain?: "all_ended" | "no_progress" | "cap";
      /** The fault plan's window, from the first submit (ms). */
      fault_window_ms: number;
      /** From the first submit until the last one was answered (ms). */
      submit_ms: number;
      duration_ms: number;
    };

/** Appends events to a JSONL file as they happen. */
export class HistoryWriter {
  private readonly fd: number;
  private closed = false;
  readonly path: string;

  constructor(path: string) {
    this.path = path;
    this.fd = openSync(path, "w");
  }

  write(e: HistoryEvent): void {
    if (!this.closed) writeSync(this.fd, JSON.stringify(e) + "\n");
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}

export function readHistory(path: string): HistoryEvent[] {
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as HistoryEvent);
}
