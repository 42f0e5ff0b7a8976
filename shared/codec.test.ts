import { describe, expect, it } from "vitest";
import { decode, encode } from "./codec.ts";

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex");

describe("codec", () => {
  it("integers beyond 32 bits are written as msgpack int 64 and read back as the same numbers", () => {
    const deadline = 1_763_820_217_512;
    // d3: int 64, big-endian.
    expect(hex(encode(deadline))).toBe("d30000019aabe0a4a8");
    expect(hex(encode(-(2 ** 40)))).toBe("d3ffffff0000000000");
    expect(decode(encode({ deadline, list: [2 ** 53 - 1, -(2 ** 53 - 1)] }))).toEqual({
      deadline,
      list: [2 ** 53 - 1, -(2 ** 53 - 1)],
    });
  });

  it("integers within 32 bits keep their smallest format, and other numbers stay float64", () => {
    expect(hex(encode(0xffff_ffff))).toBe("ceffffffff");
    expect(hex(encode(-0x8000_0000))).toBe("d280000000");
    expect(hex(encode(1.5))).toBe("cb3ff8000000000000");
    expect(hex(encode(2 ** 60))).toBe("cb43b0000000000000");
  });

  it("widening copies only what changed: keys keep their order, bytes and untouched values are the same objects", () => {
    const bytes = new Uint8Array([1, 2, 3]);
    const value = { a: 1, big: 2 ** 40, bytes, nested: { small: [1, 2] } };
    const decoded = decode(encode(value)) as typeof value;
    expect(Object.keys(decoded)).toEqual(["a", "big", "bytes", "nested"]);
    expect(decoded).toEqual({ ...value, bytes: expect.any(Uint8Array) });
    expect(value.big).toBe(2 ** 40);
  });

  it('a "__proto__" key next to a wide integer is written as a key, not taken for the prototype', () => {
    const value = JSON.parse('{"__proto__": {"x": 1}, "big": 1099511627776}') as Record<string, unknown>;
    const bytes = hex(encode(value));
    expect(bytes).toContain(hex(new TextEncoder().encode("__proto__")));
    expect(bytes).toContain("d30000010000000000");
    expect(Object.getPrototypeOf(decode(encode(value)))).toBe(Object.prototype);
  });
});
