import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { newId } from "./ids.ts";
import { API_KEY_PREFIX, hashKey, newApiKey, parseApiKey, sha256Hex, verifyApiKey } from "./keys.ts";
import { timingSafeEqual } from "./signing.ts";

const NUM_RUNS = Number(process.env.FC_NUM_RUNS ?? 200);
const SECRET = "test-key-signing-key";

describe("API keys", () => {
  it("a minted key parses back to its account and key id, and its MAC verifies", async () => {
    for (let i = 0; i < 200; i++) {
      const accountId = newId("acc");
      const keyId = newId("key");
      const key = await newApiKey(SECRET, accountId, keyId);
      expect(key.startsWith(API_KEY_PREFIX)).toBe(true);
      expect(parseApiKey(key)).toEqual({ accountId, keyId });
      expect(await verifyApiKey(SECRET, key)).toEqual({ accountId, keyId });
    }
  });

  it("two keys for the same ids differ in their secret", async () => {
    const accountId = newId("acc");
    const keyId = newId("key");
    expect(await newApiKey(SECRET, accountId, keyId)).not.toBe(await newApiKey(SECRET, accountId, keyId));
  });

  it("malformed keys are refused", async () => {
    const key = await newApiKey(SECRET, newId("acc"), newId("key"));
    const [head, keyPart, secret, mac] = key.split(".") as [string, string, string, string];
    const bad = [
      "",
      API_KEY_PREFIX,
      key.slice(API_KEY_PREFIX.length),
      key.replace(API_KEY_PREFIX, "fga_"),
      `${head}.${keyPart}`,
      `${head}.${keyPart}.${secret}`,
      `${head}.${keyPart}.${secret}.${mac}.x`,
      `${head}.${keyPart}.${secret.slice(1)}.${mac}`,
      `${head}.${keyPart}.${secret}A.${mac}`,
      `${head}.${keyPart}.${secret.slice(1)}=.${mac}`,
      `${head}.${keyPart}.${secret.slice(1)}+.${mac}`,
      `${head}.${keyPart}.${secret}.${mac.slice(1)}`,
      `${head}.${keyPart}.${secret}.${mac}A`,
      `${head.toUpperCase()}.${keyPart}.${secret}.${mac}`,
      `${head}x.${keyPart}.${secret}.${mac}`,
      `${head}.${keyPart.slice(1)}.${secret}.${mac}`,
      ` ${key}`,
      `${key}\n`,
      `Bearer ${key}`,
    ];
    expect(bad.filter((k) => parseApiKey(k) !== undefined)).toEqual([]);
    for (const k of bad) expect(await verifyApiKey(SECRET, k)).toBeUndefined();
  });

  it("a well-formed key the edge did not mint is refused: random, forged, or signed by another secret", async () => {
    const key = await newApiKey(SECRET, newId("acc"), newId("key"));
    const [head, keyPart, secret, mac] = key.split(".") as [string, string, string, string];
    const otherSecret = `${secret.slice(0, -1)}${secret.endsWith("A") ? "B" : "A"}`;
    const otherMac = `${mac.slice(0, -1)}${mac.endsWith("A") ? "B" : "A"}`;
    const forged = [
      // Another secret under the key's own MAC, or the key's secret with another MAC.
      `${head}.${keyPart}.${otherSecret}.${mac}`,
      `${head}.${keyPart}.${secret}.${otherMac}`,
      // Another account or key id under the MAC of this one.
      `${API_KEY_PREFIX}${newId("acc").slice(4)}.${keyPart}.${secret}.${mac}`,
      `${head}.${newId("key").slice(4)}.${secret}.${mac}`,
      // Minted with another secret.
      await newApiKey("another-deployment", newId("acc"), newId("key")),
    ];
    for (const k of forged) {
      expect(parseApiKey(k)).toBeDefined();
      expect(await verifyApiKey(SECRET, k)).toBeUndefined();
    }
    await fc.assert(
      fc.asyncProperty(
        fc.stringMatching(/^[A-Za-z0-9_-]{32}$/),
        fc.stringMatching(/^[A-Za-z0-9_-]{22}$/),
        async (s, m) => {
          fc.pre(s !== secret || m !== mac);
          expect(await verifyApiKey(SECRET, `${head}.${keyPart}.${s}.${m}`)).toBeUndefined();
        },
      ),
      { numRuns: NUM_RUNS },
    );
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
    const key = await newApiKey(SECRET, newId("acc"), newId("key"));
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
