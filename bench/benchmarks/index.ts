/**
 * The registry of benchmarks `npm run bench -- <name>` knows. To add one, write a module in
 * this folder exporting a {@link Benchmark} and list it here.
 */
import type { Benchmark } from "../lib/report.ts";
import { agentDispatch } from "./agent-dispatch.ts";
import { agentGap } from "./agent-gap.ts";
import { burst } from "./burst.ts";
import { commits } from "./commits.ts";
import { cost } from "./cost.ts";
import { depth } from "./depth.ts";
import { dispatch } from "./dispatch.ts";
import { fairness } from "./fairness.ts";
import { noisy } from "./noisy.ts";
import { streams } from "./streams.ts";
import { submit } from "./submit.ts";

export const BENCHMARKS: readonly Benchmark[] = [
  depth,
  submit,
  commits,
  agentGap,
  agentDispatch,
  dispatch,
  cost,
  streams,
  fairness,
  noisy,
  burst,
];
