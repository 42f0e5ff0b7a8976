/**
 * `floodgate pools apply FILE.yaml | status` (admin) and `floodgate provisioner` (the
 * operator's process). A pools file is parsed with the `yaml` package and checked by the shared
 * schema, a mistake named by its file, line and column. Called by cli/main.ts.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { z } from "zod";
import { PoolsFile, type PoolsStatus } from "../shared/pools.ts";
import {
  admin,
  ago,
  Conn,
  CONN_ADMIN,
  connection,
  connHelp,
  help,
  JSON_FLAG,
  jsonOut,
  type Runner,
} from "./client-commands.ts";
import { parseFlags, UsageError } from "./flags.ts";
import { parseYamlFile, RolloutFileError } from "./rollout.ts";
import { table } from "./table.ts";

export const POOLS_HELP = `floodgate pools — pools of agents that grow and shrink with demand (admin)

Usage:
  floodgate pools apply FILE.yaml [--json]
      Replace the pools with the file's. A new webhook pool's signing secret is printed once.
  floodgate pools status [--json]
      Per pool: desired, connected and busy agents, and its recent calls with their answers.

A pools file:
  pools:
    cloud-h100:
      models: [demo]
      min: 0                 # agents kept however idle (0: scale to zero)
      max: 64
      priority: 10           # the lowest grows first for a model, the highest shrinks first
      command: ./scale-cloud.sh   # run by \`floodgate provisioner\` with FLOODGATE_POOL,
                                  # FLOODGATE_DESIRED and FLOODGATE_REMOVE (idle agent ids)
      # webhook: https://…   # or called by the edge, signed as Standard Webhooks
      step_up: 16            # agents added per decision at most
      step_down: 1           # agents removed per decision at most
      burst_window_s: 10     # grows at once to the mean need over this window
      window_s: 300          # shrinks only to the mean need over this window
      startup_s: 60          # how long a new agent takes to serve
      cooldown_s: 300        # no shrinking until this long after growing

A pool's agents are those whose agent token names the pool. A busy agent is never named for
removal. \`command: floodgate:local-agents\` is the built-in local pool: the provisioner starts
and stops \`floodgate agent\` processes itself (floodgate dev --autoscale).

Options:
  --json                   the answer as JSON
${connHelp("admin")}`;

/** Reads and checks a pools file: a mistake is a usage error naming its line and column. */
export function readPoolsFile(cwd: string, name: string): { text: string; file: PoolsFile } {
  const path = resolve(cwd, name);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new UsageError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    return { text, file: parseYamlFile(PoolsFile, text, name, "pools") };
  } catch (err) {
    if (err instanceof RolloutFileError) throw new UsageError(err.message);
    throw err;
  }
}

/** The pools table and, under it, each pool's recent calls. */
export function poolsText(status: PoolsStatus, now: number): string {
  if (status.pools.length === 0) return "no pools (floodgate pools apply FILE.yaml)\n";
  const head = table(
    ["POOL", "MODELS", "MIN", "MAX", "DESIRED", "CONNECTED", "BUSY", "BY"],
    status.pools.map((p) => [
      p.name,
      p.spec.models.join(","),
      String(p.spec.min),
      String(p.spec.max),
      String(p.desired),
      String(p.connected),
      String(p.busy),
      p.spec.command !== undefined ? `command ${p.spec.command}` : `webhook ${p.spec.webhook ?? ""}`,
    ]),
  );
  const calls = status.pools.flatMap((p) =>
    p.calls.map((c) => [
      p.name,
      String(c.id),
      ago(c.created_at, now),
      String(c.desired),
      c.remove.length === 0 ? "-" : c.remove.join(","),
      c.answered_at === null ? (c.sent_at === null ? "waiting" : "running") : c.ok ? "ok" : "failed",
      (c.answer ?? c.reason).split("\n").join(" ").slice(0, 60),
    ]),
  );
  return calls.length === 0
    ? head
    : `${head}\n${table(["POOL", "CALL", "WHEN", "DESIRED", "REMOVE", "STATE", "ANSWER / REASON"], calls)}`;
}

export const pools: Runner = async (argv, io) => {
  const [sub, ...rest] = argv;
  if (sub === "apply") {
    const parsed = parseFlags(rest, { ...CONN_ADMIN, ...JSON_FLAG }, z.strictObject(Conn), {
      min: 1,
      max: 1,
      names: "the pools file",
    });
    if (!parsed) return help(io, POOLS_HELP);
    const { text, file } = readPoolsFile(io.cwd, parsed.args[0] as string);
    const out = await admin(connection(parsed.flags, io), io).pools.apply(file, text);
    if (parsed.flags.json) jsonOut(io, out);
    else {
      io.stdout(`applied ${out.pools.length} pool(s): ${out.pools.join(", ")}\n`);
      for (const [pool, secret] of Object.entries(out.secrets)) {
        io.stdout(`webhook secret of ${pool} (shown once): ${secret}\n`);
      }
    }
    return 0;
  }
  if (sub === "status") {
    const parsed = parseFlags(rest, { ...CONN_ADMIN, ...JSON_FLAG }, z.strictObject(Conn), {
      min: 0,
      max: 0,
      names: "",
    });
    if (!parsed) return help(io, POOLS_HELP);
    const status = await admin(connection(parsed.flags, io), io).pools.status();
    if (parsed.flags.json) jsonOut(io, status);
    else io.stdout(poolsText(status, io.now()));
    return 0;
  }
  if (sub === undefined || sub === "--help" || sub === "-h") return help(io, POOLS_HELP);
  throw new UsageError(`unknown pools command ${JSON.stringify(sub)} (try: pools apply, pools status)`);
};
