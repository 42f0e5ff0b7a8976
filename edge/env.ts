/**
 * What the Worker's `Env` has beyond what `wrangler types` sees in wrangler.toml: the secrets
 * (listed and described in edge/secrets.ts; set with `wrangler secret put`, or written by
 * `floodgate dev` to its env file) and the optional variables wrangler.toml leaves unset.
 */
import type { Principal } from "../mesh/index.ts";
import type { AgentClaims, ProvisionerClaims } from "../shared/tokens.ts";
import type { SecretName } from "./secrets.ts";

/** Every secret of edge/secrets.ts, set (`wrangler secret put`), and the optional variables. */
type Secrets = Record<SecretName, string> & {
  /**
   * The edge's public URL (a `[vars]` entry or `--var`; `floodgate dev` sets its local URL):
   * signed output and preview URLs start with its origin, never with the request's `Host`.
   * Unset, they are relative to the API.
   */
  PUBLIC_URL?: string;
  /**
   * `"true"` only in local development (`floodgate dev` sets it): webhooks may then use http and
   * loopback addresses. Never set in a deployment.
   */
  WEBHOOKS_ALLOW_LOCAL?: string;
  /**
   * A factor on the webhook retry schedule, honoured only with WEBHOOKS_ALLOW_LOCAL (tests
   * shorten the schedule with it; `floodgate dev` passes FLOODGATE_WEBHOOK_RETRY_SCALE).
   */
  WEBHOOK_RETRY_SCALE?: string;
  /** The largest input file `POST /v1/files` takes (bytes); 2 GiB when unset. */
  INPUT_FILE_MAX_BYTES?: string;
  /** Seconds an input file is kept before it and its bytes are deleted; 7 days when unset. */
  INPUT_FILE_RETENTION_S?: string;
};

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
    /** A verified, live agent token (every `/v1/agent/*` route). */
    agentToken: AgentClaims;
    /** That token and the agent id it acts as (every agent route but whoami). */
    agent: { claims: AgentClaims; agentId: string };
    /** A verified provisioner token (every `/v1/provisioner/*` route). */
    provisioner: ProvisionerClaims;
  };
};
