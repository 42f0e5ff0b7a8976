/**
 * A lock file per version in the host cache, so the agents of one host fetch a version once:
 * the first takes `versions/<model>/<version>.lock` (created exclusively, holding its pid), the
 * others wait until the version is complete or the lock is gone. A lock whose process is dead
 * (agents of a cache share the host, so its pid is checked with signal 0) is broken: renamed
 * aside under a unique name, checked to be the dead one, and removed.
 */
import { randomBytes } from "node:crypto";
import { mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";

export interface HeldLock {
  release: () => Promise<void>;
}

/** Whether a process of this host with that pid lives. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: alive, another user's.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function holder(path: string): Promise<number | undefined> {
  try {
    const pid = Number(JSON.parse(await readFile(path, "utf8")).pid);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Takes the lock at `path`, or answers undefined when a live process holds it. A lock left by a
 * dead process is broken first.
 *
 * @example
 * const lock = await tryLock(`${dir}.lock`);
 * if (lock) try { await fetchIt(); } finally { await lock.release(); }
 */
export async function tryLock(path: string): Promise<HeldLock | undefined> {
  await mkdir(dirname(path), { recursive: true });
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(path, "wx");
      try {
        await fh.writeFile(JSON.stringify({ pid: process.pid, at: new Date().toISOString() }));
      } finally {
        await fh.close();
      }
      return { release: () => rm(path, { force: true }) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const pid = await holder(path);
    // A lock being written has no pid yet: its writer is alive.
    if (pid === undefined || alive(pid)) return undefined;
    const aside = `${path}.${process.pid}.${randomBytes(4).toString("hex")}.stale`;
    try {
      await rename(path, aside);
    } catch {
      continue;
    }
    const moved = await holder(aside);
    if (moved !== pid) {
      // Another process broke the dead lock and took it between our read and our rename: put
      // its live lock back.
      await rename(aside, path).catch(() => undefined);
      return undefined;
    }
    await rm(aside, { force: true });
  }
  return undefined;
}
