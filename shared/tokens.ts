/**
 * Agent token claims: what the edge signs and checks. A token is a JWT (EdDSA, `kid` from the
 * edge's key set) scoped to one provider pool and its models.
 */
import { z } from "zod";

export const AGENT_TOKEN_ISSUER = "floodgate";
export const AGENT_TOKEN_AUDIENCE = "floodgate.agent";
export const AGENT_TOKEN_TYPE = "floodgate-agent+jwt";

export const AgentClaims = z.object({
  iss: z.literal(AGENT_TOKEN_ISSUER),
  aud: z.union([z.literal(AGENT_TOKEN_AUDIENCE), z.array(z.string()).refine((a) => a.includes(AGENT_TOKEN_AUDIENCE))]),
  jti: z.string().regex(/^tok_[0-9a-z]{16}$/),
  sub: z.string(),
  pool: z.string().min(1).max(64),
  models: z.array(z.string()).min(1).max(64),
  exp: z.number().int(),
  nbf: z.number().int(),
  iat: z.number().int(),
});
export type AgentClaims = z.infer<typeof AgentClaims>;

export const PROVISIONER_TOKEN_AUDIENCE = "floodgate.provisioner";
export const PROVISIONER_TOKEN_TYPE = "floodgate-provisioner+jwt";

/**
 * A provisioner token: its own kind (audience and `typ`), so it can never connect as an agent
 * and an agent token can never take a pool's calls. Scoped to the pools it may act for.
 */
export const ProvisionerClaims = z.object({
  iss: z.literal(AGENT_TOKEN_ISSUER),
  aud: z.union([
    z.literal(PROVISIONER_TOKEN_AUDIENCE),
    z.array(z.string()).refine((a) => a.includes(PROVISIONER_TOKEN_AUDIENCE)),
  ]),
  jti: z.string().regex(/^tok_[0-9a-z]{16}$/),
  sub: z.string(),
  pools: z.array(z.string()).min(1).max(64),
  exp: z.number().int(),
  nbf: z.number().int(),
  iat: z.number().int(),
});
export type ProvisionerClaims = z.infer<typeof ProvisionerClaims>;

/** The key set kept as the Worker secret AGENT_SIGNING_KEYS. */
export const SigningKeySet = z.object({
  active: z.string().min(1),
  keys: z
    .array(
      z.looseObject({ kid: z.string().min(1), kty: z.string(), crv: z.string().optional(), d: z.string().optional() }),
    )
    .min(1),
});
export type SigningKeySet = z.infer<typeof SigningKeySet>;

/**
 * `GET /v1/agent/whoami`: what an agent token says of itself once the edge verified it (its
 * signature, expiry and that it is not revoked). `floodgate doctor` checks a token with it.
 */
export const AgentWhoami = z.object({
  token_id: z.string().describe("The token's id (tok_…), as admins list and revoke it"),
  pool: z.string().describe("The provider pool the token is scoped to"),
  models: z.array(z.string()).describe("The models its agents may serve"),
  issued_at: z.string().describe("When it was minted (ISO 8601)"),
  expires_at: z.string().describe("When it stops working (ISO 8601)"),
});
export type AgentWhoami = z.infer<typeof AgentWhoami>;
