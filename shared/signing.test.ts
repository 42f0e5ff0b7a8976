import { describe, expect, it } from "vitest";
import { outputReceipt, publicOrigin, sign, verifyOutputReceipt } from "./signing.ts";

describe("the public origin of signed URLs", () => {
  it("is the configured URL's origin, and empty (relative URLs) when none is configured", () => {
    expect(publicOrigin("https://api.example.com/")).toBe("https://api.example.com");
    expect(publicOrigin("http://127.0.0.1:8787")).toBe("http://127.0.0.1:8787");
    expect(publicOrigin(undefined)).toBe("");
    expect(publicOrigin("  ")).toBe("");
  });

  it("a configured value that is not an http(s) URL is a configuration error, not a guess", () => {
    for (const bad of ["api.example.com", "ftp://x.example", "javascript:alert(1)"]) {
      expect(() => publicOrigin(bad)).toThrow(/PUBLIC_URL/);
    }
  });
});

describe("output receipts", () => {
  const fields = { key: "outputs/job_x/1/a.png", size: 5, sha256: "e".repeat(64), content_type: "image/png" };

  it("verify only for the exact output they were made for", async () => {
    const r = await outputReceipt("k", fields);
    expect(await verifyOutputReceipt("k", fields, r)).toBe(true);
    expect(await verifyOutputReceipt("k", { ...fields, size: 6 }, r)).toBe(false);
    expect(await verifyOutputReceipt("other", fields, r)).toBe(false);
  });

  it("are not valid as any other signature the edge makes, nor others as them", async () => {
    const r = await outputReceipt("k", fields);
    expect(r).not.toBe(await sign("k", `file\n${fields.key}\n${fields.size}`));
    const file = await sign("k", `file\n${fields.key}\n5`);
    expect(await verifyOutputReceipt("k", fields, file)).toBe(false);
  });
});
