/**
 * The Floodgate edge Worker: the HTTP API, and the actor classes it must export for workerd.
 */
import { buildApp } from "./app.ts";

export {
  AccountActor,
  AgentActor,
  JobActor,
  PoolsActor,
  RegistryActor,
  SchedulerActor,
  TrackerActor,
  VersionsActor,
  WebhookActor,
} from "../mesh/index.ts";

const app = buildApp();

export default {
  fetch: app.fetch,
} satisfies ExportedHandler<Env>;
