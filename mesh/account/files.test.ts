import { describe, expect, it } from "vitest";
import { migrate } from "../sql/sql.ts";
import { nodeSql } from "../sql/node.ts";
import { createFile, fileParts, inputRefs, liveFile, uploadOf } from "./files.ts";
import { AccountStore, MIGRATIONS } from "./store.ts";

const T0 = Date.UTC(2026, 0, 1);
const DAY = 86400 * 1000;
const ID = "file_0123456789abcdef";

function store(): AccountStore {
  const sql = nodeSql();
  migrate(sql, MIGRATIONS);
  const s = new AccountStore(sql);
  s.createAccount({ id: "acc_1", name: "Ada", tier: "plus", rate_limit: null, created_at: T0 });
  return s;
}

const body = { name: "clip.mp4", content_type: "video/mp4", size: 10, part_bytes: 4 };

describe("input files of an account", () => {
  it("a file is live until its retention ends, then no route finds it", () => {
    const s = store();
    const view = createFile(s, ID, body, "r2-upload", T0, 7 * DAY);
    expect(view).toMatchObject({ status: "uploading", parts: 3, expires_at: new Date(T0 + 7 * DAY).toISOString() });
    expect(liveFile(s, ID, T0 + 7 * DAY - 1).ok).toBe(true);
    expect(liveFile(s, ID, T0 + 7 * DAY)).toMatchObject({ ok: false, code: "file_not_found" });
    expect(s.expiredFiles(T0 + 7 * DAY, 10).map((f) => f.id)).toEqual([ID]);
  });

  it("stored parts are recorded for a resuming client, and a complete file takes no more parts", () => {
    const s = store();
    createFile(s, ID, body, "r2-upload", T0, DAY);
    s.putPart({ file_id: ID, n: 3, etag: "e3", size: 2 });
    s.putPart({ file_id: ID, n: 1, etag: "e1", size: 4 });
    expect(fileParts(s, s.file(ID)!).stored).toEqual([
      { part_number: 1, size: 4 },
      { part_number: 3, size: 2 },
    ]);
    expect(uploadOf(s, ID, T0)).toMatchObject({ ok: true, r2_upload: "r2-upload" });
    s.completeFile(ID, "a".repeat(64));
    expect(uploadOf(s, ID, T0)).toMatchObject({ ok: false, code: "conflict" });
  });

  it("a submit may name only live, complete files of the account", () => {
    const s = store();
    createFile(s, ID, body, "r2", T0, DAY);
    const other = "file_aaaaaaaaaaaaaaaa";
    expect(inputRefs(s, [ID, ID, other, "../x"], T0)).toEqual({
      [ID]: expect.objectContaining({ ok: false, code: "file_not_ready" }),
      [other]: expect.objectContaining({ ok: false, code: "file_not_found" }),
      "../x": expect.objectContaining({ ok: false, code: "file_not_found" }),
    });
    s.completeFile(ID, "b".repeat(64));
    expect(inputRefs(s, [ID], T0)[ID]).toEqual({ id: ID, content_type: "video/mp4", size: 10, sha256: "b".repeat(64) });
    expect(inputRefs(s, [ID], T0 + DAY)[ID]).toMatchObject({ code: "file_not_found" });
  });
});
