/**
 * Where the client commands find the edge and their keys. Each of the URL, the API key and the
 * admin key comes from the first of: its flag (`--url`, `--api-key`, `--admin-key`), its
 * environment variable (`FLOODGATE_URL`, `FLOODGATE_API_KEY`, `FLOODGATE_ADMIN_KEY`), or the
 * `local.json` that `floodgate dev` (`npm start`) writes — in `--state DIR` when given, else the
 * nearest `.floodgate/local.json` walking up from the working directory. So right after
 * `npm start`, `npx floodgate submit demo …` needs nothing else.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { LocalConfig } from "./dev.ts";

/** A configuration problem the user fixes by passing or setting something: exit code 2. */
export class ConfigError extends Error {}

export type Source = "flag" | "env" | "local";

export interface Setting {
  value: string;
  source: Source;
}

export interface ResolvedConfig {
  url: Setting | undefined;
  apiKey: Setting | undefined;
  adminKey: Setting | undefined;
  /** The local.json read, if any. */
  localFile: string | undefined;
}

export interface ConfigFlags {
  url?: string | undefined;
  "api-key"?: string | undefined;
  "admin-key"?: string | undefined;
  state?: string | undefined;
}

export const ENV = { url: "FLOODGATE_URL", apiKey: "FLOODGATE_API_KEY", adminKey: "FLOODGATE_ADMIN_KEY" } as const;

const LOCAL_DIR = ".floodgate";
const LOCAL_FILE = "local.json";

/** The nearest `.floodgate/local.json` from `cwd` up to the root, if any. */
export function findLocalConfig(cwd: string): string | undefined {
  let dir = resolve(cwd);
  for (;;) {
    const file = join(dir, LOCAL_DIR, LOCAL_FILE);
    if (existsSync(file)) return file;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

function readLocal(file: string): LocalConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new ConfigError(`${file} is not readable JSON: ${(err as Error).message}`);
  }
  const parsed = LocalConfig.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(
      `${file} is not a floodgate local.json (${issue?.path.join(".") ?? ""}: ${issue?.message ?? "invalid"}); run \`npm start\` again to rewrite it`,
    );
  }
  return parsed.data;
}

/**
 * Resolves the URL and keys, each from its flag, its environment variable, then local.json
 * (see the module comment). Reads local.json only when a setting needs it.
 */
export function resolveConfig(
  flags: ConfigFlags,
  env: Record<string, string | undefined>,
  cwd: string,
): ResolvedConfig {
  const fromFlagOrEnv = (flag: string | undefined, name: string): Setting | undefined => {
    if (flag !== undefined && flag !== "") return { value: flag, source: "flag" };
    const v = env[name];
    return v !== undefined && v !== "" ? { value: v, source: "env" } : undefined;
  };
  const url = fromFlagOrEnv(flags.url, ENV.url);
  const apiKey = fromFlagOrEnv(flags["api-key"], ENV.apiKey);
  const adminKey = fromFlagOrEnv(flags["admin-key"], ENV.adminKey);
  let localFile: string | undefined;
  if (flags.state !== undefined) {
    localFile = join(resolve(cwd, flags.state), LOCAL_FILE);
    if (!existsSync(localFile)) {
      throw new ConfigError(
        `--state ${flags.state}: no ${LOCAL_FILE} there (\`floodgate dev --state ${flags.state}\` writes it)`,
      );
    }
  } else if (!url || !apiKey || !adminKey) {
    localFile = findLocalConfig(cwd);
  }
  if (localFile === undefined || (url && apiKey && adminKey)) return { url, apiKey, adminKey, localFile };
  const local = readLocal(localFile);
  return {
    url: url ?? { value: local.url, source: "local" },
    apiKey: apiKey ?? { value: local.api_key, source: "local" },
    adminKey: adminKey ?? { value: local.admin_key, source: "local" },
    localFile,
  };
}

function missing(what: string, flag: string, envName: string): ConfigError {
  return new ConfigError(
    `no ${what}: pass ${flag}, set ${envName}, or start a local stack with \`npm start\` ` +
      `(it writes .floodgate/local.json, found from this folder or any above it; --state DIR names another)`,
  );
}

/** The URL and user key, or a {@link ConfigError} naming the three ways to give them. */
export function userConfig(c: ResolvedConfig): { url: string; apiKey: string } {
  if (!c.url) throw missing("edge URL", "--url URL", ENV.url);
  if (!c.apiKey) throw missing("API key", "--api-key KEY", ENV.apiKey);
  return { url: c.url.value, apiKey: c.apiKey.value };
}

/** The URL and admin key, or a {@link ConfigError} naming the three ways to give them. */
export function adminConfig(c: ResolvedConfig): { url: string; adminKey: string } {
  if (!c.url) throw missing("edge URL", "--url URL", ENV.url);
  if (!c.adminKey) throw missing("admin key", "--admin-key KEY", ENV.adminKey);
  return { url: c.url.value, adminKey: c.adminKey.value };
}
