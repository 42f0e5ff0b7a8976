import { describe, expect, it } from "vitest";
import { renderTransfer } from "./progress.ts";

const MiB = 1024 * 1024;

describe("the transfer bar", () => {
  it("shows bytes, rate, peers and the origin's share", () => {
    const line = renderTransfer(
      "demo@1",
      {
        pieces: 32,
        totalPieces: 64,
        bytes: 256 * MiB,
        totalBytes: 512 * MiB,
        originBytes: 16 * MiB,
        peerBytes: 240 * MiB,
        peers: 15,
      },
      25 * MiB,
    );
    expect(line).toBe("demo@1 [############------------]  50% 256/512 MiB 25.0 MiB/s · 15 peers · origin 6%");
  });

  it("without a swarm shows no peers nor origin share, and a version with nothing to fetch is full", () => {
    expect(renderTransfer("m@2", { pieces: 0, totalPieces: 0, bytes: 0, totalBytes: 0 }, 0)).toBe(
      "m@2 [########################] 100% 0/0 MiB 0.0 MiB/s",
    );
  });
});
