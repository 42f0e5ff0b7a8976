/**
 * Submit → run accounting for the dispatch benchmarks: which jobs each accepted submit created
 * and when that submit was due, joined by job id with when a runner started and ended each job
 * ({@link RunLog}), all on this process's `performance.now()` clock.
 */
import type { OnAnswer, Shot } from "./load.ts";
import { waitFor, type RunLog } from "./fleet.ts";

/**
 * The submit requests of the jobs API for `model` with API key `key`: one job, or a batch of
 * `batchSize` (POST /v1/models/{model}/jobs and /jobs/batch); the i-th request's prompts differ.
 */
export function jobShots(
  model: string,
  key: string,
  batchSize = 10,
): { single: (i: number) => Shot; batch: (i: number) => Shot } {
  const headers = { authorization: `Bearer ${key}`, "content-type": "application/json" };
  const path = `/v1/models/${model}/jobs`;
  return {
    single: (i) => ({
      method: "POST",
      path,
      headers,
      body: JSON.stringify({ input: { prompt: `dispatch ${i}` } }),
      jobs: 1,
    }),
    batch: (i) => ({
      method: "POST",
      path: `${path}/batch`,
      headers,
      body: JSON.stringify({
        jobs: Array.from({ length: batchSize }, (_, k) => ({ input: { prompt: `dispatch ${i}.${k}` } })),
      }),
      jobs: batchSize,
    }),
  };
}

/** The jobs of accepted submits: pass {@link SubmitTracker.onAnswer} to a load generator. */
export class SubmitTracker {
  /** Job id → when its submit was due (open loop) or sent (closed loop). */
  readonly dueById = new Map<string, number>();
  /** Job id → when its submit's 202 arrived. */
  readonly answeredById = new Map<string, number>();

  /** Reads a single submit's `{id}` or a batch's `{jobs: [{ok, id}]}`. */
  readonly onAnswer: OnAnswer = (answer, dueAt, answeredAt) => {
    const a = answer as { id?: string; jobs?: { ok: boolean; id?: string }[] };
    const ids = a.jobs ? a.jobs.flatMap((j) => (j.ok && j.id ? [j.id] : [])) : a.id ? [a.id] : [];
    for (const id of ids) {
      this.dueById.set(id, dueAt);
      this.answeredById.set(id, answeredAt);
    }
  };

  get accepted(): number {
    return this.dueById.size;
  }
}

/**
 * A gate for a closed loop ({@link closedLoop}'s `gate`): it holds every client while `limit`
 * accepted jobs wait unstarted, until `until` (performance.now()), so a saturating load keeps a
 * bounded backlog. Counts the starts `log` records from now on.
 */
export function backlogGate(tracker: SubmitTracker, log: RunLog, limit: number, until: number): () => Promise<void> {
  const started0 = log.starts.size;
  const open = (): boolean => tracker.accepted - (log.starts.size - started0) < limit;
  let waiting: Promise<void> | undefined;
  return () => {
    if (open()) return Promise.resolve();
    waiting ??= waitFor(open, Math.max(0, until - performance.now())).then(() => {
      waiting = undefined;
    });
    return waiting;
  };
}

/** Waits until every tracked job's run has ended (marks from index `from` on); answers whether. */
export async function waitForRuns(
  tracker: SubmitTracker,
  log: RunLog,
  from: number,
  timeoutMs: number,
): Promise<boolean> {
  const pending = new Set(tracker.dueById.keys());
  let seen = from;
  return waitFor(() => {
    for (; seen < log.marks.length; seen++) pending.delete((log.marks[seen] as RunLog["marks"][number]).jobId);
    return pending.size === 0;
  }, timeoutMs);
}

/** Tracked jobs joined with their runs. */
export interface Runs {
  /** Run start − submit due (ms), one per started job. */
  latencies: number[];
  /** Accepted jobs whose run never started. */
  neverStarted: number;
  /** Runs that started before their submit's 202 reached the client. */
  startedBeforeAnswer: number;
  /** Tracked jobs whose run ended. */
  ended: number;
  /** Ended runs over the time from `t0` to the last end (jobs/s); 0 when none ended. */
  jobsPerS: number;
}

/** Joins a tracker with the runs `log` recorded (ends from index `from` on), counted from `t0`. */
export function joinRuns(tracker: SubmitTracker, log: RunLog, from: number, t0: number): Runs {
  const latencies: number[] = [];
  let neverStarted = 0;
  let startedBeforeAnswer = 0;
  for (const [id, due] of tracker.dueById) {
    const start = log.starts.get(id);
    if (start === undefined) {
      neverStarted++;
      continue;
    }
    latencies.push(start - due);
    if (start < (tracker.answeredById.get(id) as number)) startedBeforeAnswer++;
  }
  let ended = 0;
  let lastEnd = t0;
  for (const m of log.marks.slice(from)) {
    if (!tracker.dueById.has(m.jobId)) continue;
    ended++;
    lastEnd = Math.max(lastEnd, m.end);
  }
  return {
    latencies,
    neverStarted,
    startedBeforeAnswer,
    ended,
    jobsPerS: ended > 0 ? ended / ((lastEnd - t0) / 1000) : 0,
  };
}
