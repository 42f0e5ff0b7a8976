/**
 * The Worker's secrets, made: one generator for each secret edge/secrets.ts lists, used by
 * `floodgate dev` for its local env file and by `floodgate keys new NAME` for a deployment
 * (`… | npx wrangler secret put NAME --env production`, docs/deploy.md). Rotating the agent
 * token signing keys adds a new active `kid` and keeps the old ones, which still verify the
 * tokens they signed until those expire; retiring a kid drops it.
 */
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { z } from "zod";
import { SECRET_NAMES, SECRETS, type SecretName } from "../edge/secrets.ts";
import { SigningKeySet } from "../shared/tokens.ts";
import { parseFlags, UsageError } from "./flags.ts";

/** A fresh agent token signing key: a private Ed25519 JWK under a new random kid. */
export function newSigningKey(): SigningKeySet["keys"][number] {
  const kid = `k${randomBytes(6).toString("hex")}`;
  const { privateKey } = generateKeyPairSync("ed25519");
  return { ...privateKey.export({ format: "jwk" }), kid, alg: "EdDSA" } as SigningKeySet["keys"][number];
}

/** One generator per secret: the compiler holds this list to edge/secrets.ts's. */
export const GENERATORS: Record<SecretName, () => string> = {
  ADMIN_KEY: () => `fga_${randomBytes(24).toString("base64url")}`,
  AGENT_SIGNING_KEYS: () => {
    const key = newSigningKey();
    return JSON.stringify({ active: key.kid, keys: [key] } satisfies SigningKeySet);
  },
  FILE_SIGNING_KEY: () => randomBytes(32).toString("base64url"),
  KEY_SIGNING_KEY: () => randomBytes(32).toString("base64url"),
};

/**
 * Rotates a signing key set: a new key becomes active, every key held stays (so tokens they
 * signed keep verifying) except those in `retire`. Retiring the active key, or a kid the set
 * does not hold, is an error value.
 *
 * @example
 * const next = rotateSigningKeys(JSON.parse(current), { retire: ["k0123456789ab"] });
 */
export function rotateSigningKeys(
  current: unknown,
  opts: { retire?: readonly string[]; add?: boolean } = {},
): { ok: true; keys: SigningKeySet } | { ok: false; message: string } {
  const parsed = SigningKeySet.safeParse(current);
  if (!parsed.success) {
    return { ok: false, message: `not an AGENT_SIGNING_KEYS value: ${parsed.error.issues[0]?.message ?? "invalid"}` };
  }
  const set = parsed.data;
  const retire = new Set(opts.retire ?? []);
  for (const kid of retire) {
    if (!set.keys.some((k) => k.kid === kid)) return { ok: false, message: `the key set holds no kid ${kid}` };
  }
  const added = opts.add === false ? undefined : newSigningKey();
  const active = added?.kid ?? set.active;
  if (retire.has(active)) {
    return { ok: false, message: `${active} is the active key: rotate first, retire it once its tokens expired` };
  }
  const kept = set.keys.filter((k) => !retire.has(k.kid));
  return { ok: true, keys: { active, keys: added ? [added, ...kept] : kept } };
}

const KEYS_HELP = `floodgate keys — make the edge's secrets for a deployment

Usage:
  floodgate keys list
      The secrets every environment needs, and what each is.
  floodgate keys new NAME
      Print a fresh value of the secret NAME on stdout, for \`npx wrangler secret put NAME\`.
  floodgate keys new AGENT_SIGNING_KEYS --rotate FILE [--retire KID]…
      Print the key set in FILE (\`-\`: stdin) with a new active key added; the old keys stay
      and keep verifying the agent tokens they signed until those expire.
  floodgate keys new AGENT_SIGNING_KEYS --keys FILE --retire KID…
      Print the key set in FILE less the retired keys (tokens they signed stop working).

Secret values are printed on stdout only: keep AGENT_SIGNING_KEYS somewhere safe (Cloudflare
never shows a secret again, and rotating needs the current set). docs/deploy.md has the steps.
`;

const NewFlags = z.strictObject({
  rotate: z.string().min(1).optional(),
  keys: z.string().min(1).optional(),
  retire: z.array(z.string().min(1)).optional(),
  help: z.boolean().optional(),
});

function readSource(file: string, readStdin: () => string): string {
  return file === "-" ? readStdin() : readFileSync(file, "utf8");
}

/**
 * `floodgate keys …`: answers the exit code (0 done, 2 a usage error). `readStdin` is for tests.
 */
export function keysCommand(
  argv: string[],
  out: (s: string) => void = (s) => process.stdout.write(s),
  readStdin: () => string = () => readFileSync(0, "utf8"),
): number {
  const [sub, ...rest] = argv;
  switch (sub) {
    case undefined:
    case "help":
    case "--help":
    case "-h":
      out(KEYS_HELP);
      return sub === undefined ? 2 : 0;
    case "list": {
      parseFlags(rest, { help: { type: "boolean", short: "h" } }, z.strictObject({ help: z.boolean().optional() }));
      const width = Math.max(...SECRET_NAMES.map((n) => n.length)) + 2;
      out(SECRET_NAMES.map((n) => `${n.padEnd(width)}${SECRETS[n]}\n`).join(""));
      return 0;
    }
    case "new": {
      const parsed = parseFlags(
        rest,
        {
          rotate: { type: "string" },
          keys: { type: "string" },
          retire: { type: "string", multiple: true },
          help: { type: "boolean", short: "h" },
        },
        NewFlags,
        { min: 1, max: 1, names: `the secret's name (${SECRET_NAMES.join(", ")})` },
      );
      if (!parsed) {
        out(KEYS_HELP);
        return 0;
      }
      const name = parsed.args[0] as string;
      if (!(SECRET_NAMES as string[]).includes(name)) {
        throw new UsageError(`unknown secret ${JSON.stringify(name)}: one of ${SECRET_NAMES.join(", ")}`);
      }
      const { rotate, keys, retire } = parsed.flags;
      if (name !== "AGENT_SIGNING_KEYS") {
        if (rotate !== undefined || keys !== undefined || retire !== undefined) {
          throw new UsageError(`--rotate, --keys and --retire are for AGENT_SIGNING_KEYS only`);
        }
        out(GENERATORS[name as SecretName]() + "\n");
        return 0;
      }
      if (rotate !== undefined && keys !== undefined) throw new UsageError("give --rotate or --keys, not both");
      const source = rotate ?? keys;
      if (source === undefined) {
        if (retire !== undefined) throw new UsageError("--retire needs the current set: --keys FILE or --rotate FILE");
        out(GENERATORS.AGENT_SIGNING_KEYS() + "\n");
        return 0;
      }
      if (keys !== undefined && retire === undefined) throw new UsageError("--keys FILE goes with --retire KID");
      let current: unknown;
      try {
        current = JSON.parse(readSource(source, readStdin));
      } catch (err) {
        throw new UsageError(`${source === "-" ? "stdin" : source}: ${(err as Error).message}`);
      }
      const next = rotateSigningKeys(current, { retire, add: rotate !== undefined });
      if (!next.ok) throw new UsageError(next.message);
      out(JSON.stringify(next.keys) + "\n");
      return 0;
    }
    default:
      throw new UsageError(`unknown keys command ${JSON.stringify(sub)}: list or new`);
  }
}
