/**
 * The Worker's secrets: the one list of what every environment must have set. wrangler.toml
 * holds no secret (wrangler cannot type them either); edge/env.ts types them from this list,
 * `floodgate dev` generates each into its env file, `floodgate keys new NAME` makes one for a
 * deployment, and `npm run deploy` refuses an environment that lacks any (docs/deploy.md).
 * Imports nothing, so the Node side (cli/, scripts/) reads it without the Worker's types.
 */

/** Each secret and what it is, as `npm run deploy` and `floodgate keys` print it. */
export const SECRETS = {
  ADMIN_KEY: "the admin API key (fga_…), sent as `Authorization: Bearer` to /v1/admin/*",
  AGENT_SIGNING_KEYS:
    'JSON {"active": kid, "keys": [private Ed25519 JWKs, each with its kid]} that signs agent tokens; every key in the set still verifies, so rotation keeps old tokens valid until they expire',
  FILE_SIGNING_KEY:
    "HMAC key (32 random bytes, base64url) that signs output URLs, previews, stream tokens and output receipts; changing it invalidates the URLs already handed out",
  KEY_SIGNING_KEY:
    "HMAC key (32 random bytes, base64url) of the MAC inside every API key, so the Worker refuses a key it did not mint before asking any actor; changing it invalidates every API key",
} as const;

/** A secret's name. */
export type SecretName = keyof typeof SECRETS;

/** The secrets' names, in the order they are listed. */
export const SECRET_NAMES = Object.keys(SECRETS) as SecretName[];
