/**
 * `floodgate capacity` (admin): per model, the agents connected and the agents that keep every
 * tier within its SLO (the demand signal, shared/capacity.ts), busy and total slots, queued
 * jobs and the seconds until the first SLO breach at the present capacity. Called by
 * cli/main.ts.
 */
import { z } from "zod";
import type { CapacityView } from "../shared/capacity.ts";
import {
  admin,
  Conn,
  CONN_ADMIN,
  connection,
  connHelp,
  help,
  JSON_FLAG,
  jsonOut,
  type Runner,
} from "./client-commands.ts";
import { parseFlags } from "./flags.ts";
import { table } from "./table.ts";

const CAPACITY_HELP = `floodgate capacity — agents each model has and needs (admin)

Usage:
  floodgate capacity [--json]

Per model: agents connected, agents needed to keep every tier within its SLO (from queue
depth per tier, measured run times, the grant rate, connected agents' slots and each tier's
SLO headroom), busy and total slots, queued jobs, and the seconds until the first queued job
passes its SLO if nothing changes ("-": none will).
${connHelp("admin")}`;

/** The capacity table, one row per model, models by name. */
export function capacityTable(view: CapacityView): string {
  const rows = Object.entries(view.models)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([model, m]) => [
      model,
      String(m.agents_connected),
      String(m.agents_needed),
      `${m.slots_busy}/${m.slots_total}`,
      String(m.queued),
      m.first_breach_s === null ? "-" : `${m.first_breach_s} s`,
    ]);
  return table(["MODEL", "AGENTS", "NEEDED", "SLOTS BUSY", "QUEUED", "FIRST BREACH"], rows);
}

export const capacity: Runner = async (argv, io) => {
  const parsed = parseFlags(argv, { ...CONN_ADMIN, ...JSON_FLAG }, z.strictObject(Conn), { min: 0, max: 0, names: "" });
  if (!parsed) return help(io, CAPACITY_HELP);
  const view = await admin(connection(parsed.flags, io), io).capacity.read();
  if (parsed.flags.json) jsonOut(io, view);
  else io.stdout(Object.keys(view.models).length === 0 ? "no models registered\n" : capacityTable(view));
  return 0;
};
