/**
 * A job's events as the inspector lists them, from what its view records: created, each
 * attempt's start on its agent and version and its end, and how the job ended. Newest last.
 */
import type { AdminJobView } from "../../shared/api.ts";

export interface TimelineEvent {
  /** ms since the epoch. */
  at: number;
  what: string;
}

/** The job's events in time order (ties keep the order they happened in). */
export function timeline(job: AdminJobView): TimelineEvent[] {
  const out: TimelineEvent[] = [{ at: Date.parse(job.created_at), what: `created in tier ${job.tier}` }];
  for (const a of job.attempts) {
    const version = a.version ? ` version ${a.version}` : "";
    out.push({ at: Date.parse(a.started_at), what: `attempt ${a.n} leased to ${a.agent} (${a.pool})${version}` });
    if (a.ended_at !== null) {
      const why = a.reason ? `: ${a.reason}` : "";
      out.push({ at: Date.parse(a.ended_at), what: `attempt ${a.n} ${a.outcome}${why}` });
    }
  }
  const finished = job.timings.finished_at;
  if (finished !== null) {
    const error = job.error ? ` (${job.error.code}: ${job.error.message})` : "";
    out.push({ at: Date.parse(finished), what: `job ${job.status}${error}` });
  }
  return out
    .map((e, i) => ({ e, i }))
    .sort((x, y) => x.e.at - y.e.at || x.i - y.i)
    .map(({ e }) => e);
}
