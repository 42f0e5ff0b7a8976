import { describe, expect, it } from "vitest";
import { outputPolicy, type OutputsConfig } from "../shared/outputs.ts";
import { outputReceipt } from "../shared/signing.ts";
import type { OutputRecord } from "../shared/wire.ts";
import { checkOutputs } from "./outputs.ts";

const SECRET = "unit-test-file-signing-key";
const REF = { job_id: `job_${"a".repeat(30)}`, epoch: 3 };
const OTHER_JOB = `job_${"b".repeat(30)}`;

/** A record as the edge answers it for `key`. */
async function record(
  name: string,
  over: Partial<Omit<OutputRecord, "receipt">> = {},
  jobId = REF.job_id,
  epoch = REF.epoch,
): Promise<OutputRecord> {
  const fields = {
    key: `outputs/${jobId}/${epoch}/${name}`,
    content_type: "image/png",
    size: 100,
    sha256: "c".repeat(64),
    ...over,
  };
  return { name, ...fields, receipt: await outputReceipt(SECRET, fields) };
}

async function check(records: OutputRecord[], config: OutputsConfig = {}) {
  return await checkOutputs(records, REF, outputPolicy(config), SECRET);
}

describe("checking a success's outputs", () => {
  it("records the edge's own, for this lease, within the policy, without their receipts", async () => {
    const a = await record("a.png");
    const b = await record("b.json", { content_type: "application/json", size: 7 });
    const out = await check([a, b], { required: ["a.png"], min: 2 });
    expect(out).toEqual({
      ok: true,
      outputs: [
        { name: "a.png", key: a.key, content_type: "image/png", size: 100, sha256: a.sha256 },
        { name: "b.json", key: b.key, content_type: "application/json", size: 7, sha256: b.sha256 },
      ],
    });
  });

  it("no outputs at all pass a model that requires none", async () => {
    expect(await check([])).toEqual({ ok: true, outputs: [] });
  });

  it("a record of another job, another attempt, or under another name's key is refused", async () => {
    for (const r of [
      await record("a.png", {}, OTHER_JOB),
      await record("a.png", {}, REF.job_id, REF.epoch - 1),
      { ...(await record("a.png")), name: "b.png" },
    ]) {
      const out = await check([r]);
      expect(out).toMatchObject({ ok: false, message: expect.stringContaining("this attempt's own") });
    }
  });

  it("a receipt that does not cover the record exactly, or is signed by another key, is refused", async () => {
    const good = await record("a.png");
    const forged = [
      { ...good, size: good.size + 1 },
      { ...good, sha256: "d".repeat(64) },
      { ...good, content_type: "text/html" },
      { ...good, receipt: "A".repeat(43) },
      {
        ...good,
        receipt: await outputReceipt("another-key", { ...good }),
      },
    ];
    for (const r of forged) {
      expect(await check([r], { content_types: ["image/png", "text/html"] })).toMatchObject({
        ok: false,
        message: expect.stringContaining("receipt"),
      });
    }
    expect(await checkOutputs([good], REF, outputPolicy({}), "")).toMatchObject({ ok: false });
  });

  it("a name twice, a required name missing, or fewer than min outputs are refused", async () => {
    const a = await record("a.png");
    expect(await check([a, a])).toMatchObject({ ok: false, message: expect.stringContaining("twice") });
    expect(await check([a], { required: ["a.png", "last.png"] })).toMatchObject({
      ok: false,
      message: "required outputs missing: last.png",
    });
    expect(await check([a], { min: 2 })).toMatchObject({ ok: false, message: expect.stringContaining("at least 2") });
  });

  it("a content type outside the model's list, an output over max_bytes or a total over max_job_bytes is refused", async () => {
    const a = await record("a.png", { size: 600 });
    const b = await record("b.png", { size: 600 });
    expect(await check([a], { content_types: ["image/gif"] })).toMatchObject({
      ok: false,
      message: expect.stringContaining("image/png"),
    });
    expect(await check([a], { max_bytes: 599 })).toMatchObject({
      ok: false,
      message: expect.stringContaining("max_bytes"),
    });
    expect(await check([a, b], { max_job_bytes: 1199 })).toMatchObject({
      ok: false,
      message: expect.stringContaining("max_job_bytes"),
    });
    expect(await check([a, b], { max_job_bytes: 1200 })).toMatchObject({ ok: true });
  });
});

describe("a model's output policy", () => {
  it("a model without the section requires nothing and allows only the safe media types", () => {
    const p = outputPolicy(undefined);
    expect(p).toMatchObject({ required: [], min: 0 });
    expect(p.content_types).toContain("image/png");
    for (const t of ["text/html", "image/svg+xml", "application/xhtml+xml", "application/javascript"]) {
      expect(p.content_types).not.toContain(t);
    }
  });

  it("a partial section keeps the defaults for what it leaves out", () => {
    expect(outputPolicy({ min: 1 })).toEqual({ ...outputPolicy(undefined), min: 1 });
  });
});
