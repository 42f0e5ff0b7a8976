import { describe, expect, it } from "vitest";
import { MAX_SWARM_PEERS } from "../../shared/swarm.ts";
import { FETCHING_TTL_MS, MEMBER_TTL_MS, Swarm } from "./logic.ts";

describe("a version's swarm", () => {
  it("a fetching member silent for a few intervals is no longer a peer nor a fetcher; one holding everything stays longer", () => {
    const s = new Swarm();
    s.announce("a", { addr: "h:1", have: "A", complete: false }, 0);
    s.announce("seed", { addr: "h:3", have: "A", complete: true }, 0);
    expect(s.announce("b", { addr: "h:2", have: "A", complete: false }, 1)).toMatchObject({ place: 2, fetchers: 3 });
    const soon = s.announce("b", { addr: "h:2", have: "A", complete: false }, FETCHING_TTL_MS + 2);
    expect(soon.peers.map((p) => p.agent_id)).toEqual(["seed"]);
    // The seed keeps its place (0); the silent fetcher's is gone.
    expect(soon).toMatchObject({ place: 1, fetchers: 2 });
    expect(s.announce("b", { addr: "h:2", have: "A", complete: false }, MEMBER_TTL_MS + 2).peers).toEqual([]);
  });

  it("agents joining in the same millisecond keep the order they joined in", () => {
    const s = new Swarm();
    for (const id of ["z", "y", "x"]) s.announce(id, { addr: `h:${id.charCodeAt(0)}`, have: "A", complete: false }, 5);
    expect(s.announce("x", { addr: "h:120", have: "A", complete: false }, 5).place).toBe(2);
    expect(s.announce("z", { addr: "h:122", have: "A", complete: false }, 5).place).toBe(0);
  });

  it(`answers at most ${MAX_SWARM_PEERS} peers, a different sample for different draws`, () => {
    const s = new Swarm();
    for (let i = 0; i < 100; i++) s.announce(`a${i}`, { addr: `h:${i + 1}`, have: "A", complete: true }, 0);
    let draw = 0;
    const one = s.announce(
      "me",
      { have: "A", complete: false },
      0,
      () => (draw = (draw * 9301 + 49297) % 233280) / 233280,
    );
    const two = s.announce("me", { have: "A", complete: false }, 0, () => 0.5);
    expect(one.peers).toHaveLength(MAX_SWARM_PEERS);
    expect(one.peers.map((p) => p.agent_id)).not.toEqual(two.peers.map((p) => p.agent_id));
  });
});
