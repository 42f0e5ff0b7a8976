/**
 * `npm run deploy -- --env staging|production|dev [--dry-run]`, or `--all --dry-run` (CI):
 * checks an environment of wrangler.toml, then deploys it with wrangler. The checks, in order:
 *
 * 1. the environments are consistent and the Durable Object migrations append-only against git
 *    history (scripts/wrangler-config.ts);
 * 2. wrangler's own `deploy --dry-run --env X` (bundles the Worker and validates the config;
 *    needs no network and no Cloudflare login);
 * 3. without --dry-run: every secret edge/secrets.ts lists is set in the environment
 *    (`wrangler secret list`, which needs a login: `wrangler login` or CLOUDFLARE_API_TOKEN).
 *
 * Then, without --dry-run, `wrangler deploy --env X`. Exit codes: 0 done, 1 a check or the
 * deploy failed, 2 bad usage.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { z } from "zod";
import { SECRET_NAMES, SECRETS } from "../edge/secrets.ts";
import {
  checkAppendOnly,
  checkEnvironments,
  ENVIRONMENTS,
  resolveEnvironments,
  wranglerEnv,
  type Environment,
  type HistoricConfig,
} from "./wrangler-config.ts";

const ROOT = resolve(import.meta.dirname, "..");
const CONFIG = join(ROOT, "wrangler.toml");
const WRANGLER = join(ROOT, "node_modules", "wrangler", "bin", "wrangler.js");

const USAGE = `usage: npm run deploy -- --env ${ENVIRONMENTS.join("|")} [--dry-run]
       npm run deploy -- --all --dry-run

  --env NAME   the environment of wrangler.toml (dev is its top level)
  --all        every environment (with --dry-run only)
  --dry-run    stop after the checks: nothing is uploaded, no login needed
`;

function say(line: string): void {
  process.stdout.write(line + "\n");
}

/** Runs wrangler with this Node (the project's pinned one); its output is captured. */
function wrangler(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [WRANGLER, ...args, "--config", CONFIG], {
    cwd: ROOT,
    encoding: "utf8",
    env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
    timeout: 300_000,
  });
  return { status: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

function git(args: string[]) {
  return spawnSync("git", args, { cwd: ROOT, encoding: "utf8", maxBuffer: 64 << 20 });
}

/**
 * Every earlier version of wrangler.toml on this branch's own line of history (none outside a git
 * checkout): the first parent of each merge, since what a merged branch held in between was
 * never deployed from here.
 */
function gitHistory(): { ok: true; versions: HistoricConfig[] } | { ok: false; why: string } {
  const log = git(["log", "--first-parent", "--format=%H", "--", "wrangler.toml"]);
  if (log.status !== 0) return { ok: false, why: (log.stderr || "git failed").trim() };
  const versions: HistoricConfig[] = [];
  for (const commit of log.stdout.split("\n").filter(Boolean)) {
    const show = git(["show", `${commit}:wrangler.toml`]);
    if (show.status === 0) versions.push({ commit, toml: show.stdout });
  }
  return { ok: true, versions };
}

/** Step 1: the configuration's own checks. */
function checkConfig(): boolean {
  const resolved = resolveEnvironments(readFileSync(CONFIG, "utf8"));
  if (!resolved.ok) {
    say(`✗ ${resolved.message}`);
    return false;
  }
  const problems = checkEnvironments(resolved.envs);
  const history = gitHistory();
  if (history.ok) problems.push(...checkAppendOnly(resolved.envs, history.versions));
  for (const p of problems) say(`✗ ${p}`);
  if (problems.length > 0) return false;
  const tags = resolved.envs.get("dev")?.migrations.map((m) => m.tag) ?? [];
  say(
    `✓ wrangler.toml: ${ENVIRONMENTS.join(", ")} declare the same bindings; migrations ${tags.join(", ")} in every environment, ` +
      (history.ok
        ? `append-only against ${history.versions.length} earlier version(s) in git`
        : `NOT checked against git history (${history.why})`),
  );
  return true;
}

/** Step 2: wrangler's dry run of one environment. */
function dryRun(env: Environment): boolean {
  const out = mkdtempSync(join(tmpdir(), "floodgate-deploy-"));
  try {
    const r = wrangler(["deploy", "--dry-run", `--env=${wranglerEnv(env)}`, "--outdir", out]);
    if (r.status !== 0) {
      say(`✗ ${env}: wrangler deploy --dry-run failed (exit ${r.status}):\n${r.stderr || r.stdout}`);
      return false;
    }
    const size = /Total Upload: ([^\n]+)/.exec(r.stdout)?.[1]?.trim();
    say(`✓ ${env}: wrangler deploy --dry-run${size ? ` (${size})` : ""}`);
    return true;
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

const SecretList = z.array(z.object({ name: z.string() }).loose());

/** Step 3: every secret set in the environment (needs a Cloudflare login). */
function secretsPresent(env: Environment): boolean {
  const r = wrangler(["secret", "list", `--env=${wranglerEnv(env)}`, "--format", "json"]);
  const json = r.stdout.slice(r.stdout.indexOf("["));
  let listed: z.infer<typeof SecretList> | undefined;
  try {
    const parsed = SecretList.safeParse(JSON.parse(json));
    listed = parsed.success ? parsed.data : undefined;
  } catch {
    listed = undefined;
  }
  if (r.status !== 0 || listed === undefined) {
    say(
      `✗ ${env}: could not list the Worker's secrets (exit ${r.status}); log in first (npx wrangler login, or set CLOUDFLARE_API_TOKEN):\n${r.stderr || r.stdout}`,
    );
    return false;
  }
  const have = new Set(listed.map((s) => s.name));
  const missing = SECRET_NAMES.filter((n) => !have.has(n));
  if (missing.length === 0) {
    say(`✓ ${env}: secrets ${SECRET_NAMES.join(", ")} are set`);
    return true;
  }
  const flag = env === "dev" ? "" : ` --env ${env}`;
  for (const name of missing) {
    say(`✗ ${env}: secret ${name} is not set — ${SECRETS[name]}`);
    say(`    npx floodgate keys new ${name} | npx wrangler secret put ${name}${flag}`);
  }
  say("  (docs/deploy.md: keep a copy of AGENT_SIGNING_KEYS before you put it; rotating needs it)");
  return false;
}

async function main(argv: string[]): Promise<number> {
  let values: { env?: string; all?: boolean; "dry-run"?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        env: { type: "string", short: "e" },
        all: { type: "boolean" },
        "dry-run": { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const dry = values["dry-run"] === true;
  let envs: Environment[];
  if (values.all) {
    if (!dry || values.env !== undefined) {
      process.stderr.write(`--all goes with --dry-run alone: deploy one environment at a time\n\n${USAGE}`);
      return 2;
    }
    envs = [...ENVIRONMENTS];
  } else {
    const env = ENVIRONMENTS.find((e) => e === values.env);
    if (env === undefined) {
      process.stderr.write(
        `${values.env === undefined ? "name an environment" : `unknown environment ${JSON.stringify(values.env)}`}\n\n${USAGE}`,
      );
      return 2;
    }
    envs = [env];
  }
  if (!checkConfig()) return 1;
  for (const env of envs) if (!dryRun(env)) return 1;
  if (dry) {
    say(`dry run: nothing deployed (secrets are checked only when deploying: they need a Cloudflare login)`);
    return 0;
  }
  const env = envs[0] as Environment;
  if (!secretsPresent(env)) return 1;
  say(`deploying ${env}…`);
  const r = spawnSync(process.execPath, [WRANGLER, "deploy", `--env=${wranglerEnv(env)}`, "--config", CONFIG], {
    cwd: ROOT,
    stdio: "inherit",
    env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
  });
  return r.status === 0 ? 0 : 1;
}

process.exitCode = await main(process.argv.slice(2));
