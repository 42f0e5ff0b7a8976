/**
 * msgpack, hardened. Every frame that crosses a wire (agent WebSocket, runner stdio) is
 * decoded here and nowhere else. msgpackr on its own turns attacker-chosen bytes into RegExp,
 * Error, Set, Map, Date or BigInt values, honours `__proto__` keys and has no depth limit, so
 * decoding is followed by a walk that lets only plain data through: objects with the plain
 * prototype, arrays, strings, finite numbers, booleans, null and byte arrays, at most
 * {@link MAX_DEPTH} deep. Anything else is a {@link CodecError}. The zod schema of the message
 * then checks its shape.
 */
import { Packr, Unpackr } from "msgpackr";

/** Deepest nesting a frame may have. */
export const MAX_DEPTH = 32;

export class CodecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CodecError";
  }
}

const unpackr = new Unpackr({
  useRecords: false,
  mapsAsObjects: true,
  moreTypes: false,
  structuredClone: false,
  int64AsType: "number",
  bundleStrings: false,
});

const packr = new Packr({
  useRecords: false,
  moreTypes: false,
  structuredClone: false,
  bundleStrings: false,
  encodeUndefinedAsNil: false,
  variableMapSize: true,
});

/** Plain data: what may cross a wire. */
/** A message read off a wire: one that passed its schema, or why it did not (`F`). */
export type Decoded<T, F> = { ok: true; msg: T } | ({ ok: false } & F);

export type Plain = null | boolean | number | string | Uint8Array | Plain[] | { [k: string]: Plain };

function check(v: unknown, depth: number): void {
  if (depth > MAX_DEPTH) throw new CodecError(`nested deeper than ${MAX_DEPTH}`);
  if (v === null || typeof v === "boolean" || typeof v === "string") return;
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new CodecError("non-finite number");
    return;
  }
  if (v instanceof Uint8Array) return;
  if (Array.isArray(v)) {
    for (const x of v) check(x, depth + 1);
    return;
  }
  if (typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    for (const k of Object.keys(v)) {
      if (k === "__proto__" || k === "constructor" || k === "prototype") throw new CodecError(`forbidden key ${k}`);
      check((v as Record<string, unknown>)[k], depth + 1);
    }
    return;
  }
  throw new CodecError(`not plain data: ${Object.prototype.toString.call(v)}`);
}

/** An item of a list decoded one by one: plain, or why not with the plain scalars at its top. */
export type Item = { ok: true; value: Plain } | { ok: false; error: string; scalars: Record<string, string | number> };

/**
 * Decodes a msgpack map whose `key` holds an array, proving everything plain as {@link decode}
 * does, except that the array's items are proved one by one: an item that is not plain does not
 * spoil the others. Throws {@link CodecError} when the bytes are malformed, when anything
 * outside the items is not plain, or when `key` does not hold an array.
 */
export function decodeItems(bytes: Uint8Array, key: string): { head: Record<string, Plain>; items: Item[] } {
  const value = unpackOne(bytes);
  if (value === null || typeof value !== "object" || Object.getPrototypeOf(value) !== Object.prototype) {
    throw new CodecError("not a map");
  }
  const { [key]: list, ...head } = value as Record<string, unknown>;
  if (!Array.isArray(list)) throw new CodecError(`${key} is not an array`);
  check(head, 0);
  const items = list.map((item): Item => {
    try {
      check(item, 2);
      return { ok: true, value: item as Plain };
    } catch (err) {
      if (!(err instanceof CodecError)) throw err;
      const scalars: Record<string, string | number> = {};
      if (item !== null && typeof item === "object" && Object.getPrototypeOf(item) === Object.prototype) {
        for (const [k, v] of Object.entries(item)) {
          if (typeof v === "string" || (typeof v === "number" && Number.isFinite(v))) scalars[k] = v;
        }
      }
      return { ok: false, error: err.message, scalars };
    }
  });
  return { head: head as Record<string, Plain>, items };
}

/** msgpack's int 32 formats hold integers from here… */
const INT32_MIN = -0x8000_0000;
/** …to here; msgpackr writes any other number as float64, integers included. */
const UINT32_MAX = 0xffff_ffff;

/**
 * `value` with every safe integer beyond 32 bits (a deadline in ms, a byte count) turned into a
 * BigInt, which msgpackr writes as int 64, so a reader in another language gets an integer
 * where the schema says integer, not a float. Containers are copied only where something changed.
 */
function widenIntegers(value: unknown): unknown {
  if (typeof value === "number") {
    return Number.isSafeInteger(value) && (value > UINT32_MAX || value < INT32_MIN) ? BigInt(value) : value;
  }
  if (value === null || typeof value !== "object" || value instanceof Uint8Array) return value;
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    value.forEach((item: unknown, i) => {
      const widened = widenIntegers(item);
      if (widened !== item) (out ??= [...value])[i] = widened;
    });
    return out ?? value;
  }
  let out: Record<string, unknown> | undefined;
  for (const [key, item] of Object.entries(value)) {
    const widened = widenIntegers(item);
    // defineProperty, not assignment: a "__proto__" key stays a key (the decoder refuses it).
    if (widened !== item) Object.defineProperty((out ??= { ...value }), key, { value: widened, enumerable: true });
  }
  return out ?? value;
}

/**
 * Encodes plain data as msgpack: integers in the smallest int format that holds them (int 64
 * beyond 32 bits), other numbers as float64.
 */
export function encode(value: unknown): Uint8Array {
  return packr.pack(widenIntegers(value));
}

/**
 * Decodes one msgpack value and proves it plain. Throws {@link CodecError} on malformed bytes,
 * trailing bytes, extension types, non-plain values or nesting past {@link MAX_DEPTH}.
 */
export function decode(bytes: Uint8Array): Plain {
  const value = unpackOne(bytes);
  check(value, 0);
  return value as Plain;
}

/** Unpacks exactly one msgpack value, not yet proved plain. */
function unpackOne(bytes: Uint8Array): unknown {
  // msgpackr recurses per nesting level: a frame of nested container headers ends in a
  // RangeError long before the frame cap's worth of bytes is read, which lands here too.
  try {
    const values = unpackr.unpackMultiple(bytes) as unknown[];
    if (values.length !== 1)
      throw new CodecError(values.length === 0 ? "empty frame" : "trailing bytes after the message");
    return values[0];
  } catch (err) {
    if (err instanceof CodecError) throw err;
    throw new CodecError(`malformed msgpack: ${(err as Error).message}`);
  }
}
