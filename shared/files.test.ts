import { describe, expect, it } from "vitest";
import { FILE_KEYWORD, FileCreate, fileFields, inputKey, isFileId } from "./files.ts";
import { partCount, partLength } from "./outputs.ts";

describe("file fields of an input schema", () => {
  it("only top-level properties marked with the keyword set to true are file fields, sorted", () => {
    const schema = {
      type: "object",
      properties: {
        video: { type: "string", [FILE_KEYWORD]: true },
        image: { type: "string", [FILE_KEYWORD]: true },
        prompt: { type: "string" },
        off: { type: "string", [FILE_KEYWORD]: false },
        nested: { type: "object", properties: { clip: { type: "string", [FILE_KEYWORD]: true } } },
      },
    };
    expect(fileFields(schema)).toEqual(["image", "video"]);
  });

  it("a schema without properties, or with malformed ones, has no file fields", () => {
    for (const s of [{ type: "object" }, null, { properties: [] }, { properties: "x" }, { properties: { a: null } }]) {
      expect(fileFields(s)).toEqual([]);
    }
  });
});

describe("file ids, names and keys", () => {
  it("only file_ and 16 base-32 characters is a file id", () => {
    expect(isFileId("file_0123456789abcdef")).toBe(true);
    for (const s of ["file_0123456789ABCDEF", "file_0123", "job_0123456789abcdef", "/etc/passwd", 7, null]) {
      expect(isFileId(s)).toBe(false);
    }
  });

  it("a file's name may not carry a path or control characters", () => {
    const base = { content_type: "video/mp4", size: 1 };
    expect(FileCreate.safeParse({ ...base, name: "clip 1.mp4" }).success).toBe(true);
    for (const name of ["a/b.mp4", "..\\x", "a\nb", ""])
      expect(FileCreate.safeParse({ ...base, name }).success).toBe(false);
  });

  it("a file's bytes live under its account's inputs", () => {
    expect(inputKey("acc_1", "file_0123456789abcdef")).toBe("inputs/acc_1/file_0123456789abcdef");
  });

  it("every part but the last is part_bytes long, the last the rest", () => {
    expect(partCount(10, 4)).toBe(3);
    expect([1, 2, 3].map((n) => partLength(10, 4, n))).toEqual([4, 4, 2]);
    expect(partCount(8, 4)).toBe(2);
    expect(partLength(8, 4, 2)).toBe(4);
  });
});
