/**
 * Checks a swarm token as a piece server must before serving (./peer-server.ts): signed by the
 * edge (EdDSA, with one of the public keys the swarm route answered), for this very version and
 * digest, not expired. Web Crypto and jose only, so the same check runs in a test under workerd.
 */
import { importJWK, jwtVerify } from "jose";
import { AGENT_TOKEN_ISSUER } from "../../shared/tokens.ts";
import { SWARM_TOKEN_AUDIENCE, SWARM_TOKEN_TYPE, SwarmClaims, type SwarmKey } from "../../shared/swarm.ts";

/** Public keys imported once, by their JWK. */
const imported = new Map<string, CryptoKey>();

async function importKey(k: SwarmKey): Promise<CryptoKey> {
  const id = `${k.kid}:${k.x}`;
  let key = imported.get(id);
  if (!key) {
    key = (await importJWK({ kty: k.kty, crv: k.crv, x: k.x }, "EdDSA")) as CryptoKey;
    imported.set(id, key);
  }
  return key;
}

/**
 * The claims of `token` when it is a valid swarm token for `want` under one of `keys`, else
 * undefined (every bad token alike).
 *
 * @example
 * const claims = await verifySwarmToken(token, answer.keys, { model, version, digest });
 * if (!claims) return refuse(401);
 */
export async function verifySwarmToken(
  token: string,
  keys: readonly SwarmKey[],
  want: { model: string; version: string; digest: string },
): Promise<SwarmClaims | undefined> {
  if (token.length > 4096) return undefined;
  try {
    const { payload } = await jwtVerify(
      token,
      async (header) => {
        const k = keys.find((x) => x.kid === header.kid);
        if (header.alg !== "EdDSA" || !k) throw new Error("unknown key");
        return await importKey(k);
      },
      { algorithms: ["EdDSA"], issuer: AGENT_TOKEN_ISSUER, audience: SWARM_TOKEN_AUDIENCE, typ: SWARM_TOKEN_TYPE },
    );
    const claims = SwarmClaims.safeParse(payload);
    if (!claims.success) return undefined;
    const c = claims.data;
    return c.model === want.model && c.version === want.version && c.digest === want.digest ? c : undefined;
  } catch {
    return undefined;
  }
}
