/**
 * `floodgate dev`: the whole platform on one machine. Runs the edge under `wrangler dev`
 * (workerd, state persisted under `--state`), creates on first start the secrets, a demo
 * account and an agent token, writes `<state>/local.json`, prints the keys, and stops
 * everything it started on SIGINT/SIGTERM/SIGHUP. A second start reuses the state and keys.
 * One launcher per state: what a killed one left running is stopped by its watchdog or by the
 * next start, and a start on a state a live launcher owns is refused (cli/dev-instance.ts).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, realpathSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { z } from "zod";
import { createAdminClient } from "../client/index.ts";
import { DEMO_VERSION, ensureBuiltInVersions, MODELS_DIR, versionDir } from "../scripts/models.ts";
import { BUILT_IN_MODELS, DEMO_MODEL } from "../shared/models.ts";
import type { RolloutFile } from "../shared/repository.ts";
import type { SecretName } from "../edge/secrets.ts";
import { LOCAL_POOL_COMMAND } from "../shared/pools.ts";
import { claimState, type Instance } from "./dev-instance.ts";
import { GENERATORS } from "./keys.ts";
import { pushVersionDir, type PushSummary } from "./push.ts";
import { parseRolloutFile } from "./rollout.ts";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

export const LocalConfig = z.object({
  url: z.string(),
  admin_key: z.string(),
  api_key: z.string(),
  agent_token: z.string(),
});
export type LocalConfig = z.infer<typeof LocalConfig>;

export interface DevOptions {
  port: number;
  agents: number;
  state: string;
  /** Also run a provisioner with the built-in local pool (`--autoscale`). */
  autoscale?: boolean;
  /** Print nothing but errors (tests). */
  quiet?: boolean;
}

/**
 * The pool `floodgate dev --autoscale` applies: the local agent token's pool, grown by the
 * provisioner's built-in local pool with windows short enough to watch.
 */
export const LOCAL_POOL_SPEC = {
  models: Object.keys(BUILT_IN_MODELS),
  min: 0,
  max: 4,
  command: LOCAL_POOL_COMMAND,
  burst_window_s: 5,
  window_s: 60,
  cooldown_s: 30,
};

type Secrets = Record<SecretName, string>;

/** Reads the state's secrets, generating on first start any that are missing. */
export function ensureSecrets(stateDir: string): { file: string; secrets: Secrets } {
  const file = join(stateDir, "secrets.env");
  const held = new Map<string, string>();
  if (existsSync(file)) {
    for (const line of readFileSync(file, "utf8").split("\n")) {
      const eq = line.indexOf("=");
      if (eq > 0) held.set(line.slice(0, eq), line.slice(eq + 1).replace(/^'(.*)'$/, "$1"));
    }
  }
  let changed = false;
  for (const [k, gen] of Object.entries(GENERATORS)) {
    if (!held.get(k)) {
      held.set(k, gen());
      changed = true;
    }
  }
  const secrets = Object.fromEntries(held) as unknown as Secrets;
  // Single-quoted: dotenv takes such values literally, and no value contains a quote.
  if (changed) writeFileSync(file, [...held].map(([k, v]) => `${k}='${v}'`).join("\n") + "\n", { mode: 0o600 });
  return { file, secrets };
}

