import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DEMO_MODEL_CONFIG, REFERENCE_MODEL_CONFIG } from "../shared/models.ts";
import { parseRolloutFile } from "../cli/rollout.ts";
import { VersionManifest } from "../shared/repository.ts";
import { demoManifest, DEMO_VERSION, MODELS_DIR, versionDir } from "./models.ts";

const committed = (model: string, version: string): unknown =>
  JSON.parse(readFileSync(join(versionDir(model, version), "manifest.json"), "utf8"));

describe("the built-in model versions", () => {
  it("the demo model's manifest is what scripts/models.ts writes from shared/models.ts", () => {
    expect(committed("demo", DEMO_VERSION)).toEqual(demoManifest());
  });

  it("the reference model's manifest carries shared/models.ts's input schema, run time and outputs", () => {
    const [version, ...more] = readdirSync(join(MODELS_DIR, "reference"));
    expect(more).toEqual([]);
    const m = VersionManifest.parse(committed("reference", version ?? ""));
    expect(m).toMatchObject({
      model: "reference",
      version,
      runner: "python",
      input_schema: REFERENCE_MODEL_CONFIG.input_schema,
      expected_runtime_s: REFERENCE_MODEL_CONFIG.expected_runtime_s,
      outputs: REFERENCE_MODEL_CONFIG.outputs,
    });
    // Its entry, version and configuration are the generator's: checked by the Python tests.
  });

  it("every built-in version is a valid manifest in a directory named by its model and version", () => {
    for (const model of readdirSync(MODELS_DIR)) {
      if (!statSync(join(MODELS_DIR, model)).isDirectory()) continue;
      for (const version of readdirSync(join(MODELS_DIR, model))) {
        const m = VersionManifest.parse(committed(model, version));
        expect([m.model, m.version]).toEqual([model, version]);
      }
    }
    expect(DEMO_MODEL_CONFIG.input_schema).toEqual(demoManifest().input_schema);
  });

  it("models/rollout.yaml is a valid rollout file naming each built-in model's version as stable", () => {
    const file = join(MODELS_DIR, "rollout.yaml");
    const rollout = parseRolloutFile(readFileSync(file, "utf8"), file);
    const [reference] = readdirSync(join(MODELS_DIR, "reference"));
    expect(rollout.models).toEqual({ demo: { version: DEMO_VERSION }, reference: { version: reference } });
  });

  it("the manifest of docs/models.md's worked example is a valid version manifest", () => {
    const doc = readFileSync(join(MODELS_DIR, "..", "docs", "models.md"), "utf8");
    const block = /<!-- example: fade\/manifest\.json -->\s*```json\n([\s\S]*?)```/.exec(doc)?.[1];
    expect(block).toBeDefined();
    expect(VersionManifest.parse(JSON.parse(block ?? ""))).toMatchObject({
      model: "fade",
      runner: "python",
      max_batch: 8,
    });
  });
});
