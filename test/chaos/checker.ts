/**
 * The chaos checker: computes the verdict from a run's history alone (history.ts), in the manner
 * of a Jepsen checker. Pure: no I/O, no clock.
 *
 * - **lost**: a logical submit answered with a job id whose job is not among its account's jobs
 *   at the end.
 * - **duplicated**: a job seen with two different visible results, seen terminal and later not,
 *   or with more than one succeeded attempt.
 * - **split**: a logical submit (one Idempotency-Key) that made more than one job.
 * - **stuck**: an accepted job that is not terminal at the end (a lease still held, or queued),
 *   when the drain ended because no open job had moved for its quiet period. Open jobs left when
 *   the drain's cap ended it while they still moved are counted apart (`still_moving`): a slow
 *   machine, not a hang.
 * - **stale accepted**: a job whose visible result came from an epoch that was not its last, from
 *   an attempt a client had already seen end otherwise, or from an epoch at which the edge had
 *   refused something as stale before it accepted the result.
 * - **stale refused**: what agents sent under a lease that was no longer theirs (a resume, a
 *   renewal, a result, progress or log, an upload) and the edge refused, each kind once per
 *   lease (proof the fence was exercised).
 * - **poison**: a job whose input makes every attempt die ends `failed`, with a reason, after
 *   exactly `max_attempts` spent attempts.
 */
import type { HistoryEvent, SeenJob } from "./history.ts";

const TERMINAL = new Set(["succeeded", "failed", "cancelled", "expired"]);
/** Faults that make every attempt of a job fail: it must end failed after max_attempts. */
const EXHAUSTING_FAULTS = new Set(["poison", "crash", "oom", "stall"]);
/** Outcomes of an attempt that spent one of the job's max_attempts. */
const SPENT = new Set(["failed", "lease_expired"]);

export interface TierWait {
  tier: string;
  slo_s: number;
  jobs: number;
  p50_s: number | null;
  p99_s: number | null;
  max_s: number | null;
  /** The largest wait divided by the tier's SLO. */
  max_over_slo: number | null;
  /** Share of the tier's jobs dispatched within its SLO (%). */
  within_slo_pct: number | null;
}

export interface Verdict {
  ok: boolean;
  /** Why the verdict failed, with examples (empty when ok). */
  problems: string[];
  submitted: number;
  accepted: number;
  /** Logical submits never answered with a job (refused, or the client gave up). */
  refused: number;
  lost: number;
  duplicated: number;
  split: number;
  stuck: number;
  /** Jobs still open, and still moving, when the drain's cap ended the run: slow, not stuck. */
  still_moving: number;
  stuck_running: number;
  stuck_queued: number;
  stale_refused: number;
  stale_accepted: number;
  expect_stale: boolean;
  statuses: Record<string, number>;
  failures_by_reason: Record<string, number>;
  /** Leases per job (every attempt record, including leases given back unspent). */
  attempts: { max: number; mean: number; histogram: Record<string, number> };
  /** Attempts that counted against max_attempts (failed, or lease lost), per job. */
  spent: { max: number; mean: number };
  /** Stale refusals by what was refused. */
  stale_refused_by: Record<string, number>;
  /** Leases held by a `kill -9`ed agent: from the kill to the job back in its queue, and to its next start. */
  requeue_after_kill: { leases: number; max_s: number | null; p50_s: number | null; redispatch_max_s: number | null };
  /** Leases held by a stalled, stopped or partitioned agent: from the fault to the job back in its queue. */
  requeue_after_stall: { leases: number; max_s: number | null };
  poison: { jobs: number; as_expected: number };
  idempotency: { triples: number; triples_one_job: number; client_timeouts: number; timeouts_found_once: number };
  waits: TierWait[];
  observations: number;
  faults: Record<string, number>;
}

interface Op {
  op: number;
  account: string;
  tier: string;
  fault: string | null;
  copies: number;
  jobs: Set<string>;
  clientTimeout: boolean;
}

/** Nearest-rank percentile; null for no samples. */
export function percentile(samples: readonly number[], p: number): number | null {
  if (samples.length === 0) return null;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1] as number;
}

