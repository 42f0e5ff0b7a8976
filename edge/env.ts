/**
 * Secrets of the Worker, which `wrangler types` cannot see in wrangler.toml. Set them with
 * `wrangler secret put`, or let `floodgate dev` write them to its env file; and the optional
 * variables wrangler.toml leaves unset.
 */
import type { Principal } from "../mesh/index.ts";
import type { AgentClaims, ProvisionerClaims } from "../shared/tokens.ts";

interface Secrets {
  /** The admin API key. */
  ADMIN_KEY: string;
  /** JSON `{"active": kid, "keys": [private JWKs, each with its kid]}` signing agent tokens. */
  AGENT_SIGNING_KEYS: string;
  /** HMAC key (any long random string) that signs output URLs, previews, stream tokens and output receipts. */
  FILE_SIGNING_KEY: string;
  /**
   * HMAC key (any long random string) for the MAC inside every API key, so the Worker refuses a
   * key it did not mint before asking any actor. Changing it invalidates every API key.
   */
  KEY_SIGNING_KEY: string;
  /**
   * The edge's public URL (a `[vars]` entry or `--var`; `floodgate dev` sets its local URL):
   * signed output and preview URLs start with its origin, never with the request's `Host`.
   * Unset, they are relative to the API.
   */
  PUBLIC_URL?: string;
}

declare global {
  namespace Cloudflare {
    interface Env extends Secrets {}
  }
  interface Env extends Secrets {}
}

export type AppEnv = {
  Bindings: Env;
  Variables: {
    principal: Principal;
    agent: { claims: AgentClaims; agentId: string };
    provisioner: ProvisionerClaims;
  };
};
