import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalJson } from "./canonical.ts";

const NUM_RUNS = Number(process.env.FC_NUM_RUNS ?? 200);

/** Rebuilds a JSON value with every object's keys in reverse order. */
function reverseKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(reverseKeys);
  if (v !== null && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).toReversed()) {
      Object.defineProperty(out, k, {
        value: reverseKeys((v as Record<string, unknown>)[k]),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  }
  return v;
}

describe("canonical JSON", () => {
  it("object keys are sorted at every depth; arrays keep their order", () => {
    expect(canonicalJson({ b: 1, a: { d: [3, 1, 2], c: null } })).toBe('{"a":{"c":null,"d":[3,1,2]},"b":1}');
    expect(canonicalJson([{ z: 1, y: 2 }, "x"])).toBe('[{"y":2,"z":1},"x"]');
  });

  it("primitives are written as JSON writes them", () => {
    expect(canonicalJson(null)).toBe("null");
    expect(canonicalJson(true)).toBe("true");
    expect(canonicalJson(1.5)).toBe("1.5");
    expect(canonicalJson('a"b\n')).toBe(JSON.stringify('a"b\n'));
    expect(canonicalJson("é€😀")).toBe('"é€😀"');
  });

  it("undefined members are dropped as JSON drops them, and undefined alone is null", () => {
    expect(canonicalJson({ a: undefined, b: 1 })).toBe('{"b":1}');
    expect(canonicalJson([undefined])).toBe("[null]");
    expect(canonicalJson(undefined)).toBe("null");
  });

  it("two bodies that mean the same thing write the same text", () => {
    expect(canonicalJson({ input: { prompt: "cat", steps: 4 }, metadata: { a: 1 } })).toBe(
      canonicalJson({ metadata: { a: 1 }, input: { steps: 4, prompt: "cat" } }),
    );
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        expect(canonicalJson(reverseKeys(v))).toBe(canonicalJson(v));
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it("bodies that differ write different text", () => {
    expect(canonicalJson({ a: 1 })).not.toBe(canonicalJson({ a: "1" }));
    expect(canonicalJson({ a: [1, 2] })).not.toBe(canonicalJson({ a: [2, 1] }));
    expect(canonicalJson({ a: { b: 1 } })).not.toBe(canonicalJson({ "a.b": 1 }));
  });

  it("the text is valid JSON that parses back to the same value", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const text = canonicalJson(v);
        // The same value JSON itself round-trips to (JSON has no -0: it is written as 0).
        expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(v)));
        expect(canonicalJson(JSON.parse(text))).toBe(text);
      }),
      { numRuns: NUM_RUNS },
    );
  });
});