function round(v: number | null, digits = 2): number | null {
  if (v === null || !Number.isFinite(v)) return null;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

function bump(map: Record<string, number>, key: string, by = 1): void {
  map[key] = (map[key] ?? 0) + by;
}

/** Up to five examples for a problem line. */
function examples(items: readonly string[]): string {
  return items.slice(0, 5).join(", ") + (items.length > 5 ? `, … (${items.length})` : "");
}

export function check(events: readonly HistoryEvent[]): Verdict {
  const problems: string[] = [];
  const run = events.find((e) => e.type === "run");
  const end = events.find((e) => e.type === "end");
  if (!run) problems.push("the history has no run header");
  if (!end) problems.push("the history has no end: the run did not finish");
  const maxAttempts = run?.max_attempts ?? 0;

  const ops = new Map<number, Op>();
  const opOfJob = new Map<string, number>();
  const seen = new Map<string, { t: number; seen: SeenJob }[]>();
  const listed = new Map<string, { account: string; op: number | null }>();
  const listedAccounts = new Set<string>();
  const kills: { t: number; agent: string }[] = [];
  const stalls: { t: number; agent: string }[] = [];
  const faults: Record<string, number> = {};
  let staleRefused = 0;
  const refusedKeys = new Set<string>();
  const staleBy: Record<string, number> = {};
  /** Per job, the earliest time each epoch was refused as stale. */
  const refusedAt = new Map<string, Map<number, number>>();
  let observations = 0;

  for (const e of events) {
    switch (e.type) {
      case "submit.send": {
        const op = ops.get(e.op) ?? {
          op: e.op,
          account: e.account,
          tier: e.tier,
          fault: e.fault,
          copies: 0,
          jobs: new Set<string>(),
          clientTimeout: false,
        };
        if (e.try === 1) op.copies = Math.max(op.copies, e.copy + 1);
        ops.set(e.op, op);
        break;
      }
      case "submit.ok": {
        ops.get(e.op)?.jobs.add(e.job);
        opOfJob.set(e.job, e.op);
        break;
      }
      case "submit.fail": {
        const op = ops.get(e.op);
        if (op && e.status === 0 && e.code === "timeout") op.clientTimeout = true;
        break;
      }
      case "observe": {
        observations++;
        const list = seen.get(e.job) ?? [];
        list.push({ t: e.t, seen: e.seen });
        seen.set(e.job, list);
        break;
      }
      case "listing": {
        listedAccounts.add(e.account);
        for (const j of e.jobs) listed.set(j.id, { account: e.account, op: j.op });
        break;
      }
      case "fault": {
        bump(faults, e.kind);
        if (e.kind === "kill" && e.agent) kills.push({ t: e.t, agent: e.agent });
        if ((e.kind === "stall" || e.kind === "zombie" || e.kind === "partition") && e.agent)
          stalls.push({ t: e.t, agent: e.agent });
        break;
      }
      case "stale.refused": {
        // An agent repeats a renewal every heartbeat until it drops the lease: count each refusal once.
        const key = `${e.job}@${e.epoch}:${e.what}`;
        if (refusedKeys.has(key)) break;
        refusedKeys.add(key);
        staleRefused++;
        bump(staleBy, e.what);
        const epochs = refusedAt.get(e.job) ?? new Map<number, number>();
        epochs.set(e.epoch, Math.min(epochs.get(e.epoch) ?? e.t, e.t));
        refusedAt.set(e.job, epochs);
        break;
      }
      default:
        break;
    }
  }

  // Logical submits that made more than one job: by the answers, and by the jobs listed at the end.
  const jobsOfOp = new Map<number, Set<string>>();
  for (const [id, op] of ops) jobsOfOp.set(id, new Set(op.jobs));
  for (const [id, l] of listed) {
    if (l.op === null || !ops.has(l.op)) continue;
    jobsOfOp.get(l.op)?.add(id);
  }
  const splitOps = [...jobsOfOp].filter(([, jobs]) => jobs.size > 1).map(([op]) => `op ${op}`);

  const accepted = [...ops.values()].filter((o) => o.jobs.size > 0);
  const lostJobs: string[] = [];
  const stuckRunning: string[] = [];
  const stuckQueued: string[] = [];
  const statuses: Record<string, number> = {};
  const failures: Record<string, number> = {};
  const histogram: Record<string, number> = {};
  const finals = new Map<string, SeenJob>();
  for (const op of accepted) {
    for (const job of op.jobs) {
      if (!listed.has(job) || !listedAccounts.has(op.account)) {
        lostJobs.push(job);
        continue;
      }
      const last = seen.get(job)?.at(-1)?.seen;
      if (!last) {
        lostJobs.push(job);
        continue;
      }
      finals.set(job, last);
      bump(statuses, last.status);
      if (last.status === "running") stuckRunning.push(job);
      else if (!TERMINAL.has(last.status)) stuckQueued.push(job);
      if (last.status === "failed") bump(failures, last.error ?? "unknown");
      bump(histogram, String(last.attempts.length));
    }
  }

  // Two visible results, a terminal job seen live again, or two successes.
  const duplicated: string[] = [];
  const staleAccepted: string[] = [];
  for (const [job, list] of seen) {
    const results = new Set<string>();
    let terminalSeen = false;
    let revived = false;
    let maxEpoch = 0;
    const ended = new Map<number, string>();
    let stale = false;
    for (const { seen: s } of list) {
      for (const a of s.attempts) maxEpoch = Math.max(maxEpoch, a.epoch);
      if (TERMINAL.has(s.status)) {
        terminalSeen = true;
        if (s.result !== null) results.add(s.result);
      } else if (terminalSeen) revived = true;
      const wins = s.attempts.filter((a) => a.outcome === "succeeded");
      if (wins.length > 1) revived = true;
      if (s.status === "succeeded") {
        const win = wins[0];
        const lastEpoch = Math.max(...s.attempts.map((a) => a.epoch));
        if (
          !win ||
          win.epoch !== lastEpoch ||
          win.epoch < maxEpoch ||
          ended.has(win.epoch) ||
          (refusedAt.get(job)?.get(win.epoch) ?? Number.POSITIVE_INFINITY) < (win.ended_at ?? 0) ||
          s.output_epochs.some((ep) => ep !== win.epoch)
        )
          stale = true;
      }
      for (const a of s.attempts) {
        if (a.outcome !== "running" && a.outcome !== "succeeded" && !ended.has(a.epoch)) ended.set(a.epoch, a.outcome);
      }
    }
    if (results.size > 1 || revived) duplicated.push(job);
    if (stale) staleAccepted.push(job);
  }

  // How long a dead agent's leases took to go back to their queues.
  const requeue: number[] = [];
  const redispatch: number[] = [];
  const stallRequeue: number[] = [];
  for (const s of finals.values()) {
    s.attempts.forEach((a, i) => {
      if (a.reason !== "worker_lost" || a.ended_at === null) return;
      const kill = kills.find((k) => k.agent === a.agent && a.started_at <= k.t && a.ended_at! >= k.t);
      if (kill) {
        requeue.push((a.ended_at! - kill.t) / 1000);
        const next = s.attempts[i + 1];
        if (next) redispatch.push((next.started_at - kill.t) / 1000);
        return;
      }
      const stall = stalls.find((k) => k.agent === a.agent && a.started_at <= k.t && a.ended_at! >= k.t);
      if (stall) stallRequeue.push((a.ended_at! - stall.t) / 1000);
    });
  }

  // Jobs whose input makes every attempt fail.
  let poisonJobs = 0;
  let poisonOk = 0;
  const poisonBad: string[] = [];
  for (const op of accepted) {
    if (op.fault === null) continue;
    const job = [...op.jobs][0] as string;
    const s = finals.get(job);
    if (!s) continue;
    const spent = s.attempts.filter((a) => SPENT.has(a.outcome)).length;
    const expected = EXHAUSTING_FAULTS.has(op.fault)
      ? s.status === "failed" && s.error !== null && spent === maxAttempts
      : s.status === "failed" && s.error !== null;
    if (op.fault === "poison") poisonJobs++;
    if (expected && op.fault === "poison") poisonOk++;
    if (!expected) poisonBad.push(`${job} (${op.fault}: ${s.status}, ${spent} spent, ${s.error ?? "no reason"})`);
  }

  // Idempotency: three concurrent copies, and clients that gave up waiting and retried.
  const triples = [...ops.values()].filter((o) => o.copies >= 3);
  const timedOut = [...ops.values()].filter((o) => o.clientTimeout && o.jobs.size > 0);

  // Wait from submit to first dispatch, per tier.
  const tiers = run?.tiers ?? [];
  const waitsBy = new Map<string, number[]>();
  for (const s of finals.values()) {
    const first = s.attempts[0];
    if (!first) continue;
    const list = waitsBy.get(s.tier) ?? [];
    list.push((first.started_at - s.created_at) / 1000);
    waitsBy.set(s.tier, list);
  }
  const waits: TierWait[] = tiers
    .filter((t) => waitsBy.has(t.name))
    .map((t) => {
      const w = waitsBy.get(t.name) ?? [];
      const max = w.length === 0 ? null : Math.max(...w);
      return {
        tier: t.name,
        slo_s: t.slo_s,
        jobs: w.length,
        p50_s: round(percentile(w, 50)),
        p99_s: round(percentile(w, 99)),
        max_s: round(max),
        max_over_slo: max === null ? null : round(max / t.slo_s, 3),
        within_slo_pct: w.length === 0 ? null : round((100 * w.filter((x) => x <= t.slo_s).length) / w.length, 1),
      };
    });

  const attemptCounts = [...finals.values()].map((s) => s.attempts.length);
  const spentCounts = [...finals.values()].map((s) => s.attempts.filter((a) => SPENT.has(a.outcome)).length);
  const expectStale = run?.expect_stale ?? false;
  if (lostJobs.length > 0) problems.push(`lost ${lostJobs.length}: ${examples(lostJobs)}`);
  if (duplicated.length > 0) problems.push(`duplicated ${duplicated.length}: ${examples(duplicated)}`);
  if (splitOps.length > 0) problems.push(`split ${splitOps.length}: ${examples(splitOps)}`);
  // Jobs still open when the drain's cap ended it while they moved ran slowly, not stuck: they
  // are reported apart. Open jobs left when nothing moved for the quiet period are stuck.
  const slow = end?.type === "end" && end.drain === "cap" ? [...stuckRunning, ...stuckQueued] : [];
  if (slow.length > 0) {
    stuckRunning.length = 0;
    stuckQueued.length = 0;
  }
  if (stuckRunning.length + stuckQueued.length > 0)
    problems.push(`stuck ${stuckRunning.length + stuckQueued.length}: ${examples([...stuckRunning, ...stuckQueued])}`);
  if (staleAccepted.length > 0) problems.push(`stale accepted ${staleAccepted.length}: ${examples(staleAccepted)}`);
  if (poisonBad.length > 0) problems.push(`fault jobs not failed as expected: ${examples(poisonBad)}`);
  if (expectStale && staleRefused === 0) problems.push("no stale result was refused: the fence was never exercised");

  return {
    ok: problems.length === 0,
    problems,
    submitted: ops.size,
    accepted: accepted.length,
    refused: ops.size - accepted.length,
    lost: lostJobs.length,
    duplicated: duplicated.length,
    split: splitOps.length,
    stuck: stuckRunning.length + stuckQueued.length,
    still_moving: slow.length,
    stuck_running: stuckRunning.length,
    stuck_queued: stuckQueued.length,
    stale_refused: staleRefused,
    stale_accepted: staleAccepted.length,
    expect_stale: expectStale,
    statuses,
    failures_by_reason: failures,
    attempts: {
      max: attemptCounts.length === 0 ? 0 : Math.max(...attemptCounts),
      mean: round(attemptCounts.reduce((x, y) => x + y, 0) / Math.max(1, attemptCounts.length), 3) ?? 0,
      histogram,
    },
    spent: {
      max: spentCounts.length === 0 ? 0 : Math.max(...spentCounts),
      mean: round(spentCounts.reduce((x, y) => x + y, 0) / Math.max(1, spentCounts.length), 3) ?? 0,
    },
    stale_refused_by: staleBy,
    requeue_after_kill: {
      leases: requeue.length,
      max_s: round(requeue.length === 0 ? null : Math.max(...requeue)),
      p50_s: round(percentile(requeue, 50)),
      redispatch_max_s: round(redispatch.length === 0 ? null : Math.max(...redispatch)),
    },
    requeue_after_stall: {
      leases: stallRequeue.length,
      max_s: round(stallRequeue.length === 0 ? null : Math.max(...stallRequeue)),
    },
    poison: { jobs: poisonJobs, as_expected: poisonOk },
    idempotency: {
      triples: triples.length,
      triples_one_job: triples.filter((o) => (jobsOfOp.get(o.op)?.size ?? 0) === 1).length,
      client_timeouts: timedOut.length,
      timeouts_found_once: timedOut.filter((o) => (jobsOfOp.get(o.op)?.size ?? 0) === 1).length,
    },
    waits,
    observations,
    faults,
  };
}

function seconds(v: number | null): string {
  return v === null ? "n/a" : `${v} s`;
}

/** The verdict on one line: `lost 0, duplicated 0, stuck 0, stale refused 17, …`. */
export function verdictLine(v: Verdict): string {
  const waits = v.waits.map((w) => `${w.tier} ${seconds(w.p99_s)}/${w.slo_s} s`).join(" ");
  return [
    `lost ${v.lost}`,
    `duplicated ${v.duplicated}`,
    `stuck ${v.stuck}`,
    ...(v.still_moving > 0 ? [`still moving at the drain cap ${v.still_moving}`] : []),
    `split ${v.split}`,
    `stale accepted ${v.stale_accepted}`,
    `stale refused ${v.stale_refused}`,
    `poison failed ${v.poison.as_expected}/${v.poison.jobs}`,
    `accepted ${v.accepted}/${v.submitted}`,
    `succeeded ${v.statuses.succeeded ?? 0}`,
    `failed ${v.statuses.failed ?? 0}`,
    `attempts spent max ${v.spent.max} mean ${v.spent.mean}`,
    `requeue after kill max ${seconds(v.requeue_after_kill.max_s)}`,
    `wait p99/SLO ${waits || "n/a"}`,
  ].join(", ");
}
