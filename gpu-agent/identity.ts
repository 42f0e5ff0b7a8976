/**
 * Agent identity: which agent id this process speaks as. An id belongs to one agent process at
 * a time and survives that agent's restarts, while any number of agents started on one machine
 * from the same directory, with the same flags, get distinct ids — an 8-GPU host runs one agent
 * per GPU and they share the weight cache, so identity cannot be "one id per cache directory".
 *
 * Layout, under the cache directory:
 *
 *   identity/<group>/<slot>/id      the slot's agent id (agt_…), written once
 *   identity/<group>/<slot>/owner   {pid, start, host, at}: the process holding the slot
 *
 * `group` names what the agent serves with (its GPU selection: `all`, `gpu0`, `gpu0-1`), so an
 * agent pinned to GPU 3 gets GPU 3's id back after a restart. Inside a group an agent takes the
 * lowest slot no live process holds; the owner file is created exclusively (`wx`), so two agents
 * starting together never take one slot. A slot is free when its owner file is missing, names a
 * process of this host that is gone (its pid no longer runs, or runs with another start time: the
 * pid was reused), or — for an owner on another host sharing the directory — has not been
 * touched for {@link STALE_OWNER_MS}. A live agent touches its owner file every
 * {@link TOUCH_MS}. The edge backs this up: a second live process presenting an id is refused
 * (close 4410, docs/protocol.md), and {@link Identity.renew} then gives the slot a fresh id.
 *
 * Called by gpu-agent/main.ts once per agent process.
 */
import { randomBytes } from "node:crypto";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { AgentId } from "../shared/wire.ts";
import { alive } from "./versions/lock.ts";

/** An owner file on another host untouched for this long is taken for dead (ms). */
export const STALE_OWNER_MS = 60_000;
/** How often a live agent touches its owner file (ms). */
export const TOUCH_MS = 15_000;
/** A takeover directory older than this was left by a process that died inside it (ms). */
const TAKEOVER_STALE_MS = 10_000;
/** Slots tried before giving up: far more agents than any host runs from one directory. */
const MAX_SLOTS = 1024;

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

/** A fresh agent id: `agt_` and 16 random base32 characters. */
export function newAgentId(): string {
  return `agt_${[...randomBytes(16)].map((b) => ALPHABET[b & 31]).join("")}`;
}

interface Owner {
  pid: number;
  /** The process's start time as the kernel counts it (clock ticks since boot), or 0 if unknown. */
  start: number;
  host: string;
}

/** Start time of a process from /proc (Linux), so a reused pid is not taken for its old owner. */
export function processStart(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 22, counted after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const start = Number(fields[19]);
    return Number.isFinite(start) ? start : undefined;
  } catch {
    return undefined;
  }
}

/** Whether the owner file at `path` names a process that still holds its slot. */
function held(path: string, now: number): boolean {
  let text: string;
  let touched: number;
  try {
    text = readFileSync(path, "utf8");
    touched = statSync(path).mtimeMs;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
  let owner: Partial<Owner>;
  try {
    owner = JSON.parse(text) as Partial<Owner>;
  } catch {
    // Being written by an owner that created it just now: held, unless it died doing so.
    return now - touched < TAKEOVER_STALE_MS;
  }
  if (owner.host !== hostname()) return now - touched < STALE_OWNER_MS;
  if (typeof owner.pid !== "number" || !alive(owner.pid)) return false;
  const start = processStart(owner.pid);
  return start === undefined || !owner.start || start === owner.start;
}

/** Creates an owner file exclusively; `undefined` when another process created it first. */
function create(ownerFile: string): number | undefined {
  try {
    return openSync(ownerFile, "wx");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return undefined;
    throw err;
  }
}

/**
 * Takes a slot whose owner is gone. Only one process at a time may clear a dead owner's file
 * (an exclusive `takeover` directory): two agents clearing it together could each delete the
 * file the other had just made, and both hold the slot. A takeover left by a process that died
 * inside it is cleared after {@link TAKEOVER_STALE_MS}.
 */
function takeOver(dir: string, ownerFile: string, now: number): number | undefined {
  if (held(ownerFile, now)) return undefined;
  const mutex = join(dir, "takeover");
  try {
    mkdirSync(mutex);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    try {
      if (now - statSync(mutex).mtimeMs > TAKEOVER_STALE_MS) rmSync(mutex, { recursive: true, force: true });
    } catch {
      // gone meanwhile
    }
    return undefined;
  }
  try {
    if (held(ownerFile, now)) return undefined;
    rmSync(ownerFile, { force: true });
    return create(ownerFile);
  } finally {
    rmSync(mutex, { recursive: true, force: true });
  }
}

/** The slot's agent id, made on first use. */
function slotId(dir: string): string {
  const file = join(dir, "id");
  if (existsSync(file)) {
    const id = AgentId.safeParse(readFileSync(file, "utf8").trim());
    if (id.success) return id.data;
  }
  const id = newAgentId();
  // Written whole under another name, then renamed: a reader never sees half an id.
  writeFileSync(`${file}.${process.pid}`, id + "\n");
  renameSync(`${file}.${process.pid}`, file);
  return id;
}

/** The identity an agent process holds until it exits. */
export interface Identity {
  readonly agentId: string;
  /** `identity/<group>/<slot>`, for logs. */
  readonly slot: string;
  /** Replaces this slot's id with a fresh one (the edge refused the old one as in use elsewhere). */
  renew(): string;
  /** Gives the slot up (on exit; a killed process gives it up by dying). */
  release(): void;
}

/** The group name of a GPU selection: `all`, or `gpu` and the indices (`gpu0-1`). */
export function identityGroup(gpus: "all" | readonly number[]): string {
  return gpus === "all" ? "all" : `gpu${[...gpus].sort((a, b) => a - b).join("-")}`;
}

/**
 * Takes the lowest free identity slot of `group` under `cacheDir` for this process.
 *
 * @example
 * const identity = claimIdentity(".floodgate/agent", identityGroup("all"));
 * connect(identity.agentId);
 * process.on("exit", () => identity.release());
 */
export function claimIdentity(cacheDir: string, group: string, now = Date.now()): Identity {
  const me: Owner = { pid: process.pid, start: processStart(process.pid) ?? 0, host: hostname() };
  for (let n = 0; n < MAX_SLOTS; n++) {
    const dir = join(cacheDir, "identity", group, String(n));
    mkdirSync(dir, { recursive: true });
    const ownerFile = join(dir, "owner");
    const fd = existsSync(ownerFile) ? takeOver(dir, ownerFile, now) : create(ownerFile);
    if (fd === undefined) continue;
    writeSync(fd, JSON.stringify(me));
    closeSync(fd);
    let agentId = slotId(dir);
    const touch = setInterval(() => {
      const t = new Date();
      try {
        utimesSync(ownerFile, t, t);
      } catch {
        // The directory went away; the edge still refuses a second live holder of the id.
      }
    }, TOUCH_MS);
    touch.unref();
    return {
      get agentId() {
        return agentId;
      },
      slot: join("identity", group, String(n)),
      renew: () => {
        rmSync(join(dir, "id"), { force: true });
        agentId = slotId(dir);
        return agentId;
      },
      release: () => {
        clearInterval(touch);
        try {
          const owner = JSON.parse(readFileSync(ownerFile, "utf8")) as Partial<Owner>;
          if (owner.pid === me.pid && owner.host === me.host) rmSync(ownerFile, { force: true });
        } catch {
          // already gone
        }
      },
    };
  }
  throw new Error(`more than ${MAX_SLOTS} agents hold identities in ${cacheDir}/identity/${group}`);
}
