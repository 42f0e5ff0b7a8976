/**
 * The actors of Floodgate, for the edge Worker to re-export (Durable Object classes must be
 * exported by the Worker's main module).
 */
export { AccountActor } from "./account-actor.ts";
export { AgentActor, CLAIMS_HEADER, type AgentClaimsLite } from "./agent-actor.ts";
export { JobActor, SUBSCRIBE_HEADERS } from "./job-actor.ts";
export { PoolsActor } from "./pools-actor.ts";
export { RegistryActor, type RegistrySnapshot } from "./registry-actor.ts";
export { laneDesired, type ModelDesired } from "./registry/rollouts.ts";
export { SchedulerActor } from "./scheduler-actor.ts";
export { pieceKey, VERSION_INDEX, VersionsActor } from "./versions-actor.ts";
export { WebhookActor } from "./webhook-actor.ts";
export { JOB_SECRET_ID, type HookRef } from "./account/webhooks.ts";
export type { JobHook } from "./webhooks/logic.ts";
export { TrackerActor, trackerName } from "./tracker-actor.ts";
export type {
  AgentRef,
  Completion,
  EnqueueItem,
  JobBody,
  LaneDesired,
  Lease,
  LeaseRef,
  SchedulerConfig,
} from "./scheduler/core.ts";

export { actor, eachLimited, type Remote } from "./remote.ts";
export { readFleet, type FleetAgent } from "./capacity.ts";
export type { Principal } from "./account/logic.ts";
export type { ClaimOutcome } from "./account/logic.ts";
