import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { preset, runChaos } from "../chaos/chaos.ts";
import { verdictLine } from "../chaos/checker.ts";

describe("chaos, short run", () => {
  it("under kills, cuts, a partition and an edge restart no accepted job is lost, duplicated or stuck, and stale results are refused", async () => {
    const dir = mkdtempSync(join(tmpdir(), "floodgate-chaos-"));
    const out = join(dir, "history.jsonl");
    const r = await runChaos({ ...preset("short"), seed: 20_260_101, out, log: () => {} });
    const v = r.verdict;
    console.log(verdictLine(v));
    expect(v.problems).toEqual([]);
    expect(v).toMatchObject({ lost: 0, duplicated: 0, stuck: 0, split: 0, stale_accepted: 0 });
    expect(v.accepted).toBe(v.submitted);
    expect(v.stale_refused).toBeGreaterThan(0);
    expect(v.faults).toMatchObject({ partition: 1, "edge.stop": 1, "edge.start": 1 });
    expect(v.faults.kill).toBeGreaterThan(0);
    expect(v.idempotency.triples_one_job).toBe(v.idempotency.triples);
    expect(v.poison.as_expected).toBe(v.poison.jobs);
    // Kept when an assertion fails, to read.
    rmSync(dir, { recursive: true, force: true });
    // Past the stack's start, the submit window and the drain's own cap: a slow run ends with
    // its verdict, not a timeout.
  }, 300_000);
});
