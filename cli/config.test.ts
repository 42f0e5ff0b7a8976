import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { adminConfig, ConfigError, findLocalConfig, resolveConfig, userConfig } from "./config.ts";

const LOCAL = {
  url: "http://127.0.0.1:8787",
  admin_key: "fga_local",
  api_key: "fgk_local",
  agent_token: "jwt.local",
};

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "fg-config-"));
});
afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

function writeLocal(dir: string, body: unknown = LOCAL): string {
  const file = join(dir, "local.json");
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, typeof body === "string" ? body : JSON.stringify(body));
  return file;
}

/** Whether some folder above the temp dir already holds a .floodgate/local.json (then "none found" cannot be tested). */
const strayLocal = findLocalConfig(tmpdir()) !== undefined || existsSync(join(tmpdir(), ".floodgate"));

describe("resolveConfig", () => {
  it("takes each setting from its flag first, then its environment variable, then local.json", () => {
    writeLocal(join(root, ".floodgate"));
    const env = { FLOODGATE_URL: "https://env.example", FLOODGATE_API_KEY: "fgk_env" };
    const c = resolveConfig({ "api-key": "fgk_flag" }, env, root);
    expect(c.apiKey).toEqual({ value: "fgk_flag", source: "flag" });
    expect(c.url).toEqual({ value: "https://env.example", source: "env" });
    expect(c.adminKey).toEqual({ value: "fga_local", source: "local" });
    expect(c.localFile).toBe(join(root, ".floodgate", "local.json"));
  });

  it("finds .floodgate/local.json by walking up from the working directory", () => {
    writeLocal(join(root, ".floodgate"));
    const deep = join(root, "a", "b", "c");
    mkdirSync(deep, { recursive: true });
    const c = resolveConfig({}, {}, deep);
    expect(userConfig(c)).toEqual({ url: LOCAL.url, apiKey: LOCAL.api_key });
    expect(adminConfig(c)).toEqual({ url: LOCAL.url, adminKey: LOCAL.admin_key });
  });

  it("reads --state DIR/local.json instead of searching, relative to the working directory", () => {
    writeLocal(join(root, ".floodgate"), { ...LOCAL, api_key: "fgk_nearest" });
    writeLocal(join(root, "elsewhere"), { ...LOCAL, api_key: "fgk_state" });
    const c = resolveConfig({ state: "elsewhere" }, {}, root);
    expect(c.apiKey).toEqual({ value: "fgk_state", source: "local" });
  });

  it("refuses a --state folder without local.json, naming it", () => {
    expect(() => resolveConfig({ state: "nowhere" }, {}, root)).toThrow(ConfigError);
    expect(() => resolveConfig({ state: "nowhere" }, {}, root)).toThrow(/--state nowhere: no local.json/);
  });

  it("refuses a local.json that is not one, naming the file", () => {
    writeLocal(join(root, ".floodgate"), "{ not json");
    expect(() => resolveConfig({}, {}, root)).toThrow(/local\.json is not readable JSON/);
    writeLocal(join(root, ".floodgate"), { url: 3 });
    expect(() => resolveConfig({}, {}, root)).toThrow(/is not a floodgate local\.json/);
  });

  it("does not read local.json when flags and environment give everything", () => {
    writeLocal(join(root, ".floodgate"), "{ broken");
    const c = resolveConfig({ url: "http://x", "admin-key": "fga_flag" }, { FLOODGATE_API_KEY: "fgk_env" }, root);
    expect(userConfig(c)).toEqual({ url: "http://x", apiKey: "fgk_env" });
  });

  it("takes an empty environment variable as unset", () => {
    writeLocal(join(root, ".floodgate"));
    const c = resolveConfig({}, { FLOODGATE_API_KEY: "", FLOODGATE_URL: "" }, root);
    expect(c.apiKey?.source).toBe("local");
    expect(c.url?.source).toBe("local");
  });

  it.skipIf(strayLocal)("names the three ways to give a missing key or URL", () => {
    const c = resolveConfig({}, {}, root);
    expect(c.localFile).toBeUndefined();
    expect(() => userConfig(c)).toThrow(ConfigError);
    expect(() => userConfig(c)).toThrow(/--url URL, set FLOODGATE_URL, or start a local stack with `npm start`/);
    const withUrl = resolveConfig({ url: "http://x" }, {}, root);
    expect(() => userConfig(withUrl)).toThrow(/no API key: pass --api-key KEY, set FLOODGATE_API_KEY, or .*npm start/);
    expect(() => adminConfig(withUrl)).toThrow(/no admin key: pass --admin-key KEY, set FLOODGATE_ADMIN_KEY/);
  });
});
