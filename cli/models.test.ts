import { describe, expect, it } from "vitest";
import type { VersionSummary } from "../shared/repository.ts";
import { uploadLine, uploadLogLine, versionTable } from "./models.ts";
import type { Upload } from "./push.ts";

const upload = (over: Partial<Upload> = {}): Upload => ({
  pieces: 20,
  bytes: 160_000_000,
  done: 5,
  sent: 40_000_000,
  since: 0,
  ...over,
});

/** An upload of 20 pieces of 8 MB, `done` of them sent. */
const at = (done: number): Upload => upload({ done, sent: done * 8_000_000 });
/** An upload of 3 one-byte pieces, `done` of them sent. */
const three = (done: number): Upload => upload({ pieces: 3, done, sent: done });

describe("the push's progress", () => {
  it("the live line shows the bar, pieces, bytes, rate and time left, and never wraps", () => {
    const line = uploadLine(upload(), 4000, 200);
    expect(line).toContain("[██████░░░░░░░░░░░░░░░░░░]");
    expect(line).toContain("5/20 pieces · 40.0 MB/160 MB · 10.0 MB/s · ETA 12 s");
    expect(uploadLine(upload(), 4000, 40).length).toBeLessThanOrEqual(39);
  });

  it("a plain log prints a line at each tenth of the pieces and at the end, nothing in between", () => {
    expect(uploadLogLine(at(0), at(1), 1000)).toBeUndefined();
    expect(uploadLogLine(at(1), at(2), 1000)).toBe("uploaded 2/20 pieces (16.0 MB of 160 MB, 16.0 MB/s)");
    expect(uploadLogLine(at(19), at(20), 1000)).toMatch(/^uploaded 20\/20 pieces/);
    expect([1, 2, 3].map((d) => uploadLogLine(three(d - 1), three(d), 1000) !== undefined)).toEqual([true, true, true]);
  });
});

describe("models list", () => {
  it("the table shows model, version, state, size, pieces, when and by whom", () => {
    const v: VersionSummary = {
      model: "demo",
      version: "2026-12-06.1",
      digest: "ab".repeat(32),
      state: "ready",
      bytes: 16_778_450,
      pieces: 5,
      created_at: new Date(0).toISOString(),
      created_by: "admin:0123abcd",
    };
    expect(versionTable([v], 90_000)).toBe(
      "MODEL  VERSION       STATE  SIZE     PIECES  CREATED         BY              DIGEST\n" +
        "demo   2026-12-06.1  ready  16.8 MB  5       1 min 30 s ago  admin:0123abcd  abababababab…\n",
    );
  });
});
