/**
 * Command-line flags, parsed one way for every command: strictly by `node:util`'s parseArgs,
 * then checked by a zod schema. A mistake is a {@link UsageError}: printed with a pointer to the
 * command's help, exit code 2.
 */
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import type { z } from "zod";

/** A usage error: the message, a pointer to the command's help, exit code 2. */
export class UsageError extends Error {}

/** How many positional arguments a command takes, and what to call them when some are missing. */
export interface Arity {
  min: number;
  max: number;
  names: string;
}

const NO_ARGS: Arity = { min: 0, max: 0, names: "" };

/**
 * Parses flags strictly, then checks them with `schema`; `undefined` when `--help` was asked (the
 * caller prints its help, whatever else the line holds). Positionals are counted against `arity`.
 */
export function parseFlags<S extends z.ZodType>(
  argv: string[],
  options: ParseArgsOptionsConfig,
  schema: S,
  arity: Arity = NO_ARGS,
): { flags: z.infer<S>; args: string[] } | undefined {
  let values: Record<string, unknown>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: argv, options, strict: true, allowPositionals: true }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) return undefined;
  if (positionals.length < arity.min) throw new UsageError(`missing ${arity.names}`);
  if (positionals.length > arity.max) {
    throw new UsageError(`unexpected argument ${JSON.stringify(positionals[arity.max])}`);
  }
  const parsed = schema.safeParse(values);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new UsageError(`--${issue?.path.join(".") ?? "?"}: ${issue?.message ?? "invalid"}`);
  }
  return { flags: parsed.data, args: positionals };
}
