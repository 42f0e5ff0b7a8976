import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { newId } from "./ids.ts";
import { API_KEY_PREFIX, hashKey, newApiKey, parseApiKey, sha256Hex, timingSafeEqual } from "./keys.ts";

const NUM_RUNS = Number(process.env.FC_NUM_RUNS ?? 200);

describe("API keys", () => {
  it("a minted key parses back to its account and key id", () => {
    for (let i = 0; i < 200; i++) {
      const accountId = newId("acc");
      const keyId = newId("key");
      const key = newApiKey(accountId, keyId);
      expect(key.startsWith(API_KEY_PREFIX)).toBe(true);
      expect(parseApiKey(key)).toEqual({ accountId, keyId });
    }
  });

  it("two keys for the same ids differ in their secret", () => {
    const accountId = newId("acc");
    const keyId = newId("key");
    expect(newApiKey(accountId, keyId)).not.toBe(newApiKey(accountId, keyId));
  });

  it("malformed keys are refused", () => {
    const key = newApiKey(newId("acc"), newId("key"));
    const [head, keyPart, secret] = key.split(".") as [string, string, string];
    const bad = [
      "",
      API_KEY_PREFIX,
      key.slice(API_KEY_PREFIX.length),
      key.replace(API_KEY_PREFIX, "fga_"),
      `${head}.${keyPart}`,
      `${head}.${keyPart}.${secret}.x`,
      `${head}.${keyPart}.${secret.slice(1)}`,
      `${head}.${keyPart}.${secret}A`,
      `${head}.${keyPart}.${secret.slice(1)}=`,
      `${head}.${keyPart}.${secret.slice(1)}+`,
      `${head.toUpperCase()}.${keyPart}.${secret}`,
      `${head}x.${keyPart}.${secret}`,
      `${head}.${keyPart.slice(1)}.${secret}`,
      ` ${key}`,
      `${key}\n`,
      `Bearer ${key}`,
    ];
    expect(bad.filter((k) => parseApiKey(k) !== undefined)).toEqual([]);
  });

  it("arbitrary text is not a key", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (s) => {
        expect(parseApiKey(`${API_KEY_PREFIX}${s}`)).toBeUndefined();
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it("a key is stored as its SHA-256 in lowercase hex", async () => {
    expect(await sha256Hex("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect(await sha256Hex("")).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const key = newApiKey(newId("acc"), newId("key"));
    const h = await hashKey(key);
    expect(h).toMatch(/^[0-9a-f]{64}$/);
    expect(h).not.toContain(key.split(".")[2]!);
  });
});

describe("timingSafeEqual", () => {
  it("equal strings are equal; any difference, or another length, is not", () => {
    expect(timingSafeEqual("", "")).toBe(true);
    expect(timingSafeEqual("abc", "abc")).toBe(true);
    expect(timingSafeEqual("abc", "abd")).toBe(false);
    expect(timingSafeEqual("abc", "ab")).toBe(false);
    expect(timingSafeEqual("ab", "abc")).toBe(false);
    expect(timingSafeEqual("a", "")).toBe(false);
  });

  it("agrees with === on arbitrary strings", () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (a, b) => {
        expect(timingSafeEqual(a, b)).toBe(a === b);
        expect(timingSafeEqual(a, a)).toBe(true);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it("a single changed character anywhere makes them unequal", () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 64 }),
        fc.nat(),
        fc.integer({ min: 1, max: 0xffff }),
        (a, at, delta) => {
          const i = at % a.length;
          const changed = String.fromCharCode((a.charCodeAt(i) + delta) % 0x10000);
          const b = a.slice(0, i) + changed + a.slice(i + 1);
          expect(timingSafeEqual(a, b)).toBe(false);
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });
});
