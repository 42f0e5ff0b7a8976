/**
 * The weights swarm's route: an agent announces what it holds of a version and gets its peers,
 * its place among the first agents, and a swarm token (`POST /v1/agent/swarm/{model}/{version}`).
 * A plain HTTP route beside the model repository's, not a frame on the agent WebSocket: the job
 * hot path (the agent actor and its socket) never carries swarm traffic.
 *
 * The edge checks the agent token names the model and the version is ready, then asks the
 * version's TrackerActor (mesh/tracker-actor.ts); it tells the tracker the version's digest and
 * piece count the first time, so an announce reads no record after that. The swarm token is
 * signed here (edge/tokens.ts), never by the tracker.
 */
import { z } from "zod";
import { ModelName } from "../../shared/api.ts";
import { FloodgateError } from "../../shared/errors.ts";
import { piecesOf, VersionName } from "../../shared/repository.ts";
import { SwarmAnnounce, SwarmAnswer } from "../../shared/swarm.ts";
import { actor, trackerName, type TrackerActor, type VersionsActor } from "../../mesh/index.ts";
import { raise } from "../errors.ts";
import { apiRoute, json, jsonBody, refuse, routesApp } from "../openapi.ts";
import { mintSwarmToken, swarmPublicKeys } from "../tokens.ts";
import { readJson } from "../validate.ts";

const announce = apiRoute("agent", {
  method: "post",
  path: "/v1/agent/swarm/{model}/{version}",
  summary:
    "Announce the pieces this agent holds of a ready version (and where peers reach it); answers its peers with their bitfields, its place among the first agents, and a swarm token",
  request: { params: z.object({ model: ModelName, version: VersionName }), body: jsonBody(SwarmAnnounce) },
  responses: {
    200: json("Peers and a swarm token", SwarmAnswer),
    404: {
      description: "Unknown, not ready, another digest, or a model the token does not name (version_not_found)",
    },
  },
});

export const swarmRoutes = routesApp().openapi(
  announce,
  async (c) => {
    const { model, version } = c.req.valid("param");
    const body = SwarmAnnounce.parse(await readJson(c, SwarmAnnounce));
    const { claims, agentId } = c.get("agent");
    const notFound = new FloodgateError("version_not_found", `no ready version ${version} of model ${model}`);
    if (!claims.models.includes(model)) throw notFound;
    const tracker = actor<TrackerActor>(c.env.TRACKER, trackerName(model, version));
    const ask = () =>
      tracker.announce(agentId, {
        digest: body.digest,
        have: body.have,
        event: body.event,
        ...(body.fetching === undefined ? {} : { fetching: body.fetching }),
        ...(body.addr === undefined ? {} : { addr: body.addr }),
      });
    let out = await ask();
    if (!out.ok && "unknown" in out) {
      const record = await actor<VersionsActor>(c.env.VERSIONS, model).record(version);
      if (!record) throw notFound;
      await tracker.describe(record.digest, piecesOf(record.files).length);
      out = await ask();
    }
    if (!out.ok) {
      if ("unknown" in out) throw notFound;
      raise(out);
    }
    const minted = await mintSwarmToken(c.env, { agentId, model, version, digest: body.digest });
    const answer: SwarmAnswer = {
      peers: out.peers,
      ...(out.place === undefined ? {} : { place: out.place }),
      fetchers: out.fetchers,
      token: minted.token,
      token_exp: minted.exp,
      keys: swarmPublicKeys(c.env),
      interval_ms: out.interval_ms,
    };
    return c.json(answer, 200);
  },
  refuse("version_not_found"),
);
