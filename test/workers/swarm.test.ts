/**
 * The weights swarm in workerd: announces through the edge's swarm route to a version's real
 * TrackerActor, peer lists with bitfields, the place of the first agents, and swarm tokens signed
 * by the edge and checked by the agent's own verifier. Each test uses a model of its own.
 */
import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { PIECE_BYTES, versionDigest, type VersionPush, type VersionRecord } from "../../shared/repository.ts";
import { encodeBitfield, type SwarmAnswer } from "../../shared/swarm.ts";
import { verifySwarmToken } from "../../gpu-agent/versions/swarm-token.ts";
import { agentId, sha256Of, token } from "./agent-helpers.ts";
import { ADMIN, call, unique } from "./helpers.ts";

type Refusal = { error: { code: string; message: string } };

/** A ready version of a fresh model with `pieces` distinct small pieces in one file. */
async function readyVersion(pieces: number): Promise<{ model: string; version: string; digest: string }> {
  const model = unique("swarm");
  const names: string[] = [];
  const parts: Uint8Array[] = [];
  for (let i = 0; i < pieces; i++) {
    const bytes = new TextEncoder().encode(`${model} piece ${i}`);
    parts.push(bytes);
    names.push(await sha256Of(bytes));
  }
  // Pieces of one file are PIECE_BYTES but the last; small pieces are one file each here.
  const files = await Promise.all(
    parts.map(async (bytes, i) => ({ path: `p${i}.bin`, size: bytes.length, sha256: names[i]!, pieces: [names[i]!] })),
  );
  const push: VersionPush = {
    manifest: {
      format: 1,
      model,
      version: "1",
      runner: "demo",
      input_schema: { type: "object" },
      resources: { gpus: 0, vram_gib: 0 },
      max_batch: 1,
      expected_runtime_s: 1,
      config: {},
    },
    piece_bytes: PIECE_BYTES,
    files,
  };
  const pushed = await call("POST", `/v1/admin/models/${model}/versions`, { key: ADMIN, body: push });
  expect(pushed.status).toBe(201);
  for (let i = 0; i < pieces; i++) {
    const res = await exports.default.fetch(
      new Request(`http://edge.test/v1/admin/pieces/${names[i]}`, {
        method: "PUT",
        headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/octet-stream" },
        body: parts[i],
      }),
    );
    expect(res.status).toBe(201);
  }
  const c = await call<VersionRecord>("POST", `/v1/admin/models/${model}/versions/1/commit`, { key: ADMIN });
  expect(c.status).toBe(200);
  expect(c.body.digest).toBe(await versionDigest(push));
  return { model, version: "1", digest: c.body.digest };
}

interface Agent {
  id: string;
  token: string;
}

async function agent(models: string[]): Promise<Agent> {
  const t = await token(models);
  return { id: agentId(), token: t.token };
}

