/**
 * Agent tokens: minted by admins, checked when an agent connects. Signed with EdDSA (Ed25519)
 * under the active `kid` of the AGENT_SIGNING_KEYS secret; every key in the set still verifies,
 * so rotating the active key leaves old tokens valid until they expire. Revocation is a row in
 * the registry, checked on connect.
 */
import { importJWK, jwtVerify, SignJWT, type JWK } from "jose";
import { FloodgateError } from "../shared/errors.ts";
import {
  AGENT_TOKEN_AUDIENCE,
  AGENT_TOKEN_ISSUER,
  AGENT_TOKEN_TYPE,
  AgentClaims,
  PROVISIONER_TOKEN_AUDIENCE,
  PROVISIONER_TOKEN_TYPE,
  ProvisionerClaims,
  SigningKeySet,
} from "../shared/tokens.ts";
import { SWARM_TOKEN_AUDIENCE, SWARM_TOKEN_TTL_S, SWARM_TOKEN_TYPE, SwarmKey } from "../shared/swarm.ts";

const ALG = "EdDSA";
let parsedFor: string | undefined;
let keySet: SigningKeySet | undefined;
const imported = new Map<string, CryptoKey>();

function keys(env: Env): SigningKeySet {
  if (parsedFor !== env.AGENT_SIGNING_KEYS) {
    let raw: unknown;
    try {
      raw = JSON.parse(env.AGENT_SIGNING_KEYS ?? "");
    } catch {
      raw = undefined;
    }
    const parsed = SigningKeySet.safeParse(raw);
    if (!parsed.success) throw new FloodgateError("unavailable", "the edge has no valid AGENT_SIGNING_KEYS secret");
    keySet = parsed.data;
    parsedFor = env.AGENT_SIGNING_KEYS;
    imported.clear();
  }
  return keySet as SigningKeySet;
}

async function key(env: Env, kid: string, priv: boolean): Promise<CryptoKey | undefined> {
  const set = keys(env);
  const cacheKey = `${kid}:${priv ? "private" : "public"}`;
  const hit = imported.get(cacheKey);
  if (hit) return hit;
  const jwk = set.keys.find((k) => k.kid === kid);
  if (!jwk) return undefined;
  const { d, ...pub } = jwk;
  const material = (priv ? { ...pub, d } : pub) as JWK;
  const k = (await importJWK(material, ALG)) as CryptoKey;
  imported.set(cacheKey, k);
  return k;
}

export async function mintAgentToken(
  env: Env,
  claims: { id: string; pool: string; models: string[]; ttlS: number },
): Promise<{ token: string; expiresAt: number }> {
  return await mint(
    env,
    { pool: claims.pool, models: claims.models },
    {
      id: claims.id,
      sub: `pool:${claims.pool}`,
      ttlS: claims.ttlS,
      aud: AGENT_TOKEN_AUDIENCE,
      typ: AGENT_TOKEN_TYPE,
    },
  );
}

/** Mints a provisioner token for `pools`: signed like agent tokens, but of its own kind. */
export async function mintProvisionerToken(
  env: Env,
  claims: { id: string; pools: string[]; ttlS: number },
): Promise<{ token: string; expiresAt: number }> {
  return await mint(
    env,
    { pools: claims.pools },
    {
      id: claims.id,
      sub: `provisioner:${claims.pools.join(",")}`.slice(0, 256),
      ttlS: claims.ttlS,
      aud: PROVISIONER_TOKEN_AUDIENCE,
      typ: PROVISIONER_TOKEN_TYPE,
    },
  );
}

async function mint(
  env: Env,
  payload: Record<string, unknown>,
  o: { id: string; sub: string; ttlS: number; aud: string; typ: string },
): Promise<{ token: string; expiresAt: number }> {
  const set = keys(env);
  const signing = await key(env, set.active, true);
  if (!signing) throw new FloodgateError("unavailable", "the active signing key is missing from AGENT_SIGNING_KEYS");
  const now = Math.floor(Date.now() / 1000);
  const exp = now + o.ttlS;
  const token = await new SignJWT(payload)
    .setProtectedHeader({ alg: ALG, kid: set.active, typ: o.typ })
    .setIssuer(AGENT_TOKEN_ISSUER)
    .setAudience(o.aud)
    .setSubject(o.sub)
    .setJti(o.id)
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(exp)
    .sign(signing);
  return { token, expiresAt: exp * 1000 };
}

