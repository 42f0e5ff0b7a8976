/**
 * Seeded synthetic job traces for scheduling replays: a load profile in multiples of the pool's
 * capacity, a tier mix, many accounts that submit one job, a pool of regular accounts, and a
 * few heavy accounts that flood one tier each. The same seed gives the same trace, job for job,
 * so every policy replays exactly the same arrivals and service times.
 */
import { rng } from "../../shared/rng.ts";

/** A standard normal deviate (Box–Muller) from a uniform source. */
function normal(u: () => number): number {
  const a = Math.max(u(), Number.MIN_VALUE);
  return Math.sqrt(-2 * Math.log(a)) * Math.cos(2 * Math.PI * u());
}

/** Who submitted a job: a one-job account, a regular account, or a heavy (flooding) one. */
export type AccountKind = "single" | "regular" | "heavy";

export interface TraceJob {
  /** Position in arrival order (0-based); job ids are built from it. */
  n: number;
  /** Arrival, ms from the start of the trace. */
  atMs: number;
  tier: string;
  account: string;
  kind: AccountKind;
  /** Service time on an agent, ms. */
  serviceMs: number;
}

/** A heavy account: between `fromH` and `toH` it submits `share` of its tier's arrivals. */
export interface Flood {
  account: string;
  tier: string;
  fromH: number;
  toH: number;
  share: number;
}

export interface TraceSpec {
  seed: number;
  /** Jobs the pool serves at once (agent slots). */
  slots: number;
  /** Mean of the service-time distribution (s) before clipping. */
  meanServiceS: number;
  /** Log-normal shape of service times (sigma of the underlying normal). */
  serviceSigma: number;
  /** Service times are clipped to this range (s). */
  serviceClipS: [number, number];
  /** Offered load in multiples of capacity, piecewise linear over hours; arrivals end at the last point. */
  profile: readonly { h: number; load: number }[];
  /** Share of arrivals per tier (sums to 1), in tier order. */
  mix: readonly { tier: string; share: number }[];
  floods: readonly Flood[];
  /** Regular accounts per tier (each submits many jobs over the day). */
  regularAccounts: number;
  /** Of the arrivals not from a heavy account, the share from regular accounts; the rest are one-job accounts. */
  regularShare: number;
}

/** Jobs per second the pool serves at full use. */
export function capacityPerS(spec: TraceSpec): number {
  return spec.slots / spec.meanServiceS;
}

/** The profile's load (× capacity) at `h` hours; 0 past its end. */
export function loadAt(spec: TraceSpec, h: number): number {
  const p = spec.profile;
  for (let i = 1; i < p.length; i++) {
    const a = p[i - 1]!;
    const b = p[i]!;
    if (h <= b.h) return b.h === a.h ? b.load : a.load + ((b.load - a.load) * (h - a.h)) / (b.h - a.h);
  }
  return 0;
}

/** When arrivals stop (h). */
export function traceEndH(spec: TraceSpec): number {
  return spec.profile.at(-1)?.h ?? 0;
}

/**
 * Generates the trace: a non-homogeneous Poisson process of rate `load(t) × capacity` (by
 * thinning), each arrival marked with a tier by the mix, then with a heavy account (by its
 * share while its flood lasts), a regular account (uniform over the tier's pool) or a new
 * one-job account; each job draws a log-normal service time.
 */
export function makeTrace(spec: TraceSpec): TraceJob[] {
  const u = rng(spec.seed);
  const cap = capacityPerS(spec);
  const peak = Math.max(...spec.profile.map((p) => p.load)) * cap;
  const endS = traceEndH(spec) * 3600;
  const mu = Math.log(spec.meanServiceS) - (spec.serviceSigma * spec.serviceSigma) / 2;
  const [lo, hi] = spec.serviceClipS;
  const jobs: TraceJob[] = [];
  let singles = 0;
  let t = 0;
  for (;;) {
    t += -Math.log(Math.max(u(), Number.MIN_VALUE)) / peak;
    if (t >= endS) break;
    const h = t / 3600;
    if (u() * peak > loadAt(spec, h) * cap) continue;
    let r = u();
    let tier = spec.mix.at(-1)!.tier;
    for (const m of spec.mix) {
      if (r < m.share) {
        tier = m.tier;
        break;
      }
      r -= m.share;
    }
    const flood = spec.floods.find((f) => f.tier === tier && h >= f.fromH && h < f.toH);
    let account: string;
    let kind: AccountKind;
    if (flood && u() < flood.share) {
      account = flood.account;
      kind = "heavy";
    } else if (u() < spec.regularShare) {
      account = `acc_${tier}_reg${String(Math.floor(u() * spec.regularAccounts)).padStart(3, "0")}`;
      kind = "regular";
    } else {
      account = `acc_${tier}_one${String(singles++).padStart(6, "0")}`;
      kind = "single";
    }
    const serviceS = Math.min(hi, Math.max(lo, Math.exp(mu + spec.serviceSigma * normal(u))));
    jobs.push({
      n: jobs.length,
      atMs: Math.round(t * 1000),
      tier,
      account,
      kind,
      serviceMs: Math.round(serviceS * 1000),
    });
  }
  return jobs;
}
