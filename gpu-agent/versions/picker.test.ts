import { describe, expect, it } from "vitest";
import { ENDGAME_COPIES, ORIGIN, ORPHAN_MS, pickFromOrigin, pickFromPeer, type PeerView } from "./picker.ts";

const b = (s: string): boolean[] => [...s].map((c) => c === "1");

function state(have: string, peers: Record<string, string | PeerView>, inflight: Record<number, string[]> = {}) {
  return {
    have: b(have),
    peers: new Map(Object.entries(peers).map(([k, v]) => [k, typeof v === "string" ? { have: b(v), bad: false } : v])),
    inflight: new Map(Object.entries(inflight).map(([k, v]) => [Number(k), new Set(v)])),
  };
}

describe("picking a piece from a peer", () => {
  it("takes the rarest piece the peer holds that this agent lacks", () => {
    const s = state("0000", { a: "1111", b: "1101", c: "1100" });
    // Piece 2 is held by a alone; 3 by a and b; 0 and 1 by all three.
    expect(pickFromPeer(s, "a")).toBe(2);
    expect(pickFromPeer(s, "b")).toBe(3);
  });

  it("never asks for a piece this agent holds, nor one already in flight before the endgame", () => {
    const s = state("1000", { a: "1110" }, { 1: [ORIGIN] });
    expect(pickFromPeer(s, "a")).toBe(2);
    expect(pickFromPeer(state("1110", { a: "1110" }), "a")).toBeUndefined();
  });

  it("breaks ties at random, so agents asking at once spread over the pieces", () => {
    const s = state("00000000", { a: "11111111" });
    const seen = new Set<number | undefined>();
    let x = 1;
    for (let i = 0; i < 64; i++) seen.add(pickFromPeer(s, "a", () => (x = (x * 48271) % 2147483647) / 2147483647));
    expect(seen.size).toBeGreaterThan(4);
  });

  it("a peer that sent a corrupt piece is asked for nothing, and its pieces do not count as held", () => {
    const s = state("00", { liar: { have: b("11"), bad: true }, a: "11", c: "10" });
    expect(pickFromPeer(s, "liar")).toBeUndefined();
    // Without the liar, piece 1 has one holder and piece 0 two: 1 is the rarer.
    expect(pickFromPeer(s, "a")).toBe(1);
  });

  it(`in the endgame asks a second peer for a piece in flight elsewhere, at most ${ENDGAME_COPIES} copies at once`, () => {
    const s = state("110", { a: "111", b: "111", c: "111" }, { 2: ["a"] });
    expect(pickFromPeer(s, "b")).toBe(2);
    expect(pickFromPeer(s, "a")).toBeUndefined();
    const full = state("110", { a: "111", b: "111", c: "111" }, { 2: ["a", "b"] });
    expect(pickFromPeer(full, "c")).toBeUndefined();
  });

  it("is not in the endgame while some missing piece is in flight nowhere", () => {
    // Piece 3 is missing and in flight nowhere, but b does not hold it: b gets no duplicate of 2.
    const s = state("1100", { a: "1111", b: "1110" }, { 2: ["a"] });
    expect(pickFromPeer(s, "b")).toBeUndefined();
  });
});

describe("picking a piece from the origin", () => {
  const none = new Map<number, number>();

  it("the first agents split what nobody holds by place, so the origin sends one copy between them", () => {
    const s = state("000000", {});
    const taken = [0, 1, 2].map((place) => {
      const mine: number[] = [];
      const inflight = new Map<number, Set<string>>();
      for (;;) {
        const p = pickFromOrigin({ ...s, inflight }, { place, fetchers: 3, alone: false }, none, 0);
        if (p === undefined) break;
        mine.push(p);
        inflight.set(p, new Set([ORIGIN]));
      }
      return mine;
    });
    expect(taken).toEqual([
      [0, 3],
      [1, 4],
      [2, 5],
    ]);
  });

  it("leaves a piece a peer says it is fetching from the origin to that peer", () => {
    const s = state("00", { a: { have: b("00"), fetching: b("10"), bad: false } });
    expect(pickFromOrigin(s, { place: 0, fetchers: 1, alone: false }, none, 0)).toBe(1);
  });

  it("never takes a piece a peer holds or one in flight", () => {
    const s = state("000", { a: "100" }, { 1: ["b"] });
    expect(pickFromOrigin(s, { place: 0, fetchers: 1, alone: false }, none, 0)).toBe(2);
  });

  it(`takes another place's piece only once nobody has held it for ${ORPHAN_MS} ms`, () => {
    const s = state("00", {});
    const since = new Map([[1, 1_000]]);
    expect(pickFromOrigin(s, { place: 0, fetchers: 2, alone: false }, since, 1_000)).toBe(0);
    const mineInFlight = state("00", {}, { 0: [ORIGIN] });
    expect(
      pickFromOrigin(mineInFlight, { place: 0, fetchers: 2, alone: false }, since, 1_000 + ORPHAN_MS - 1),
    ).toBeUndefined();
    expect(pickFromOrigin(mineInFlight, { place: 0, fetchers: 2, alone: false }, since, 1_000 + ORPHAN_MS)).toBe(1);
  });

  it("an agent without a place waits for the others; an agent alone takes everything", () => {
    const s = state("00", {});
    expect(pickFromOrigin(s, { fetchers: 2, alone: false }, none, 0)).toBeUndefined();
    expect(pickFromOrigin(s, { fetchers: 0, alone: true }, none, 0)).toBe(0);
  });
});
