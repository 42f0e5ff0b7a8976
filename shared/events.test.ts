import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { sseData } from "./events.ts";

const NUM_RUNS = Number(process.env.FC_NUM_RUNS ?? 200);
/** Every character some line reader takes for a line break (Python's str.splitlines, the widest). */
// oxlint-disable-next-line no-control-regex -- the control characters are the point
const BREAKS = /[\n\r\v\f\u001c\u001d\u001e\u0085\u2028\u2029]/;

describe("an event's data line", () => {
  it("U+2028, U+2029 and U+0085 are escaped, and the line parses back to the same value", () => {
    const data = { level: "info", message: "a\u2028b\u2029c\u0085d\\\u2028e" };
    const line = sseData(data);
    expect(line).toBe(String.raw`{"level":"info","message":"a\u2028b\u2029c\u0085d\\\u2028e"}`);
    expect(JSON.parse(line)).toEqual(data);
  });

  it("any value becomes one line with no character a line reader breaks on, and parses back to itself", () => {
    const text = fc
      .array(
        fc.oneof(fc.constantFrom("\u2028", "\u2029", "\u0085", "\n", "\r", "\\", '"'), fc.string({ unit: "binary" })),
      )
      .map((parts) => parts.join(""));
    const value = fc.oneof(text, fc.array(text), fc.dictionary(text, text), fc.jsonValue());
    fc.assert(
      fc.property(value, (v) => {
        const line = sseData(v);
        expect(BREAKS.test(line)).toBe(false);
        expect(JSON.parse(line)).toEqual(JSON.parse(JSON.stringify(v)));
      }),
      { numRuns: NUM_RUNS },
    );
  });
});
