import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { LocalFile } from "../client/index.ts";
import { withLocalFiles } from "./local-files.ts";
import { UsageError } from "./flags.ts";

const dir = mkdtempSync(join(tmpdir(), "fg-cli-files-"));
writeFileSync(join(dir, "clip.mp4"), "not empty");
writeFileSync(join(dir, "empty.png"), "");
writeFileSync(join(dir, "notes.txt"), "x");

describe("local files in --input", () => {
  it("a top-level @PATH value becomes the local file to upload, resolved from the working folder; @@ is a literal @", () => {
    const out = withLocalFiles({ prompt: "@@everyone", video: "@clip.mp4", n: 3, nested: { v: "@clip.mp4" } }, dir);
    expect(out.prompt).toBe("@everyone");
    expect(out.video).toBeInstanceOf(LocalFile);
    expect((out.video as LocalFile).path).toBe(join(dir, "clip.mp4"));
    expect(out.nested).toEqual({ v: "@clip.mp4" });
  });

  it("a missing file, an empty one, a folder or one of no input media type is a usage error naming the field", () => {
    for (const [v, why] of [
      ["@missing.mp4", "ENOENT"],
      ["@empty.png", "is empty"],
      ["@.", "not a file"],
      ["@notes.txt", "no media type"],
    ] as const) {
      expect(() => withLocalFiles({ video: v }, dir)).toThrow(UsageError);
      expect(() => withLocalFiles({ video: v }, dir)).toThrow(
        new RegExp(`--input.video ${v.replace(".", "\\.")}.*${why}`),
      );
    }
  });
});
