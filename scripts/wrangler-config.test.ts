import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  checkAppendOnly,
  checkEnvironments,
  ENVIRONMENTS,
  liveClasses,
  resolveEnvironments,
  type Environment,
  type ResolvedEnvironment,
} from "./wrangler-config.ts";

const REPO_TOML = readFileSync(join(import.meta.dirname, "..", "wrangler.toml"), "utf8");

function envsOf(toml: string): Map<Environment, ResolvedEnvironment> {
  const r = resolveEnvironments(toml);
  if (!r.ok) throw new Error(r.message);
  return r.envs;
}

/** The repository's wrangler.toml with one edit. */
function edited(from: string, to: string): string {
  if (!REPO_TOML.includes(from)) throw new Error(`wrangler.toml has no ${JSON.stringify(from)}`);
  return REPO_TOML.replace(from, to);
}

const MIGRATIONS_V2 = `[[migrations]]
tag = "v2"
new_sqlite_classes = ["AgentActor", "JobActor"]`;

/** The last `[[migrations]]` entry of the repository's wrangler.toml, as written, and its tag. */
function lastMigration(): { text: string; tag: string } {
  const entries = [...REPO_TOML.matchAll(/\[\[migrations\]\]\ntag = "([^"]+)"\n[^\n]+/g)];
  const last = entries.at(-1);
  if (!last) throw new Error("wrangler.toml has no migrations");
  return { text: last[0], tag: last[1] as string };
}

describe("wrangler.toml's environments", () => {
  it("the repository's wrangler.toml declares dev, staging and production consistently", () => {
    const envs = envsOf(REPO_TOML);
    expect([...envs.keys()]).toEqual([...ENVIRONMENTS]);
    expect(checkEnvironments(envs)).toEqual([]);
    const staging = envs.get("staging")!;
    expect(staging.migrations.map((m) => m.tag)).toEqual(envs.get("dev")!.migrations.map((m) => m.tag));
    expect(staging.buckets[0]?.bucket_name).not.toBe(envs.get("production")!.buckets[0]?.bucket_name);
  });

  it("an environment that forgets a Durable Object binding is refused, naming it", () => {
    const toml = edited(
      `[[env.staging.durable_objects.bindings]]
name = "JOB"
class_name = "JobActor"`,
      "",
    );
    const problems = checkEnvironments(envsOf(toml));
    expect(problems.join("\n")).toMatch(/\[env\.staging\] Durable Object bindings .*JOB→JobActor/);
    expect(problems.join("\n")).toMatch(/staging: migrations keep class JobActor alive but no binding names it/);
  });

  it("an environment missing a rate limit or a var is refused", () => {
    const noLimit = edited(
      `[[env.production.ratelimits]]
name = "RL_AGENT"`,
      `[[env.production.ratelimits]]
name = "RL_AGENTS"`,
    );
    expect(checkEnvironments(envsOf(noLimit)).join("\n")).toMatch(/\[env\.production\] rate limits/);
    const noVar = edited(`[env.staging.vars]\nAUTH_CACHE_S = "30"\n`, `[env.staging.vars]\n`);
    expect(checkEnvironments(envsOf(noVar)).join("\n")).toMatch(/\[env\.staging\] vars .*AUTH_CACHE_S/);
  });

  it("two environments may not share a bucket or a rate-limit namespace", () => {
    const bucket = edited(`bucket_name = "floodgate-outputs-staging"`, `bucket_name = "floodgate-outputs-production"`);
    expect(checkEnvironments(envsOf(bucket)).join("\n")).toMatch(/share the R2 bucket floodgate-outputs-production/);
    const ns = edited(`namespace_id = "2001"`, `namespace_id = "3001"`);
    expect(checkEnvironments(envsOf(ns)).join("\n")).toMatch(/reuses rate-limit namespace_id 3001/);
  });

  it("a bound class that no migration creates is refused", () => {
    const toml = edited(MIGRATIONS_V2, `[[migrations]]\ntag = "v2"\nnew_sqlite_classes = ["AgentActor"]`);
    expect(checkEnvironments(envsOf(toml)).join("\n")).toMatch(/class JobActor is bound but no migration creates it/);
  });

  it("an environment with migrations of its own that differ from the top level's is refused", () => {
    const toml = edited(
      "[env.staging]\n",
      `[env.staging]\nmigrations = [{ tag = "v1", new_sqlite_classes = ["SchedulerActor", "AccountActor", "RegistryActor", "AgentActor", "JobActor"] }]\n`,
    );
    expect(checkEnvironments(envsOf(toml)).join("\n")).toMatch(/\[env\.staging\] has migrations of its own/);
  });

  it("migrations may only be appended to what git history shipped", () => {
    const history = [{ commit: "a".repeat(40), toml: REPO_TOML }];
    const appended = `${REPO_TOML}\n[[migrations]]\ntag = "v-next"\ndeleted_classes = ["JobActor"]\n`;
    expect(checkAppendOnly(envsOf(appended), history)).toEqual([]);
    const edit = edited(
      MIGRATIONS_V2,
      `[[migrations]]\ntag = "v2"\nnew_sqlite_classes = ["AgentActor", "JobActor", "X"]`,
    );
    expect(checkAppendOnly(envsOf(edit), history).join("\n")).toMatch(
      /migration 2 is v2 now but was .* in aaaaaaaaaaaa/,
    );
    const last = lastMigration();
    const removed = edited(last.text, "");
    expect(checkAppendOnly(envsOf(removed), history).join("\n")).toMatch(
      new RegExp(`migration ${last.tag} .* was removed`),
    );
  });

  it("a rename moves a class and a delete ends it; renaming or deleting what does not exist is an error", () => {
    const live = liveClasses([
      { tag: "v1", new_sqlite_classes: ["A", "B"] },
      { tag: "v2", renamed_classes: [{ from: "A", to: "C" }] },
      { tag: "v3", deleted_classes: ["B"] },
    ]);
    expect(live.ok && [...live.classes]).toEqual(["C"]);
    expect(liveClasses([{ tag: "v1", deleted_classes: ["A"] }])).toMatchObject({ ok: false });
    expect(
      liveClasses([
        { tag: "v1", new_classes: ["A"] },
        { tag: "v2", new_classes: ["A"] },
      ]),
    ).toMatchObject({
      ok: false,
    });
  });

  it("a file that does not parse is an error value, not a throw", () => {
    expect(resolveEnvironments("name = ")).toMatchObject({ ok: false });
  });
});
