/**
 * The files that put agents on GPU hosts, checked with the tools this machine has: the Dockerfile
 * by dockerfile-utils' linter, the systemd unit by `systemd-analyze verify`, every shell script
 * of the repository by shellcheck, and the Kubernetes manifest against the Kubernetes schemas
 * (kubernetes-models' validators, and its types for unknown fields: no network). Each also agrees
 * with the agent: the drain a supervisor waits for, the Node the project pins, the cache.
 * scripts/setup.sh installs shellcheck and systemd-analyze where they are missing.
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { validate as lintDockerfile } from "dockerfile-utils";
import { DaemonSet, type IDaemonSet } from "kubernetes-models/apps/v1";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { AgentConfig, DRAIN_EXIT_MARGIN_S } from "../gpu-agent/config.ts";

const ROOT = join(import.meta.dirname, "..");
const DOCKERFILE = join(ROOT, "packaging", "docker", "Dockerfile");
const UNIT = join(ROOT, "packaging", "systemd", "floodgate-agent@.service");
const DAEMONSET = join(ROOT, "packaging", "kubernetes", "daemonset.yaml");

/** The agent's drain and what a supervisor waits in all (s). */
const DRAIN_S = AgentConfig.parse({ url: "http://x.test", token: "t".repeat(20) }).drain_timeout_s;
const STOP_S = DRAIN_S + DRAIN_EXIT_MARGIN_S;

function tool(command: string, args: string[], cwd = ROOT): { status: number | null; out: string; err: string } {
  const r = spawnSync(command, args, { cwd, encoding: "utf8" });
  if (r.error) throw new Error(`${command} is missing: run bash scripts/setup.sh (${r.error.message})`);
  return { status: r.status, out: r.stdout, err: r.stderr };
}

/** `KEY=value` lines of a unit's section, by key (last wins), and every Environment= assignment. */
function unitKeys(text: string): { keys: Map<string, string>; env: Map<string, string> } {
  const keys = new Map<string, string>();
  const env = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (!m) continue;
    keys.set(m[1] as string, m[2] as string);
    if (m[1] === "Environment") {
      const eq = (m[2] as string).indexOf("=");
      env.set((m[2] as string).slice(0, eq), (m[2] as string).slice(eq + 1));
    }
  }
  return { keys, env };
}

describe("the agent's Dockerfile", () => {
  const text = readFileSync(DOCKERFILE, "utf8");

  it("passes dockerfile-utils' linter with no error or warning", () => {
    const problems = lintDockerfile(text).map((d) => `line ${d.range.start.line + 1}: ${d.message}`);
    expect(problems).toEqual([]);
  });

  it("takes the CUDA base as a build argument and the Node the project pins", () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { devDependencies: { node: string } };
    expect(text).toMatch(/^ARG BASE_IMAGE=nvidia\/cuda:\S+$/m);
    expect(text).toMatch(/^FROM \$\{BASE_IMAGE\}$/m);
    expect(/^ARG NODE_VERSION=(\S+)$/m.exec(text)?.[1]).toBe(pkg.devDependencies.node);
  });

  it("runs as a non-root user, keeps the cache in a volume, and drains on SIGTERM for the agent's drain", () => {
    expect(/^USER (\d+)/m.exec(text)?.[1]).not.toBe("0");
    expect(text).toMatch(/^VOLUME \["\/var\/cache\/floodgate"\]$/m);
    expect(text).toMatch(/FLOODGATE_CACHE_DIR=\/var\/cache\/floodgate/);
    expect(text).toMatch(/^STOPSIGNAL SIGTERM$/m);
    expect(text).toMatch(/^ENTRYPOINT \["tini", "--", "floodgate", "agent"\]$/m);
    expect(/FLOODGATE_DRAIN_TIMEOUT_S=(\d+)/.exec(text)?.[1]).toBe(String(DRAIN_S));
    expect(text).toContain(`--stop-timeout ${STOP_S}`);
  });
});

describe("the agent's systemd unit", () => {
  const text = readFileSync(UNIT, "utf8");

  it("passes systemd-analyze verify, as an instance for one GPU", () => {
    const dir = mkdtempSync(join(tmpdir(), "floodgate-unit-"));
    copyFileSync(UNIT, join(dir, "floodgate-agent@0.service"));
    const r = tool("systemd-analyze", ["verify", "--man=no", join(dir, "floodgate-agent@0.service")], dir);
    // verify reports a bad key or value on stderr and may still exit 0.
    expect(r.err.split("\n").filter((l) => l.includes("floodgate-agent"))).toEqual([]);
    expect(r.status).toBe(0);
  });

  it("sends SIGTERM to the agent alone and waits its drain before killing", () => {
    const { keys, env } = unitKeys(text);
    expect(keys.get("KillSignal")).toBe("SIGTERM");
    // control-group would signal the runner too, ending its jobs before the agent could drain.
    expect(keys.get("KillMode")).toBe("mixed");
    expect(keys.get("TimeoutStopSec")).toBe(String(STOP_S));
    expect(env.get("FLOODGATE_DRAIN_TIMEOUT_S")).toBe(String(DRAIN_S));
    expect(env.get("FLOODGATE_GPUS")).toBe("%i");
    expect(keys.get("User")).toBe("floodgate");
  });
});

