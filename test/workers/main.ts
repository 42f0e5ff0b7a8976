/**
 * Test-only: the Worker the workerd suites run, the edge (edge/index.ts) as it is, plus a
 * stand-in for the model repository's actor (versions-stub.ts) bound as `VERSIONS` in
 * vitest.config.ts.
 */
export * from "../../edge/index.ts";
export { default } from "../../edge/index.ts";
export { VersionsActor } from "./versions-stub.ts";
