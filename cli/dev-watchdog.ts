/**
 * The launcher's watchdog, started by `floodgate dev` (cli/dev-instance.ts) in a session of its
 * own with a pipe on stdin whose other end only the launcher holds. The pipe ends when the
 * launcher exits, however it exits: a clean stop (the launcher has stopped everything and
 * dropped its record) or a death (SIGKILL, a closed terminal). Either way the watchdog then
 * stops whatever that launcher started for the state and still runs, and exits.
 *
 * Usage: node cli/dev-watchdog.ts <state dir> <launcher pid>:<launcher start>
 */
import { appendFileSync } from "node:fs";
import { join } from "node:path";
import { ProcessRef, stopLeftovers } from "./dev-instance.ts";

const [state, token] = process.argv.slice(2);
const colon = token?.indexOf(":") ?? -1;
const owner = ProcessRef.safeParse({ pid: Number(token?.slice(0, colon)), start: token?.slice(colon + 1) });
if (state === undefined || !owner.success) {
  process.stderr.write("usage: dev-watchdog.ts <state dir> <launcher pid>:<launcher start>\n");
  process.exit(2);
}

// Its session has no terminal, but a stray hangup or interrupt must not end the watch early.
for (const sig of ["SIGHUP", "SIGINT"] as const) process.on(sig, () => {});

const note = (line: string): void => {
  try {
    appendFileSync(join(state, "watchdog.log"), `${new Date().toISOString()} ${line}\n`);
  } catch {
    // the state directory may be gone; nothing else to tell
  }
};

let done = false;
const onLauncherGone = async (): Promise<void> => {
  if (done) return;
  done = true;
  const { found, left } = await stopLeftovers(state, owner.data);
  if (found > 0) note(`launcher ${owner.data.pid} gone; stopped ${found - left.length} of its processes`);
  if (left.length > 0) note(`launcher ${owner.data.pid} gone; pids ${left.join(", ")} would not stop`);
  process.exit(left.length > 0 ? 1 : 0);
};
process.stdin.on("end", () => void onLauncherGone());
process.stdin.on("close", () => void onLauncherGone());
process.stdin.on("error", () => void onLauncherGone());
process.stdin.resume();
