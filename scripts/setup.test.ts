/**
 * scripts/setup.sh, run for real in a controlled machine: a PATH holding only stand-ins for
 * what sits outside the project (apt-get, sudo, ffmpeg), the real /usr/bin/python3 with the
 * Python modules made present or absent, and, where these tests run as root, a real drop to
 * an unprivileged user (setpriv) for the "not root" cases.
 */
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const REPO = resolve(import.meta.dirname, "..");
const SCRIPT = join(REPO, "scripts", "setup.sh");
const PYTHON = "/usr/bin/python3";
const ROOT = process.getuid?.() === 0;
/** Generous for a busy machine: the script itself takes tens of ms (ms). */
const AT_ONCE_MS = 3_000;
const PY_PACKAGES = "python3-torch python3-msgpack python3-numpy";

function which(name: string): string {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  throw new Error(`${name} is not on the PATH`);
}

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface Machine {
  /** The Python modules torch, msgpack and numpy can be found. */
  python: boolean;
  ffmpeg: boolean;
  /** shellcheck and systemd-analyze are there (default true). */
  checkers?: boolean;
  /** Chromium is there unless false. */
  chromium?: boolean;
  aptGet: boolean;
  /** undefined: no sudo; true: passwordless; false: asks for a password. */
  sudo?: boolean;
  /** Run as an unprivileged user (setpriv to nobody when these tests run as root). */
  asUser?: boolean;
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  ms: number;
  /** Every apt-get and sudo call, one line each. */
  calls: string[];
}

function runSetup(m: Machine): Run {
  const dir = mkdtempSync(join(tmpdir(), "floodgate-setup-"));
  dirs.push(dir);
  // Readable and writable by the unprivileged user too.
  chmodSync(dir, 0o777);
  const bin = join(dir, "bin");
  mkdirSync(bin, { mode: 0o755 });
  const log = join(dir, "calls.log");
  writeFileSync(log, "", { mode: 0o666 });
  chmodSync(log, 0o666);
  const fake = (name: string, body: string): void => {
    writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  };
  symlinkSync(which("env"), join(bin, "env"));
  if (m.aptGet) fake("apt-get", `echo "apt-get $*" >> "${log}"`);
  if (m.sudo !== undefined)
    fake("sudo", `echo "sudo $*" >> "${log}"\n[ "$2" = true ] && exit ${m.sudo ? 0 : 1}\nexit 0`);
  if (m.ffmpeg) fake("ffmpeg", "exit 0");
  if (m.checkers !== false) {
    fake("shellcheck", "exit 0");
    fake("systemd-analyze", "exit 0");
  }
  if (m.chromium !== false) fake("chromium", "exit 0");
  // The real interpreter without its site packages (-S), finding the modules only where
  // PYTHONPATH points: a folder of stand-in packages, or nowhere.
  const modules = join(dir, "modules");
  for (const name of ["torch", "msgpack", "numpy"]) {
    mkdirSync(join(modules, name), { recursive: true, mode: 0o755 });
    writeFileSync(join(modules, name, "__init__.py"), "", { mode: 0o644 });
  }
  fake("python", `PYTHONPATH="${m.python ? modules : join(dir, "none")}" exec ${PYTHON} -S "$@"`);

  // The script itself, copied where the unprivileged user can read it whatever the checkout's modes.
  const script = join(dir, "setup.sh");
  copyFileSync(SCRIPT, script);
  chmodSync(script, 0o755);
  const env = { PATH: bin, FLOODGATE_SETUP_PYTHON: join(bin, "python") };
  const drop = m.asUser && ROOT;
  const [cmd, args] = drop
    ? [which("setpriv"), ["--reuid=65534", "--regid=65534", "--clear-groups", which("bash"), script]]
    : [which("bash"), [script]];
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { cwd: dir, env, encoding: "utf8", timeout: 30_000 });
  const ms = performance.now() - t0;
  return {
    status: r.status,
    stdout: r.stdout,
    stderr: r.stderr,
    ms,
    calls: readFileSync(log, "utf8").split("\n").filter(Boolean),
  };
}

