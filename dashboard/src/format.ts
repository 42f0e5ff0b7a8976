/**
 * How the dashboard writes numbers and times: every number with its unit, every time relative
 * ("12 s ago") with the absolute one for the hover title.
 */

/** Seconds as "850 ms", "12.4 s", "3 min 5 s", "2 h 10 min". */
export function duration(s: number | null | undefined): string {
  if (s === null || s === undefined || !Number.isFinite(s)) return "—";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

/** How long before `now` `at` was, in words: "just now", "12 s ago", "in 3 min". */
export function relative(at: string | number | null | undefined, now = Date.now()): string {
  if (at === null || at === undefined) return "—";
  const t = typeof at === "number" ? at : Date.parse(at);
  if (!Number.isFinite(t)) return "—";
  const d = (now - t) / 1000;
  if (Math.abs(d) < 1) return "just now";
  const words = duration(Math.abs(d)).replace(/ \d+ (s|min)$/, "");
  return d > 0 ? `${words} ago` : `in ${words}`;
}

/** The absolute time, for a title: ISO 8601 in UTC. */
export function absolute(at: string | number | null | undefined): string {
  if (at === null || at === undefined) return "";
  const t = typeof at === "number" ? at : Date.parse(at);
  return Number.isFinite(t) ? new Date(t).toISOString() : "";
}

/** A rate with its unit: "3.2 jobs/s", or per minute below one a second: "12 jobs/min". */
export function rate(perS: number | null, unit: string): string {
  if (perS === null || !Number.isFinite(perS)) return "—";
  if (perS === 0) return `0 ${unit}/s`;
  if (perS < 1) return `${(perS * 60).toFixed(perS * 60 < 10 ? 1 : 0)} ${unit}/min`;
  return `${perS < 10 ? perS.toFixed(1) : Math.round(perS)} ${unit}/s`;
}

/** A fraction (0–1) as a percentage: "4.2 %". */
export function percent(f: number | null): string {
  if (f === null || !Number.isFinite(f)) return "—";
  return `${(f * 100).toFixed(f < 0.1 ? 1 : 0)} %`;
}

/** Megabytes as "512 MB" or "23.5 GB". */
export function megabytes(mb: number | undefined): string {
  if (mb === undefined) return "—";
  return mb < 1024 ? `${Math.round(mb)} MB` : `${(mb / 1024).toFixed(1)} GB`;
}

/** Bytes as "912 B", "8.9 KB", "3.4 MB". */
export function bytes(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return "—";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return megabytes(n / (1024 * 1024));
}