const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/**
 * Whether a segment is the one canonical base64url encoding of its bytes: no `=` padding and no
 * bit set in what its last character carries beyond the data. Decoders ignore those bits, so
 * without this check one signature would have many spellings, each a different valid token.
 */
function canonicalBase64url(segment: string): boolean {
  if (!/^[A-Za-z0-9_-]*$/.test(segment) || segment.length % 4 === 1) return false;
  const unusedBits = (segment.length * 6) % 8;
  if (unusedBits === 0) return true;
  const last = B64URL.indexOf(segment.at(-1) ?? "");
  return (last & ((1 << unusedBits) - 1)) === 0;
}

/**
 * Verifies an agent token's signature, algorithm, `kid`, `typ`, issuer, audience and times,
 * then its claims' shape. Answers `undefined` for every bad token alike (the caller says 401).
 * The signature segment must be canonical base64url, so a token has exactly one spelling.
 */
export async function verifyAgentToken(env: Env, token: string): Promise<AgentClaims | undefined> {
  const payload = await verified(env, token, AGENT_TOKEN_AUDIENCE, AGENT_TOKEN_TYPE);
  const parsed = AgentClaims.safeParse(payload);
  return parsed.success ? parsed.data : undefined;
}

/** Verifies a provisioner token as {@link verifyAgentToken} does an agent token. */
export async function verifyProvisionerToken(env: Env, token: string): Promise<ProvisionerClaims | undefined> {
  const payload = await verified(env, token, PROVISIONER_TOKEN_AUDIENCE, PROVISIONER_TOKEN_TYPE);
  const parsed = ProvisionerClaims.safeParse(payload);
  return parsed.success ? parsed.data : undefined;
}

async function verified(env: Env, token: string, audience: string, typ: string): Promise<unknown> {
  if (token.length > 4096) return undefined;
  const segments = token.split(".");
  if (segments.length !== 3 || !canonicalBase64url(segments[2] ?? "")) return undefined;
  try {
    const { payload } = await jwtVerify(
      token,
      async (header) => {
        if (header.alg !== ALG || typeof header.kid !== "string") throw new Error("bad header");
        const k = await key(env, header.kid, false);
        if (!k) throw new Error("unknown kid");
        return k;
      },
      { algorithms: [ALG], issuer: AGENT_TOKEN_ISSUER, audience, typ, requiredClaims: ["exp", "nbf", "iat", "jti"] },
    );
    return payload;
  } catch {
    return undefined;
  }
}

/**
 * A swarm token: lets agent `agentId` fetch pieces of one version from its peers for
 * {@link SWARM_TOKEN_TTL_S}. Signed like agent tokens (EdDSA, the active `kid`), with its own
 * audience and `typ`, so neither kind of token passes for the other; peers verify it with the
 * public keys the swarm route hands out ({@link swarmPublicKeys}).
 */
export async function mintSwarmToken(
  env: Env,
  claims: { agentId: string; model: string; version: string; digest: string },
  ttlS = SWARM_TOKEN_TTL_S,
): Promise<{ token: string; exp: number }> {
  const set = keys(env);
  const signing = await key(env, set.active, true);
  if (!signing) throw new FloodgateError("unavailable", "the active signing key is missing from AGENT_SIGNING_KEYS");
  const now = Math.floor(Date.now() / 1000);
  const exp = now + ttlS;
  const token = await new SignJWT({ model: claims.model, version: claims.version, digest: claims.digest })
    .setProtectedHeader({ alg: ALG, kid: set.active, typ: SWARM_TOKEN_TYPE })
    .setIssuer(AGENT_TOKEN_ISSUER)
    .setAudience(SWARM_TOKEN_AUDIENCE)
    .setSubject(claims.agentId)
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(exp)
    .sign(signing);
  return { token, exp };
}

/** The public half of every key in AGENT_SIGNING_KEYS: what a peer verifies swarm tokens with. */
export function swarmPublicKeys(env: Env): SwarmKey[] {
  return keys(env).keys.flatMap((k) => {
    const { d: _private, ...pub } = k;
    const parsed = SwarmKey.safeParse(pub);
    return parsed.success ? [parsed.data] : [];
  });
}
