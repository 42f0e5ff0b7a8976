/**
 * The registry of benchmarks `npm run bench -- <name>` knows. To add one, write a module in
 * this folder exporting a {@link Benchmark} and list it here.
 */
import type { Benchmark } from "../lib/report.ts";
import { agentDispatch } from "./agent-dispatch.ts";
import { agents } from "./agents.ts";
import { agentGap } from "./agent-gap.ts";
import { burst } from "./burst.ts";
import { commits } from "./commits.ts";
import { cost } from "./cost.ts";
import { dashboard } from "./dashboard.ts";
import { depth } from "./depth.ts";
import { dispatch } from "./dispatch.ts";
import { fairness } from "./fairness.ts";
import { noisy } from "./noisy.ts";
import { rollout } from "./rollout.ts";
import { streams } from "./streams.ts";
import { submit } from "./submit.ts";
import { weights } from "./weights.ts";

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
  agents,
  rollout,
  dashboard,
  weights,
  burst,
];
