/**
 * The built-in models `floodgate dev` registers. Their input schemas bound every option so a
 * job cannot ask a runner for unbounded work.
 */
import type { ModelConfigBody } from "./api.ts";

export const DEMO_MODEL = "demo";

export const DEMO_MODEL_CONFIG: Partial<ModelConfigBody> & Pick<ModelConfigBody, "input_schema"> = {
  input_schema: {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    type: "object",
    additionalProperties: false,
    required: ["prompt"],
    properties: {
      prompt: { type: "string", minLength: 1, maxLength: 2000 },
      seed: { type: "integer", minimum: 0, maximum: 4294967295 },
      steps: { type: "integer", minimum: 1, maximum: 100 },
      frames: { type: "integer", minimum: 1, maximum: 64 },
      size: { type: "integer", minimum: 32, maximum: 512, multipleOf: 16 },
    },
  },
  max_attempts: 3,
  run_timeout_s: 300,
  expected_runtime_s: 5,
};
