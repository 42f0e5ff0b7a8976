import { importJWK, jwtVerify, SignJWT, type JWK } from "jose";
import { describe, expect, it } from "vitest";
import { SECRET_NAMES } from "../edge/secrets.ts";
import { SigningKeySet } from "../shared/tokens.ts";
import { GENERATORS, keysCommand, rotateSigningKeys } from "./keys.ts";
import { UsageError } from "./flags.ts";

function run(argv: string[], stdin = ""): { code: number; out: string } {
  let out = "";
  const code = keysCommand(
    argv,
    (s) => (out += s),
    () => stdin,
  );
  return { code, out };
}

async function signWith(set: SigningKeySet, kid: string): Promise<string> {
  const jwk = set.keys.find((k) => k.kid === kid) as JWK;
  return await new SignJWT({}).setProtectedHeader({ alg: "EdDSA", kid }).sign(await importJWK(jwk, "EdDSA"));
}

async function verifies(set: SigningKeySet, token: string): Promise<boolean> {
  for (const k of set.keys) {
    const { d: _d, ...pub } = k as JWK;
    try {
      await jwtVerify(token, await importJWK(pub, "EdDSA"));
      return true;
    } catch {
      // another key
    }
  }
  return false;
}

describe("floodgate keys", () => {
  it("makes a value for every secret the edge lists, and only for those", () => {
    for (const name of SECRET_NAMES) {
      const { code, out } = run(["new", name]);
      expect(code).toBe(0);
      expect(out.trim().length).toBeGreaterThan(30);
    }
    expect(() => run(["new", "NOPE"])).toThrow(UsageError);
    expect(run(["list"]).out.split("\n").filter(Boolean)).toHaveLength(SECRET_NAMES.length);
  });

  it("a new AGENT_SIGNING_KEYS is a key set the edge accepts, with an Ed25519 key under its active kid", async () => {
    const set = SigningKeySet.parse(JSON.parse(GENERATORS.AGENT_SIGNING_KEYS()));
    expect(set.keys.map((k) => k.kid)).toEqual([set.active]);
    expect(await verifies(set, await signWith(set, set.active))).toBe(true);
  });

  it("rotating adds a new active kid and keeps the old keys, so tokens they signed still verify", async () => {
    const first = SigningKeySet.parse(JSON.parse(GENERATORS.AGENT_SIGNING_KEYS()));
    const old = await signWith(first, first.active);
    const { out } = run(["new", "AGENT_SIGNING_KEYS", "--rotate", "-"], JSON.stringify(first));
    const next = SigningKeySet.parse(JSON.parse(out));
    expect(next.active).not.toBe(first.active);
    expect(next.keys.map((k) => k.kid)).toEqual([next.active, first.active]);
    expect(await verifies(next, old)).toBe(true);
    expect(await verifies(next, await signWith(next, next.active))).toBe(true);
  });

  it("retiring a kid drops it, and the active kid cannot be retired", async () => {
    const first = SigningKeySet.parse(JSON.parse(GENERATORS.AGENT_SIGNING_KEYS()));
    const old = await signWith(first, first.active);
    const rotated = rotateSigningKeys(first);
    if (!rotated.ok) throw new Error(rotated.message);
    const { out } = run(
      ["new", "AGENT_SIGNING_KEYS", "--keys", "-", "--retire", first.active],
      JSON.stringify(rotated.keys),
    );
    const retired = SigningKeySet.parse(JSON.parse(out));
    expect(retired.keys.map((k) => k.kid)).toEqual([rotated.keys.active]);
    expect(await verifies(retired, old)).toBe(false);
    expect(rotateSigningKeys(rotated.keys, { add: false, retire: [rotated.keys.active] })).toMatchObject({ ok: false });
    expect(rotateSigningKeys({ nope: 1 })).toMatchObject({ ok: false });
  });

  it("rotation flags are refused for the other secrets", () => {
    expect(() => run(["new", "ADMIN_KEY", "--rotate", "-"])).toThrow(/AGENT_SIGNING_KEYS only/);
  });
});
