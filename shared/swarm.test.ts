import { describe, expect, it } from "vitest";
import { decodeBitfield, encodeBitfield, PeerAddr } from "./swarm.ts";

describe("swarm bitfields", () => {
  it("round-trip for every length up to 40 pieces and every pattern tried", () => {
    for (let n = 0; n <= 40; n++) {
      for (let seed = 0; seed < 8; seed++) {
        const bits = Array.from({ length: n }, (_, i) => ((i * 7 + seed) * 13) % 5 < 2);
        expect(decodeBitfield(encodeBitfield(bits), n)).toEqual(bits);
      }
    }
  });

  it("a bitfield of another length, or with a bit past the last piece, is refused", () => {
    expect(decodeBitfield(encodeBitfield([true, true]), 9)).toBeUndefined();
    expect(decodeBitfield(encodeBitfield([true, true, true]), 2)).toBeUndefined();
    expect(decodeBitfield("!!", 8)).toBeUndefined();
  });

  it("piece 0 is the first byte's most significant bit, as BitTorrent", () => {
    expect(encodeBitfield([true, false, false, false, false, false, false, false])).toBe("gA");
  });
});

describe("peer addresses", () => {
  it("are HOST:PORT with a port of 1 to 65535", () => {
    for (const ok of ["127.0.0.1:7000", "gpu-3.example.com:443", "[::1]:9000"])
      expect(PeerAddr.safeParse(ok).success).toBe(true);
    for (const bad of ["127.0.0.1", "host:0", "host:70000", "http://x:1", ":80"])
      expect(PeerAddr.safeParse(bad).success).toBe(false);
  });
});
