/**
 * The registry of benchmarks `npm run bench -- <name>` knows. To add one, write a module in
 * this folder exporting a {@link Benchmark} and list it here.
 */
import type { Benchmark } from "../lib/report.ts";
import { commits } from "./commits.ts";
import { depth } from "./depth.ts";
import { submit } from "./submit.ts";

export const BENCHMARKS: readonly Benchmark[] = [depth, submit, commits];
