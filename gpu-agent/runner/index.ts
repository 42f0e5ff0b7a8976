/**
 * The runner protocol's Node side, as the agent and JavaScript runners use it: `RunnerHost`
 * (agent side: one runner process), `serve`/`main` (runner side), and the stdio framing they
 * share. The protocol itself: docs/runner-protocol.md and shared/runner.ts.
 */
export {
  type RunCallbacks,
  type RunResult,
  type RunnerExit,
  type RunnerExitReason,
  type RunnerFrame,
  type RunnerHello,
  RunnerHost,
  type RunnerHostEvents,
  type RunnerHostOptions,
  type RunnerJob,
  RunnerJobError,
  type RunnerJobErrorCode,
  type RunnerOutput,
  RunnerStartError,
} from "./host.ts";
export {
  FrameDecoder,
  type FrameHandlers,
  type FrameResult,
  type ProtocolError,
  encodeFrame,
  parseBody,
  readFrames,
  writeFrame,
} from "./io.ts";
export { type JobContext, JobFailure, type RunnerModel, type ServeOptions, main, serve } from "./runtime.ts";
