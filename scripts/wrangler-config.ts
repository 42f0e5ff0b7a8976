/**
 * wrangler.toml's environments as `npm run deploy` checks them before wrangler sees them: every
 * environment declares the same bindings as the top level (wrangler inherits none of them into an
 * environment), no two environments share a bucket or a rate-limit namespace, the Durable Object
 * migrations are the same in every environment and alive for exactly the bound classes, and the
 * migration list only ever grows against the versions of wrangler.toml in git history (a shipped
 * migration is never edited or removed: Cloudflare applies each tag once, by name).
 *
 * Pure: the caller reads the files and git history. Called by scripts/deploy.ts.
 */
import { parse } from "smol-toml";
import { z } from "zod";

/** The environments of wrangler.toml: `dev` is its top level (what `npm start` runs). */
export const ENVIRONMENTS = ["dev", "staging", "production"] as const;
export type Environment = (typeof ENVIRONMENTS)[number];

/** The `--env` value wrangler takes for an environment: the top level is the empty name. */
export function wranglerEnv(env: Environment): string {
  return env === "dev" ? "" : env;
}

const Migration = z.looseObject({
  tag: z.string().min(1),
  new_classes: z.array(z.string()).optional(),
  new_sqlite_classes: z.array(z.string()).optional(),
  deleted_classes: z.array(z.string()).optional(),
  renamed_classes: z.array(z.object({ from: z.string(), to: z.string() })).optional(),
  transferred_classes: z.array(z.object({ from: z.string(), from_script: z.string(), to: z.string() })).optional(),
});
export type Migration = z.infer<typeof Migration>;

const Section = z.looseObject({
  name: z.string().optional(),
  durable_objects: z
    .looseObject({ bindings: z.array(z.looseObject({ name: z.string(), class_name: z.string() })).default([]) })
    .optional(),
  r2_buckets: z.array(z.looseObject({ binding: z.string(), bucket_name: z.string() })).optional(),
  ratelimits: z
    .array(
      z.looseObject({
        name: z.string(),
        namespace_id: z.string(),
        simple: z.object({ limit: z.number(), period: z.number() }),
      }),
    )
    .optional(),
  vars: z.record(z.string(), z.unknown()).optional(),
  migrations: z.array(Migration).optional(),
});
type Section = z.infer<typeof Section>;

const Config = Section.extend({ env: z.record(z.string(), Section).optional() });

/** One environment as wrangler resolves it: its own bindings, the migrations it inherits. */
export interface ResolvedEnvironment {
  name: Environment;
  durableObjects: { name: string; class_name: string }[];
  buckets: { binding: string; bucket_name: string }[];
  rateLimits: { name: string; namespace_id: string; limit: number; period: number }[];
  vars: string[];
  migrations: Migration[];
}

/**
 * Parses wrangler.toml and resolves each environment of {@link ENVIRONMENTS} as wrangler does:
 * bindings and vars from the environment's own section only, migrations inherited from the top
 * level unless the environment declares its own. An error value names what is wrong.
 */
export function resolveEnvironments(
  toml: string,
): { ok: true; envs: Map<Environment, ResolvedEnvironment> } | { ok: false; message: string } {
  let raw: unknown;
  try {
    raw = parse(toml);
  } catch (err) {
    return { ok: false, message: `wrangler.toml does not parse: ${(err as Error).message}` };
  }
  const parsed = Config.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { ok: false, message: `wrangler.toml: ${issue?.path.join(".")}: ${issue?.message}` };
  }
  const top = parsed.data;
  const envs = new Map<Environment, ResolvedEnvironment>();
  for (const name of ENVIRONMENTS) {
    const section: Section | undefined = name === "dev" ? top : top.env?.[name];
    if (section === undefined) continue;
    envs.set(name, {
      name,
      durableObjects: (section.durable_objects?.bindings ?? []).map((b) => ({
        name: b.name,
        class_name: b.class_name,
      })),
      buckets: (section.r2_buckets ?? []).map((b) => ({ binding: b.binding, bucket_name: b.bucket_name })),
      rateLimits: (section.ratelimits ?? []).map((r) => ({
        name: r.name,
        namespace_id: r.namespace_id,
        limit: r.simple.limit,
        period: r.simple.period,
      })),
      vars: Object.keys(section.vars ?? {}).sort(),
      migrations: section.migrations ?? top.migrations ?? [],
    });
  }
  return { ok: true, envs };
}

/** The classes alive after applying migrations in order; an error for an impossible step. */
export function liveClasses(
  migrations: readonly Migration[],
): { ok: true; classes: Set<string> } | { ok: false; message: string } {
  const live = new Set<string>();
  for (const m of migrations) {
    for (const c of [...(m.new_classes ?? []), ...(m.new_sqlite_classes ?? [])]) {
      if (live.has(c)) return { ok: false, message: `migration ${m.tag} creates ${c}, which already exists` };
      live.add(c);
    }
    for (const r of [...(m.renamed_classes ?? []), ...(m.transferred_classes ?? [])]) {
      if ("from_script" in r) {
        live.add(r.to);
        continue;
      }
      if (!live.delete(r.from))
        return { ok: false, message: `migration ${m.tag} renames ${r.from}, which does not exist` };
      live.add(r.to);
    }
    for (const c of m.deleted_classes ?? []) {
      if (!live.delete(c)) return { ok: false, message: `migration ${m.tag} deletes ${c}, which does not exist` };
    }
  }
  return { ok: true, classes: live };
}