describe("scripts/setup.sh", () => {
  it("with every package present it exits 0 at once, prints nothing and runs neither apt-get nor sudo", () => {
    const r = runSetup({ python: true, ffmpeg: true, aptGet: true, sudo: true });
    expect(r.stderr + r.stdout).toBe("");
    expect(r.status).toBe(0);
    expect(r.calls).toEqual([]);
    expect(r.ms).toBeLessThan(AT_ONCE_MS);
  });

  it("without apt-get it stops at once, non-zero, with the one apt-get command that installs what is missing", () => {
    const r = runSetup({ python: false, ffmpeg: false, chromium: false, aptGet: false, sudo: true });
    expect(r.status).not.toBe(0);
    expect(r.ms).toBeLessThan(AT_ONCE_MS);
    expect(r.calls).toEqual([]);
    const sudo = ROOT ? "" : "sudo ";
    expect(r.stderr).toContain(
      `  ${sudo}apt-get update && ${sudo}apt-get install -y --no-install-recommends ${PY_PACKAGES} ffmpeg chromium\n`,
    );
    expect(r.stderr).toContain("no apt-get");
  });

  it("not root and without sudo it stops at once, non-zero, with the sudo command and runs apt-get not at all", () => {
    const r = runSetup({ python: false, ffmpeg: true, aptGet: true, asUser: true });
    expect(r.status).not.toBe(0);
    expect(r.ms).toBeLessThan(AT_ONCE_MS);
    expect(r.calls).toEqual([]);
    expect(r.stderr).toContain(
      `  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${PY_PACKAGES}\n`,
    );
  });

  it("not root where sudo asks for a password it stops at once with the sudo command and never waits for one", () => {
    const r = runSetup({ python: true, ffmpeg: false, aptGet: true, sudo: false, asUser: true });
    expect(r.status).not.toBe(0);
    expect(r.ms).toBeLessThan(AT_ONCE_MS);
    // Only the non-interactive probe ran.
    expect(r.calls).toEqual(["sudo -n true"]);
    expect(r.stderr).toContain("  sudo apt-get update && sudo apt-get install -y --no-install-recommends ffmpeg\n");
  });

  it("not root with passwordless sudo it installs exactly the missing packages through sudo -n", () => {
    const r = runSetup({ python: false, ffmpeg: true, aptGet: true, sudo: true, asUser: true });
    expect(r.status).toBe(0);
    expect(r.calls).toEqual([
      "sudo -n true",
      "sudo -n apt-get update",
      `sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${PY_PACKAGES}`,
    ]);
  });

  it.runIf(ROOT)("as root it installs exactly the missing packages with apt-get itself, without sudo", () => {
    const r = runSetup({ python: true, ffmpeg: false, aptGet: true, sudo: true });
    expect(r.status).toBe(0);
    expect(r.calls).toEqual(["apt-get update", "apt-get install -y --no-install-recommends ffmpeg"]);
  });

  it("npm test runs it before anything else: lacking a package it cannot install, npm test stops at once with the command", () => {
    const dir = mkdtempSync(join(tmpdir(), "floodgate-setup-npm-"));
    dirs.push(dir);
    const bin = join(dir, "bin");
    mkdirSync(bin);
    // A machine with bash, sh and Node but neither apt-get, ffmpeg, the checkers, Chromium nor the Python modules.
    for (const name of ["bash", "sh", "env"]) symlinkSync(which(name), join(bin, name));
    symlinkSync(process.execPath, join(bin, "node"));
    writeFileSync(join(bin, "python"), `#!/bin/sh\nexec ${PYTHON} -S -I "$@"\n`, { mode: 0o755 });
    const npm = process.env.npm_execpath ?? realpathSync(which("npm"));
    const t0 = performance.now();
    const r = spawnSync(process.execPath, [npm, "test"], {
      cwd: REPO,
      encoding: "utf8",
      timeout: 60_000,
      env: {
        PATH: bin,
        HOME: dir,
        FLOODGATE_SETUP_PYTHON: join(bin, "python"),
        npm_config_update_notifier: "false",
        npm_config_cache: join(dir, "npm-cache"),
      },
    });
    expect(r.status).not.toBe(0);
    expect(performance.now() - t0).toBeLessThan(15_000);
    const sudo = ROOT ? "" : "sudo ";
    expect(r.stderr).toContain(
      `  ${sudo}apt-get update && ${sudo}apt-get install -y --no-install-recommends ${PY_PACKAGES} ffmpeg shellcheck systemd chromium\n`,
    );
    // Nothing of the suite ran: not even the format check, its first step.
    expect(r.stdout + r.stderr).not.toContain("oxfmt");
  });

  it("is the one list of system packages: .ci/run installs through it and names no package itself", () => {
    const commands = readFileSync(join(REPO, ".ci", "run"), "utf8")
      .split("\n")
      .filter((line) => !line.startsWith("#"));
    expect(commands).toContain("bash scripts/setup.sh");
    expect(commands.join("\n")).not.toMatch(/apt-get|python3-|ffmpeg|shellcheck|systemd/);
  });
});