async function announce(
  a: Agent,
  v: { model: string; version: string },
  body: Record<string, unknown>,
): Promise<{ status: number; body: SwarmAnswer & Refusal }> {
  const res = await exports.default.fetch(
    new Request(`http://edge.test/v1/agent/swarm/${v.model}/${v.version}`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${a.token}`,
        "x-floodgate-agent": a.id,
        "content-type": "application/json",
      },
      body: JSON.stringify(body),
    }),
  );
  return { status: res.status, body: (await res.json()) as SwarmAnswer & Refusal };
}

const bits = (...set: boolean[]) => encodeBitfield(set);

describe("the weights swarm's tracker", () => {
  it("answers each agent the serving peers with their bitfields, never itself, and places serving agents in the order they joined", async () => {
    const v = await readyVersion(3);
    const [a, b, c] = await Promise.all([agent([v.model]), agent([v.model]), agent([v.model])]);
    const first = await announce(a, v, { digest: v.digest, addr: "127.0.0.1:7001", have: bits(true, false, false) });
    expect(first.status).toBe(200);
    expect(first.body.peers).toEqual([]);
    expect(first.body).toMatchObject({ place: 0, fetchers: 1 });
    const second = await announce(b, v, { digest: v.digest, addr: "127.0.0.1:7002", have: bits(false, false, false) });
    expect(second.body.peers).toEqual([{ agent_id: a.id, addr: "127.0.0.1:7001", have: bits(true, false, false) }]);
    expect(second.body).toMatchObject({ place: 1, fetchers: 2 });
    // A download-only agent gets peers but no place: it takes nothing for others from the origin.
    const third = await announce(c, v, { digest: v.digest, have: bits(false, false, false) });
    expect(third.body.peers.map((p) => p.agent_id).sort()).toEqual([a.id, b.id].sort());
    expect(third.body.place).toBeUndefined();
    expect(third.body.fetchers).toBe(2);
    // An agent holding everything keeps its place: places move only when agents join or leave.
    const done = await announce(a, v, { digest: v.digest, addr: "127.0.0.1:7001", have: bits(true, true, true) });
    expect(done.body).toMatchObject({ place: 0, fetchers: 2 });
    expect(
      (await announce(b, v, { digest: v.digest, addr: "127.0.0.1:7002", have: bits(false, true, false) })).body,
    ).toMatchObject({ place: 1, fetchers: 2 });
    // One that leaves frees its place.
    await announce(a, v, { digest: v.digest, addr: "127.0.0.1:7001", have: bits(true, true, true), event: "stopped" });
    expect(
      (await announce(b, v, { digest: v.digest, addr: "127.0.0.1:7002", have: bits(false, true, false) })).body,
    ).toMatchObject({ place: 0, fetchers: 1 });
    expect(done.body.interval_ms).toBeGreaterThan(first.body.interval_ms);
  });

  it("a stopped agent is no longer anyone's peer", async () => {
    const v = await readyVersion(1);
    const [a, b] = await Promise.all([agent([v.model]), agent([v.model])]);
    await announce(a, v, { digest: v.digest, addr: "127.0.0.1:7101", have: bits(true) });
    expect((await announce(b, v, { digest: v.digest, have: bits(false) })).body.peers).toHaveLength(1);
    expect(
      (await announce(a, v, { digest: v.digest, addr: "127.0.0.1:7101", have: bits(true), event: "stopped" })).status,
    ).toBe(200);
    expect((await announce(b, v, { digest: v.digest, have: bits(false) })).body.peers).toEqual([]);
  });

  it("a token that does not name the model, an unknown version and another digest are 404 version_not_found", async () => {
    const v = await readyVersion(1);
    const other = await agent([unique("other")]);
    const mine = await agent([v.model]);
    const refused = await announce(other, v, { digest: v.digest, have: bits(false) });
    expect(refused.status).toBe(404);
    expect(refused.body.error.code).toBe("version_not_found");
    expect(
      (await announce(mine, { model: v.model, version: "2" }, { digest: v.digest, have: bits(false) })).body.error.code,
    ).toBe("version_not_found");
    const wrong = await announce(mine, v, { digest: "0".repeat(64), have: bits(false) });
    expect(wrong.status).toBe(404);
    expect(wrong.body.error.code).toBe("version_not_found");
  });

  it("a bitfield of another length than the version's pieces, or a bad peer address, is 400 invalid_body", async () => {
    const v = await readyVersion(2);
    const a = await agent([v.model]);
    const long = await announce(a, v, {
      digest: v.digest,
      have: bits(true, true, true, true, true, true, true, true, true),
    });
    expect(long.status).toBe(400);
    expect(long.body.error.code).toBe("invalid_body");
    // One byte, but a bit set past the second piece.
    const past = await announce(a, v, { digest: v.digest, have: bits(true, true, true) });
    expect(past.body.error.code).toBe("invalid_body");
    const addr = await announce(a, v, { digest: v.digest, addr: "no port", have: bits(false, false) });
    expect(addr.status).toBe(400);
    expect(addr.body.error.message).toContain("addr");
  });

  it("the swarm token verifies with the answered keys for that version only, and names the agent", async () => {
    const v = await readyVersion(1);
    const a = await agent([v.model]);
    const answer = (await announce(a, v, { digest: v.digest, have: bits(false) })).body;
    expect(answer.token_exp).toBeGreaterThan(Date.now() / 1000);
    const claims = await verifySwarmToken(answer.token, answer.keys, v);
    expect(claims).toMatchObject({ sub: a.id, model: v.model, version: v.version, digest: v.digest });
    expect(await verifySwarmToken(answer.token, answer.keys, { ...v, version: "2" })).toBeUndefined();
    expect(await verifySwarmToken(answer.token, answer.keys, { ...v, digest: "0".repeat(64) })).toBeUndefined();
    // An agent token is signed with the same keys but is not a swarm token.
    expect(await verifySwarmToken(a.token, answer.keys, v)).toBeUndefined();
    // A forged signature is refused.
    const [h, p] = answer.token.split(".");
    expect(await verifySwarmToken(`${h}.${p}.${"A".repeat(86)}`, answer.keys, v)).toBeUndefined();
    // The keys are public halves only.
    for (const k of answer.keys) expect(k).not.toHaveProperty("d");
  });
});