/** A canonical form of a migration, for comparing two of them. */
function canonical(m: Migration): string {
  const sorted = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(sorted)
      : v !== null && typeof v === "object"
        ? Object.fromEntries(
            Object.entries(v)
              .sort(([a], [b]) => a.localeCompare(b))
              .map(([k, x]) => [k, sorted(x)]),
          )
        : v;
  return JSON.stringify(sorted(m));
}

function describeList<T>(items: readonly T[], key: (t: T) => string): string {
  return items.map(key).sort().join(", ");
}

/**
 * Checks the environments against each other and against the top level. Answers the problems
 * found, each saying what to fix; none means consistent.
 */
export function checkEnvironments(envs: Map<Environment, ResolvedEnvironment>): string[] {
  const problems: string[] = [];
  const top = envs.get("dev");
  if (!top) return ["wrangler.toml has no top level (the dev environment)"];
  for (const name of ENVIRONMENTS) {
    if (!envs.has(name)) problems.push(`wrangler.toml has no [env.${name}] section`);
  }
  const same = <T>(what: string, env: ResolvedEnvironment, a: readonly T[], b: readonly T[], key: (t: T) => string) => {
    const want = describeList(a, key);
    const got = describeList(b, key);
    if (want !== got) {
      problems.push(
        `[env.${env.name}] ${what} are {${got}}, the top level's are {${want}}: wrangler inherits none of them, redeclare each in [env.${env.name}]`,
      );
    }
  };
  for (const env of envs.values()) {
    if (env.name !== "dev") {
      same("Durable Object bindings", env, top.durableObjects, env.durableObjects, (d) => `${d.name}→${d.class_name}`);
      same("R2 bindings", env, top.buckets, env.buckets, (b) => b.binding);
      same("rate limits", env, top.rateLimits, env.rateLimits, (r) => `${r.name} ${r.limit}/${r.period}s`);
      same("vars", env, top.vars, env.vars, (v) => v);
    }
    // Migrations: the same list everywhere, and alive for exactly the bound classes.
    const mine = env.migrations.map(canonical).join("\n");
    if (env.name !== "dev" && mine !== top.migrations.map(canonical).join("\n")) {
      problems.push(
        `[env.${env.name}] has migrations of its own that differ from the top level's (tags ${env.migrations.map((m) => m.tag).join(", ")} against ${top.migrations.map((m) => m.tag).join(", ")}): declare them once, at the top level, and every environment inherits them`,
      );
    }
    const tags = env.migrations.map((m) => m.tag);
    const dup = tags.find((t, i) => tags.indexOf(t) !== i);
    if (dup !== undefined) problems.push(`${env.name}: migration tag ${dup} appears twice`);
    const live = liveClasses(env.migrations);
    if (!live.ok) {
      problems.push(`${env.name}: ${live.message}`);
      continue;
    }
    const bound = new Set(env.durableObjects.map((d) => d.class_name));
    for (const c of bound) {
      if (!live.classes.has(c))
        problems.push(`${env.name}: Durable Object class ${c} is bound but no migration creates it: append one`);
    }
    for (const c of live.classes) {
      if (!bound.has(c))
        problems.push(
          `${env.name}: migrations keep class ${c} alive but no binding names it: bind it, or append a migration that deletes it`,
        );
    }
  }
  // Environments never share what holds their data or counts their traffic.
  const buckets = new Map<string, Environment>();
  const namespaces = new Map<string, Environment>();
  for (const env of envs.values()) {
    for (const b of env.buckets) {
      const other = buckets.get(b.bucket_name);
      if (other !== undefined && other !== env.name) {
        problems.push(`${env.name} and ${other} share the R2 bucket ${b.bucket_name}: give each environment its own`);
      }
      buckets.set(b.bucket_name, env.name);
    }
    for (const r of env.rateLimits) {
      const other = namespaces.get(r.namespace_id);
      if (other !== undefined) {
        problems.push(
          `${env.name} reuses rate-limit namespace_id ${r.namespace_id} (${r.name}) of ${other}: each limit needs its own namespace`,
        );
      }
      namespaces.set(r.namespace_id, env.name);
    }
  }
  return problems;
}

/** One earlier version of wrangler.toml: its commit and text. */
export interface HistoricConfig {
  commit: string;
  toml: string;
}

/**
 * Checks that every environment's migrations extend what each earlier version of wrangler.toml
 * declared for it: the same entries in the same order, with new ones only appended. A version
 * that did not parse, or lacked an environment, is skipped for it (nothing shipped from it).
 */
export function checkAppendOnly(
  envs: Map<Environment, ResolvedEnvironment>,
  history: readonly HistoricConfig[],
): string[] {
  const problems: string[] = [];
  for (const past of history) {
    const then = resolveEnvironments(past.toml);
    if (!then.ok) continue;
    for (const [name, before] of then.envs) {
      const now = envs.get(name);
      if (!now) continue;
      for (const [i, m] of before.migrations.entries()) {
        const current = now.migrations[i];
        if (current === undefined) {
          problems.push(
            `${name}: migration ${m.tag} (in ${past.commit.slice(0, 12)}) was removed: shipped migrations stay; append one that deletes or renames the class instead`,
          );
          break;
        }
        if (canonical(current) !== canonical(m)) {
          problems.push(
            `${name}: migration ${i + 1} is ${current.tag} now but was ${canonical(m)} in ${past.commit.slice(0, 12)}: shipped migrations are never edited; restore it and append a new one`,
          );
          break;
        }
      }
    }
  }
  return problems;
}
