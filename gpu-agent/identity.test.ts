import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { AgentId } from "../shared/wire.ts";
import { claimIdentity, identityGroup, processStart, STALE_OWNER_MS, type Identity } from "./identity.ts";

const held: Identity[] = [];
afterEach(() => {
  for (const i of held.splice(0)) i.release();
});

function claim(dir: string, group = "all"): Identity {
  const id = claimIdentity(dir, group);
  held.push(id);
  return id;
}

function cacheDir(): string {
  return mkdtempSync(join(tmpdir(), "floodgate-identity-"));
}

describe("agent identity", () => {
  it("agents holding identities at once in one directory get distinct ids", () => {
    const dir = cacheDir();
    const ids = [claim(dir), claim(dir), claim(dir)].map((i) => i.agentId);
    for (const id of ids) expect(AgentId.safeParse(id).success).toBe(true);
    expect(new Set(ids).size).toBe(3);
  });

  it("an agent that gives its identity up and starts again gets the same id back", () => {
    const dir = cacheDir();
    const first = claimIdentity(dir, "all");
    const id = first.agentId;
    first.release();
    expect(claim(dir).agentId).toBe(id);
  });

  it("a killed agent's slot goes to the next agent that starts, with the same id", () => {
    const dir = cacheDir();
    const script = `import { claimIdentity } from ${JSON.stringify(join(import.meta.dirname, "identity.ts"))};
      const i = claimIdentity(${JSON.stringify(dir)}, "all"); process.stdout.write(i.agentId);`;
    // The child exits without releasing: its owner file names a pid that no longer runs.
    const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    expect(child.status).toBe(0);
    expect(claim(dir).agentId).toBe(child.stdout);
  });

  it("a slot whose owner pid was reused by another process is free", () => {
    const dir = cacheDir();
    const first = claimIdentity(dir, "all");
    const id = first.agentId;
    // Our own pid, but another start time: the pid was reused since the owner wrote it.
    const owner = join(dir, "identity", "all", "0", "owner");
    writeFileSync(
      owner,
      JSON.stringify({ pid: process.pid, start: (processStart(process.pid) ?? 0) + 1, host: hostname() }),
    );
    expect(claim(dir).agentId).toBe(id);
  });

  it("an owner on another host holds its slot until it stops touching the file", () => {
    const dir = cacheDir();
    const first = claimIdentity(dir, "all");
    const id = first.agentId;
    const owner = join(dir, "identity", "all", "0", "owner");
    writeFileSync(owner, JSON.stringify({ pid: 1, start: 1, host: `${hostname()}-elsewhere` }));
    expect(claim(dir).agentId).not.toBe(id);
    const old = new Date(Date.now() - STALE_OWNER_MS - 1000);
    utimesSync(owner, old, old);
    expect(claim(dir).agentId).toBe(id);
  });

  it("each GPU selection has its own identities", () => {
    const dir = cacheDir();
    expect(identityGroup("all")).toBe("all");
    expect(identityGroup([1, 0])).toBe("gpu0-1");
    const a = claim(dir, identityGroup([0]));
    const b = claim(dir, identityGroup([1]));
    expect(a.agentId).not.toBe(b.agentId);
    expect(a.slot).toBe(join("identity", "gpu0", "0"));
  });

  it("renew gives the slot a fresh id that it keeps from then on", () => {
    const dir = cacheDir();
    const first = claimIdentity(dir, "all");
    const old = first.agentId;
    const fresh = first.renew();
    expect(fresh).not.toBe(old);
    expect(first.agentId).toBe(fresh);
    expect(readFileSync(join(dir, "identity", "all", "0", "id"), "utf8").trim()).toBe(fresh);
    first.release();
    expect(claim(dir).agentId).toBe(fresh);
  });

  it("eight agents starting together in separate processes never share an id", async () => {
    const dir = cacheDir();
    const script = `import { claimIdentity } from ${JSON.stringify(join(import.meta.dirname, "identity.ts"))};
      const i = claimIdentity(${JSON.stringify(dir)}, "all"); process.stdout.write(i.agentId + "\\n");
      process.stdin.resume(); process.stdin.on("end", () => process.exit(0));`;
    const children = Array.from({ length: 8 }, () =>
      spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["pipe", "pipe", "inherit"] }),
    );
    try {
      const ids = await Promise.all(
        children.map(
          (c) =>
            new Promise<string>((res, rej) => {
              let out = "";
              c.stdout.on("data", (d: Buffer) => {
                out += d.toString();
                if (out.endsWith("\n")) res(out.trim());
              });
              c.once("exit", (code) => rej(new Error(`claimer exited ${code}`)));
            }),
        ),
      );
      expect(new Set(ids).size).toBe(8);
    } finally {
      for (const c of children) c.stdin.end();
    }
  }, 60_000);
});
