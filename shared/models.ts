/**
 * The built-in models `floodgate dev` registers. Their input schemas bound every option so a
 * job cannot ask a runner for unbounded work.
 */
import type { ModelConfigBody } from "./api.ts";
import { FILE_KEYWORD } from "./files.ts";

const MiB = 1024 * 1024;

/**
 * The outputs every built-in runner produces for a job (gpu-agent/encode.ts encodes the frames
 * into `animation.gif` and `last.png`, and `video.mp4` where ffmpeg runs; both runners write
 * `params.json`): an attempt that does not deliver them has failed.
 */
const VIDEO_OUTPUTS: NonNullable<ModelConfigBody["outputs"]> = {
  required: ["animation.gif", "last.png", "params.json"],
  min: 3,
  content_types: ["image/gif", "image/png", "video/mp4", "application/json"],
  max_bytes: 64 * MiB,
  max_job_bytes: 192 * MiB,
};

/**
 * The input schema of a text-to-video model: a prompt, an optional seed, and bounded steps,
 * frames and frame size (a multiple of 16 pixels).
 */
function videoInput(max: { steps: number; frames: number; size: number }): ModelConfigBody["input_schema"] {
  return {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    type: "object",
    additionalProperties: false,
    required: ["prompt"],
    properties: {
      prompt: { type: "string", minLength: 1, maxLength: 2000 },
      seed: { type: "integer", minimum: 0, maximum: 4294967295 },
      steps: { type: "integer", minimum: 1, maximum: max.steps },
      frames: { type: "integer", minimum: 1, maximum: max.frames },
      size: { type: "integer", minimum: 32, maximum: max.size, multipleOf: 16 },
    },
  };
}

export const DEMO_MODEL = "demo";

/** An input file field of a schema: a file id at submit, a local path for the runner. */
function fileField(what: string) {
  return {
    type: "string",
    [FILE_KEYWORD]: true,
    description: `An input ${what} (a file id from POST /v1/files) for the prompt to transform.`,
  };
}

/**
 * The demo's input: a text-to-video model's, and video to video: `video` or `image`, an input
 * file (its id at submit; the runner gets a local path) that the prompt transforms.
 */
function demoInput(): ModelConfigBody["input_schema"] {
  const base = videoInput({ steps: 100, frames: 64, size: 512 });
  return {
    ...base,
    properties: {
      ...(base.properties as Record<string, unknown>),
      video: fileField("video"),
      image: fileField("image"),
    },
    not: { required: ["video", "image"] },
  };
}

export const DEMO_MODEL_CONFIG: Partial<ModelConfigBody> & Pick<ModelConfigBody, "input_schema"> = {
  input_schema: demoInput(),
  max_attempts: 3,
  run_timeout_s: 300,
  expected_runtime_s: 5,
  outputs: VIDEO_OUTPUTS,
};
/**
 * The PyTorch runner's reference model (`floodgate agent --runner python --model reference`): a
 * small text-to-video latent diffusion pipeline with random weights. The bounds match the
 * runner's own checks (gpu-agent/python/floodgate_runner/reference/model.py); the latents are
 * 1/8 of the size and the DiT's patches 2 latents wide, hence multiples of 16.
 */
export const REFERENCE_MODEL = "reference";

export const REFERENCE_MODEL_CONFIG: Partial<ModelConfigBody> & Pick<ModelConfigBody, "input_schema"> = {
  input_schema: videoInput({ steps: 50, frames: 32, size: 256 }),
  max_attempts: 3,
  run_timeout_s: 600,
  expected_runtime_s: 10,
  outputs: VIDEO_OUTPUTS,
};

/** Every model `floodgate dev` registers, by name; the local agent token covers them all. */
export const BUILT_IN_MODELS = { [DEMO_MODEL]: DEMO_MODEL_CONFIG, [REFERENCE_MODEL]: REFERENCE_MODEL_CONFIG } as const;
