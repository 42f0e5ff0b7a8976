import { describe, expect, it } from "vitest";
import { admit, LIVE_MS, type AgentClaimsLite } from "./connection.ts";

const CLAIMS: AgentClaimsLite = { token_id: "tok_1", pool: "p", models: ["m"], exp: 2_000_000_000 };
const T = 1_000_000;

describe("who may take an agent id's connection", () => {
  it("the first connection of an id is admitted", () => {
    expect(admit([], CLAIMS, "agt_1", "i-a", T).refused).toBe(false);
  });

  it("another live process speaking as the id is refused: the newcomer is a clone", () => {
    const live = admit([], CLAIMS, "agt_1", "i-a", T);
    expect(admit([live], CLAIMS, "agt_1", "i-b", T + LIVE_MS - 1).refused).toBe(true);
  });

  it("the same process takes its own connection over (a reconnect the edge has not noticed)", () => {
    const live = admit([], CLAIMS, "agt_1", "i-a", T);
    expect(admit([live], CLAIMS, "agt_1", "i-a", T + 1).refused).toBe(false);
  });

  it("a connection silent for the live window is taken for dead and taken over by any process", () => {
    const silent = admit([], CLAIMS, "agt_1", "i-a", T);
    expect(admit([silent], CLAIMS, "agt_1", "i-b", T + LIVE_MS).refused).toBe(false);
  });

  it("a new connection starts before its hello: no capacity, nothing held", () => {
    expect(admit([], CLAIMS, "agt_1", "i-a", T)).toMatchObject({
      hello: false,
      slots: 0,
      prefetch: 0,
      running: 0,
      connected_at: T,
      last_heartbeat: T,
    });
  });
});