async function waitHealthy(url: string, child: ChildProcess, deadlineMs: number): Promise<void> {
  const until = Date.now() + deadlineMs;
  while (Date.now() < until) {
    if (child.exitCode !== null)
      throw new Error(`wrangler dev exited with code ${child.exitCode} before the edge answered`);
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the edge did not answer on ${url} within ${deadlineMs / 1000} s`);
}

async function api(
  url: string,
  key: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  const r = await fetch(url + path, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, json: text ? (JSON.parse(text) as unknown) : null };
}

/** An agent token's id and the models it is scoped to (its JWT payload, unverified, read only). */
function tokenScope(token: string): { id: string | undefined; models: string[] } {
  try {
    const payload = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString("utf8")) as {
      jti?: unknown;
      models?: unknown;
    };
    const models = Array.isArray(payload.models)
      ? payload.models.filter((m): m is string => typeof m === "string")
      : [];
    return { id: typeof payload.jti === "string" ? payload.jti : undefined, models };
  } catch {
    return { id: undefined, models: [] };
  }
}

/** Registers the built-in models and makes sure the demo account and agent token exist. */
export async function bootstrap(url: string, adminKey: string, stateDir: string): Promise<LocalConfig> {
  const models = Object.keys(BUILT_IN_MODELS);
  for (const [name, config] of Object.entries(BUILT_IN_MODELS)) {
    const put = await api(url, adminKey, "PUT", `/v1/admin/models/${name}`, config);
    if (put.status >= 300) throw new Error(`registering the ${name} model failed: ${JSON.stringify(put.json)}`);
  }
  const file = join(stateDir, "local.json");
  const held = existsSync(file) ? LocalConfig.safeParse(JSON.parse(readFileSync(file, "utf8"))) : undefined;
  let apiKey = held?.success ? held.data.api_key : undefined;
  let agentToken = held?.success ? held.data.agent_token : undefined;
  if (apiKey !== undefined && (await api(url, apiKey, "GET", "/v1/jobs?limit=1")).status === 401) apiKey = undefined;
  if (apiKey === undefined) {
    const made = await api(url, adminKey, "POST", "/v1/admin/accounts", { name: "demo", tier: "plus" });
    if (made.status !== 201) throw new Error(`creating the demo account failed: ${JSON.stringify(made.json)}`);
    apiKey = (made.json as { api_key: string }).api_key;
  }
  // A token from an older state may not cover every built-in model: mint one that does, and
  // revoke the old one, which would otherwise keep the local agents' ids bound to it.
  if (agentToken !== undefined) {
    const scope = tokenScope(agentToken);
    if (!models.every((m) => scope.models.includes(m))) {
      if (scope.id !== undefined) await api(url, adminKey, "DELETE", `/v1/admin/agent-tokens/${scope.id}`);
      agentToken = undefined;
    }
  }
  if (agentToken === undefined) {
    const tok = await api(url, adminKey, "POST", "/v1/admin/agent-tokens", {
      pool: "local",
      models,
      ttl_s: 365 * 86400,
    });
    if (tok.status !== 201) throw new Error(`minting the agent token failed: ${JSON.stringify(tok.json)}`);
    agentToken = (tok.json as { token: string }).token;
  }
  const config: LocalConfig = { url, admin_key: adminKey, api_key: apiKey, agent_token: agentToken };
  writeFileSync(file, JSON.stringify(config, null, 2) + "\n", { mode: 0o600 });
  return config;
}

/** The rollout the local platform applies on its first start: the built-in versions as stable. */
export const BUILT_IN_ROLLOUT = join(MODELS_DIR, "rollout.yaml");

/** What {@link installBuiltInVersions} did. */
export interface Installed {
  pushed: PushSummary[];
  /** Built-in versions that could not be made (no Python that imports torch): why. */
  skipped: string[];
  /** The rollout entry applied now, or undefined when every model in the file had one already. */
  applied: number | undefined;
  /** Models whose stable version is not the one the rollout file names (a state from before). */
  behind: { model: string; stable: string; file: string }[];
}

/** The built-in version directories made ready here, and the ones that could not be, with why. */
interface BuiltIns {
  dirs: string[];
  skipped: string[];
}

/**
 * Makes the built-in versions ready on this machine (Python is asked about the reference model):
 * nothing here needs the edge, so `floodgate dev` does it while the edge starts.
 */
async function builtInVersions(): Promise<BuiltIns> {
  try {
    return { dirs: await ensureBuiltInVersions(), skipped: [] };
  } catch (err) {
    return {
      dirs: [versionDir(DEMO_MODEL, DEMO_VERSION)],
      skipped: [`reference: ${err instanceof Error ? err.message.split("\n")[0] : String(err)}`],
    };
  }
}

/**
 * Pushes the built-in versions (scripts/models.ts) to the edge the way `floodgate models push`
 * does, and applies {@link BUILT_IN_ROLLOUT} for the models that have no rollout yet, so the
 * local agents serve them on the path a real fleet takes. Idempotent: a second start finds the
 * versions stored (nothing is uploaded) and the rollout applied (an operator's later rollout is
 * kept). The reference model needs Python with torch to generate its weights; without it only
 * the demo model is installed, and `skipped` says why.
 */
export async function installBuiltInVersions(
  url: string,
  adminKey: string,
  local: Promise<BuiltIns> = builtInVersions(),
): Promise<Installed> {
  const client = createAdminClient({ url, adminKey });
  const { dirs, skipped } = await local;
  const pushed: PushSummary[] = [];
  for (const dir of dirs) pushed.push(await pushVersionDir(client, dir));
  const file = parseRolloutFile(readFileSync(BUILT_IN_ROLLOUT, "utf8"), BUILT_IN_ROLLOUT);
  const status = await client.rollouts.status();
  const models: RolloutFile["models"] = {};
  const behind: Installed["behind"] = [];
  for (const [model, entry] of Object.entries(file.models)) {
    const stable = status.models[model]?.stable.version;
    if (stable !== undefined && stable !== entry.version) behind.push({ model, stable, file: entry.version });
    if (stable !== undefined) continue;
    if (!pushed.some((p) => p.model === model && p.version === entry.version)) continue;
    models[model] = entry;
  }
  if (Object.keys(models).length === 0) return { pushed, skipped, applied: undefined, behind };
  const rollout = { models };
  const entry = await client.rollouts.apply(rollout, stringify(rollout));
  return { pushed, skipped, applied: entry.id, behind };
}

/**
 * Environment for local workerd: no metrics, and no fetch of the `Request.cf` sample, which
 * needs the internet (the placeholder is used instead). Wrangler and the dashboard build it
 * runs reuse Node's compiled code between starts (where the `floodgate` command keeps its own).
 */
export const LOCAL_ENV = {
  WRANGLER_SEND_METRICS: "false",
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
  NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE ?? join(tmpdir(), "node-compile-cache"),
};

/** Starts the edge under wrangler dev and answers once it is healthy. */
export async function startEdge(opts: {
  port: number;
  state: string;
  envFile: string;
  quiet?: boolean;
  /** Added to this process's environment for wrangler and workerd. */
  env?: Record<string, string>;
  /** Called as soon as wrangler is spawned, before it is healthy. */
  onSpawn?: (child: ChildProcess) => void;
}): Promise<{ url: string; child: ChildProcess }> {
  const url = `http://127.0.0.1:${opts.port}`;
  // Run wrangler with this Node (the project's pinned one), whatever the PATH holds.
  const wrangler = join(ROOT, "node_modules", "wrangler", "bin", "wrangler.js");
  const child = spawn(
    process.execPath,
    [
      wrangler,
      "dev",
      "--config",
      join(ROOT, "wrangler.toml"),
      "--ip",
      "127.0.0.1",
      "--port",
      String(opts.port),
      "--persist-to",
      join(opts.state, "wrangler"),
      "--env-file",
      opts.envFile,
      // Signed output URLs start with the edge's public URL, here its local one.
      "--var",
      `PUBLIC_URL:${url}`,
      // Local development only: webhooks may go to http and loopback receivers, and tests may
      // shorten their retry schedule.
      "--var",
      "WEBHOOKS_ALLOW_LOCAL:true",
      ...(process.env.FLOODGATE_WEBHOOK_RETRY_SCALE
        ? ["--var", `WEBHOOK_RETRY_SCALE:${process.env.FLOODGATE_WEBHOOK_RETRY_SCALE}`]
        : []),
      "--log-level",
      "warn",
      "--show-interactive-dev-session=false",
      "--inspector-port",
      "0",
    ],
    {
      cwd: ROOT,
      stdio: ["ignore", opts.quiet ? "ignore" : "inherit", "inherit"],
      detached: true,
      env: { ...process.env, ...LOCAL_ENV, ...opts.env },
    },
  );
  opts.onSpawn?.(child);
  try {
    await waitHealthy(url, child, 60_000);
  } catch (err) {
    stopProcess(child);
    throw err;
  }
  return { url, child };
}

/** Stops a process we started and everything it started (it leads its own process group). */
export function stopProcess(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): void {
  if (child.pid === undefined || child.exitCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    child.kill(signal);
  }
}

/**
 * Starts a local agent process: without `runner` it serves what the rollout says for its
 * token's models; with it, that one runner (tests that need a runner of their own).
 */
export function startAgent(opts: {
  url: string;
  token: string;
  state: string;
  index: number;
  /** Its name and cache directory, else `local-<index>` and `<state>/agents/<index>`. */
  name?: string;
  cacheDir?: string;
  quiet?: boolean;
  /** A file its output is appended to (instead of `stdio`/`quiet`). */
  logFile?: string;
  runner?: string;
  extraArgs?: string[];
  env?: NodeJS.ProcessEnv;
  stdio?: "pipe" | "inherit" | "ignore";
}): ChildProcess {
  const out = opts.logFile !== undefined ? openLog(opts.logFile) : (opts.stdio ?? (opts.quiet ? "ignore" : "inherit"));
  const child = spawn(
    process.execPath,
    [
      join(ROOT, "cli", "bin.js"),
      "agent",
      "--url",
      opts.url,
      "--token",
      opts.token,
      "--name",
      opts.name ?? `local-${opts.index}`,
      ...(opts.runner === undefined ? [] : ["--runner", opts.runner]),
      "--cache-dir",
      opts.cacheDir ?? join(opts.state, "agents", String(opts.index)),
      ...(opts.extraArgs ?? []),
    ],
    {
      cwd: ROOT,
      env: opts.env ?? process.env,
      stdio: ["ignore", out, out],
    },
  );
  // The child holds its own copy of the log's descriptor.
  if (typeof out === "number") closeSync(out);
  return child;
}

function openLog(path: string): number {
  mkdirSync(dirname(path), { recursive: true });
  return openSync(path, "a");
}

/** Waits for a process to exit, killing it after `ms`. */
export async function waitExit(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((res) => {
    const t = setTimeout(() => {
      child.kill("SIGKILL");
      res();
    }, ms);
    child.once("exit", () => {
      clearTimeout(t);
      res();
    });
  });
}

export async function dev(opts: DevOptions): Promise<number> {
  if (!existsSync(join(ROOT, "wrangler.toml"))) {
    // The installed package ships the agent and the client commands, not the edge's sources.
    throw new Error(
      "floodgate dev runs the edge from its sources under wrangler: run it in a clone of the repository (npm start there); this installed package runs agents (floodgate agent) and the client commands",
    );
  }
  mkdirSync(opts.state, { recursive: true });
  const state = realpathSync(opts.state);
  const log = opts.quiet ? () => {} : (s: string) => process.stdout.write(s + "\n");
  const instance = await claimState(state, log);
  try {
    return await run(opts, state, instance, log);
  } finally {
    instance.release();
  }
}

async function run(opts: DevOptions, state: string, instance: Instance, log: (line: string) => void): Promise<number> {
  const { file: envFile, secrets } = ensureSecrets(state);
  const env = { ...process.env, ...instance.env };
  const local = builtInVersions();
  const { url, child } = await startEdge({
    port: opts.port,
    state,
    envFile,
    quiet: opts.quiet,
    env: instance.env,
    onSpawn: (c) => instance.add(c, "edge", true),
  });
  let config: LocalConfig;
  let installed: Installed;
  try {
    config = await bootstrap(url, secrets.ADMIN_KEY, state);
    installed = await installBuiltInVersions(url, secrets.ADMIN_KEY, local);
  } catch (err) {
    stopProcess(child);
    await waitExit(child, 10_000);
    throw err;
  }
  const agents = Array.from({ length: opts.agents }, (_, index) => {
    const agent = startAgent({ url, token: config.agent_token, state, index, quiet: opts.quiet, env });
    instance.add(agent, "agent", false);
    return agent;
  });
  if (opts.autoscale) {
    const applied = await api(url, config.admin_key, "PUT", "/v1/admin/pools", {
      file: { pools: { local: LOCAL_POOL_SPEC } },
    });
    const tok = await api(url, config.admin_key, "POST", "/v1/admin/provisioner-tokens", { pools: ["local"] });
    if (applied.status !== 200 || tok.status !== 201) {
      stopProcess(child);
      await waitExit(child, 10_000);
      throw new Error(`setting up the local pool failed: ${JSON.stringify(applied.json)} ${JSON.stringify(tok.json)}`);
    }
    // Its agents are its own children: it stops them when it stops, before the edge does.
    const provisioner = spawn(
      process.execPath,
      [
        join(ROOT, "cli", "bin.js"),
        "provisioner",
        "--url",
        url,
        "--token",
        (tok.json as { token: string }).token,
        "--agent-token",
        config.agent_token,
        "--dir",
        state,
      ],
      { cwd: ROOT, env, stdio: ["ignore", opts.quiet ? "ignore" : "inherit", opts.quiet ? "ignore" : "inherit"] },
    );
    instance.add(provisioner, "provisioner", false);
    agents.push(provisioner);
  }
  log(`Floodgate is running at ${config.url}`);
  log(`  user key    ${config.api_key}`);
  log(`  admin key   ${config.admin_key}`);
  log(`  agent token ${config.agent_token}`);
  log(`  written to  ${join(state, "local.json")}`);
  const versions = installed.pushed.map(
    (p) => `${p.model} ${p.version} (${p.state}, ${p.uploaded_pieces} of ${p.pieces} pieces uploaded)`,
  );
  log(`  versions    ${versions.join(", ")}`);
  for (const why of installed.skipped) log(`  not pushed  ${why}`);
  log(
    `  rollout     ${installed.applied === undefined ? "as applied before" : `${BUILT_IN_ROLLOUT} applied (entry ${installed.applied})`}; npx floodgate rollout status`,
  );
  for (const b of installed.behind) {
    log(
      `  note        ${b.model} serves ${b.stable}, the rollout file says ${b.file}: npx floodgate rollout apply ${relative(process.cwd(), BUILT_IN_ROLLOUT)} moves it`,
    );
  }
  log(
    `  agents      ${opts.agents} serving what the rollout says${opts.autoscale ? ", and the local pool (0 to 4, as jobs queue)" : ""}`,
  );
  log(`Try, in another terminal:  npx floodgate submit demo --input '{"prompt":"a red fox"}' --watch`);
  log("Ctrl-C stops everything.");
  return await new Promise<number>((resolveExit) => {
    let stopping = false;
    const shutdown = async (): Promise<void> => {
      // Agents drain first (their running jobs finish or go back), then the edge stops.
      for (const a of agents) a.kill("SIGTERM");
      await Promise.all(agents.map((a) => waitExit(a, 10_000)));
      stopProcess(child);
    };
    const onSignal = (): void => {
      if (stopping) return;
      stopping = true;
      void shutdown();
    };
    // SIGHUP: the terminal was closed. Once each: a second Ctrl-C ends the launcher at once,
    // and its watchdog stops the rest.
    const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
    for (const sig of signals) process.once(sig, onSignal);
    child.once("exit", (code) => {
      for (const sig of signals) process.off(sig, onSignal);
      for (const a of agents) a.kill("SIGKILL");
      void Promise.all(agents.map((a) => waitExit(a, 5_000))).then(() => resolveExit(stopping ? 0 : (code ?? 1)));
    });
  });
}
