/**
 * The fuzz suites' oracle for "no non-plain value got past validation", written apart from the
 * codec it checks: plain objects, arrays, bytes, finite numbers, strings, booleans and null, no
 * deeper than the codec's cap, with no `__proto__`, `constructor` or `prototype` key.
 */
import { MAX_DEPTH } from "../../shared/codec.ts";

export function plain(v: unknown, depth = 0): boolean {
  if (depth > MAX_DEPTH) return false;
  if (v === null || typeof v === "boolean" || typeof v === "string") return true;
  if (typeof v === "number") return Number.isFinite(v);
  if (v instanceof Uint8Array) return true;
  if (Array.isArray(v)) return v.every((x) => plain(x, depth + 1));
  if (typeof v !== "object" || Object.getPrototypeOf(v) !== Object.prototype) return false;
  const keys = Object.getOwnPropertyNames(v);
  if (keys.some((k) => k === "__proto__" || k === "constructor" || k === "prototype")) return false;
  return keys.every((k) => plain((v as Record<string, unknown>)[k], depth + 1));
}