/**
 * Type-checks manifests as object literals of kubernetes-models' types: the schemas allow unknown
 * keys, the types' excess-property checks do not. Answers the compiler's messages.
 */
function unknownFields(docs: readonly IDaemonSet[]): string[] {
  const file = join(ROOT, "packaging", "kubernetes", "__manifest_check__.ts");
  const source = `import type { IDaemonSet } from "kubernetes-models/apps/v1";\n${docs
    .map((d, i) => `export const doc${i}: IDaemonSet = ${JSON.stringify(d)};`)
    .join("\n")}\n`;
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    target: ts.ScriptTarget.ES2022,
    skipLibCheck: true,
    types: [],
  };
  // The file exists only in memory; imports resolve from the repository's node_modules.
  const host = ts.createCompilerHost(options);
  const read = host.getSourceFile.bind(host);
  const exists = host.fileExists.bind(host);
  host.getSourceFile = (name, lang, ...rest) =>
    name === file ? ts.createSourceFile(name, source, lang) : read(name, lang, ...rest);
  host.fileExists = (name) => name === file || exists(name);
  return ts
    .getPreEmitDiagnostics(ts.createProgram([file], options, host))
    .map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
}

describe("the Kubernetes DaemonSet", () => {
  const docs = parseAllDocuments(readFileSync(DAEMONSET, "utf8")).map((d) => d.toJS() as IDaemonSet);

  it("is valid against the Kubernetes schemas", () => {
    expect(docs).toHaveLength(1);
    for (const doc of docs) expect(() => new DaemonSet(doc).validate()).not.toThrow();
  });

  it("has no field the Kubernetes types do not know (the API would drop a misspelt key)", () => {
    expect(unknownFields(docs)).toEqual([]);
    const typo = structuredClone(docs[0]!) as unknown as { spec: { template: { spec: Record<string, unknown> } } };
    typo.spec.template.spec.terminationGracePeriodSecond = 630;
    expect(unknownFields([typo as unknown as IDaemonSet]).join("\n")).toMatch(/terminationGracePeriodSecond/);
    // Two TypeScript programs over kubernetes-models' types: several seconds each on a busy machine.
  }, 60_000);

  it("asks for GPUs, keeps the cache on the host, takes the token from a Secret, and waits the agent's drain", () => {
    const spec = docs[0]!.spec!.template.spec!;
    expect(spec.terminationGracePeriodSeconds).toBe(STOP_S);
    const agent = spec.containers.find((c) => c.name === "agent")!;
    expect(agent.resources?.limits?.["nvidia.com/gpu"]).toBeDefined();
    const env = new Map((agent.env ?? []).map((e) => [e.name, e]));
    expect(env.get("FLOODGATE_DRAIN_TIMEOUT_S")?.value).toBe(String(DRAIN_S));
    expect(env.get("FLOODGATE_AGENT_TOKEN")?.valueFrom?.secretKeyRef?.key).toBe("token");
    const cacheDir = env.get("FLOODGATE_CACHE_DIR")?.value;
    const mount = agent.volumeMounts?.find((m) => m.mountPath === cacheDir);
    expect(spec.volumes?.find((v) => v.name === mount?.name)?.hostPath?.path).toBe("/var/cache/floodgate");
    expect(spec.securityContext?.runAsNonRoot).toBe(true);
  });

  it("a value of the wrong type is refused by the schemas", () => {
    const bad = structuredClone(docs[0]!) as unknown as { spec: { template: { spec: Record<string, unknown> } } };
    bad.spec.template.spec.terminationGracePeriodSeconds = "630";
    expect(() => new DaemonSet(bad as unknown as IDaemonSet).validate()).toThrow(/must be integer/);
  });
});

describe("the repository's shell scripts", () => {
  it("pass shellcheck", () => {
    const files = tool("git", ["ls-files"])
      .out.split("\n")
      .filter(Boolean)
      .filter((f) => {
        if (f.endsWith(".sh")) return true;
        if (f.includes(".") && !f.startsWith(".ci/")) return false;
        try {
          return /^#!.*\b(ba)?sh\b/.test(readFileSync(join(ROOT, f), "utf8").slice(0, 64));
        } catch {
          return false;
        }
      });
    expect(files).toEqual(expect.arrayContaining([".ci/run", "scripts/setup.sh"]));
    const r = tool("shellcheck", ["--severity=style", ...files]);
    expect(r.out + r.err).toBe("");
    expect(r.status).toBe(0);
  });
});
