"""
The runner protocol's message schemas (docs/runner-protocol.md), as the same JSON Schema subset
that shared/golden/runner.schema.json holds, and a validator for that subset.

The schemas are built here, not read from the repository at run time, so the package works on
its own; tests/test_protocol.py checks that they equal the golden file exported from
shared/runner.ts (the one source of truth), so the two cannot drift apart.
"""

from __future__ import annotations

import math
import re
from typing import Any

PROTOCOL_VERSION = 1
ERROR_CODES = ["oom", "invalid_input", "model_error", "cancelled", "timeout"]
# JavaScript's Number.MAX_SAFE_INTEGER: zod's .int() bound, written into the golden schema.
MAX_SAFE_INTEGER = 2**53 - 1


def _str(lo: int | None = None, hi: int | None = None) -> dict[str, Any]:
    s: dict[str, Any] = {"type": "string"}
    if lo is not None:
        s["minLength"] = lo
    if hi is not None:
        s["maxLength"] = hi
    return s


def _int(lo: int, hi: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": lo, "maximum": hi}


def _enum(values: list[str]) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


_BIN: dict[str, Any] = {"x-msgpack-type": "bin"}
_JOB_ID = _str(1, 64)
_MODEL = _str(1, 64)
_VERSION = _str(1, 128)


def _message(type_: str, fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    props: dict[str, Any] = {
        "v": {"type": "number", "const": PROTOCOL_VERSION},
        "type": {"type": "string", "const": type_},
        **fields,
    }
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


TO_RUNNER: dict[str, Any] = {
    "oneOf": [
        _message("runner.load", {"model": _MODEL, "version": _VERSION}),
        _message(
            "job.run",
            {
                "job_id": _JOB_ID,
                "model": _MODEL,
                "version": _VERSION,
                "input": {"type": "object", "propertyNames": {"type": "string"}, "additionalProperties": {}},
            },
        ),
        _message("job.cancel", {"job_id": _JOB_ID}),
        _message("runner.shutdown", {}),
    ]
}

FROM_RUNNER: dict[str, Any] = {
    "oneOf": [
        _message(
            "runner.hello",
            {
                "runner": _str(1, 64),
                "version": _str(1, 64),
                "max_batch": _int(1, 256),
                "models": {
                    "maxItems": 64,
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"model": _MODEL, "version": _VERSION},
                        "required": ["model", "version"],
                        "additionalProperties": False,
                    },
                },
            },
        ),
        _message("runner.loaded", {"model": _MODEL, "version": _VERSION}),
        _message(
            "runner.load_failed",
            {"model": _MODEL, "version": _VERSION, "code": _enum(ERROR_CODES), "message": _str(None, 4096)},
        ),
        _message(
            "job.progress",
            {
                "job_id": _JOB_ID,
                "phase": _enum(["loading", "sampling", "decoding"]),
                "step": _int(0, MAX_SAFE_INTEGER),
                "total": _int(1, MAX_SAFE_INTEGER),
            },
        ),
        _message(
            "job.frame",
            {
                "job_id": _JOB_ID,
                "index": _int(0, 100_000),
                "width": _int(1, 4096),
                "height": _int(1, 4096),
                "format": {"type": "string", "const": "rgba8"},
                "data": _BIN,
                "preview": {"type": "boolean"},
            },
        ),
        _message(
            "job.log",
            {"job_id": _JOB_ID, "level": _enum(["debug", "info", "warn", "error"]), "message": _str(None, 4096)},
        ),
        _message(
            "job.output",
            {
                "job_id": _JOB_ID,
                "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$"},
                "content_type": _str(1, 128),
                "data": _BIN,
            },
        ),
        _message("job.error", {"job_id": _JOB_ID, "code": _enum(ERROR_CODES), "message": _str(None, 4096)}),
        _message("job.done", {"job_id": _JOB_ID}),
    ]
}


class SchemaError(ValueError):
    """A message that is plain data but not one the protocol allows (`reject_at: schema`)."""


def js_length(s: str) -> int:
    """A string's length as JavaScript (and zod, and so the agent) counts it: UTF-16 code units."""
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


def truncate(s: str, limit: int = 4096) -> str:
    """Cuts `s` to at most `limit` UTF-16 code units, ending in an ellipsis when cut; lone
    surrogates (which UTF-8, and so msgpack, cannot carry) are replaced first."""
    s = s.encode("utf-8", "replace").decode("utf-8")
    if js_length(s) <= limit:
        return s
    out = s[: limit - 1]
    while js_length(out) > limit - 1:
        out = out[:-1]
    return out + "…"


def _is_int(v: Any) -> bool:
    # An encoder may write an integer as a float (msgpackr does beyond 32 bits unless handed a
    # BigInt): an integral float is an integer.
    if isinstance(v, bool):
        return False
    return isinstance(v, int) or (isinstance(v, float) and math.isfinite(v) and v.is_integer())


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": _is_int,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


def _check(value: Any, schema: dict[str, Any], path: str) -> None:
    if "oneOf" in schema or "anyOf" in schema:
        options = schema.get("oneOf") or schema["anyOf"]
        # Pick the alternative by its `type` const first, for a useful message.
        if isinstance(value, dict):
            typed = [o for o in options if o.get("properties", {}).get("type", {}).get("const") == value.get("type")]
            if len(typed) == 1:
                _check(value, typed[0], path)
                return
        if not isinstance(value, dict) or "type" not in value:
            raise SchemaError(f"{path or 'message'}: expected a map with a known `type`")
        raise SchemaError(f"{path}.type: unknown message type {value.get('type')!r}")
    if schema.get("x-msgpack-type") == "bin" and not isinstance(value, (bytes, bytearray)):
        raise SchemaError(f"{path}: expected bytes (msgpack bin)")
    t = schema.get("type")
    if t is not None and not _TYPES[t](value):
        raise SchemaError(f"{path}: expected {t}")
    if "const" in schema and value != schema["const"]:
        raise SchemaError(f"{path}: expected {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaError(f"{path}: expected one of {', '.join(schema['enum'])}")
    if isinstance(value, str):
        n = js_length(value)
        if n < schema.get("minLength", 0):
            raise SchemaError(f"{path}: shorter than {schema['minLength']}")
        if "maxLength" in schema and n > schema["maxLength"]:
            raise SchemaError(f"{path}: longer than {schema['maxLength']}")
        # JSON Schema patterns are ECMA-262; `$` must not let a trailing newline through.
        if "pattern" in schema and not re.search(schema["pattern"].replace("$", r"\Z"), value):
            raise SchemaError(f"{path}: does not match {schema['pattern']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise SchemaError(f"{path}: below {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise SchemaError(f"{path}: above {schema['maximum']}")
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise SchemaError(f"{path}: more than {schema['maxItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                _check(item, schema["items"], f"{path}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                raise SchemaError(f"{path}.{key}: required")
        for key, item in value.items():
            if key in props:
                _check(item, props[key], f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                raise SchemaError(f"{path}.{key}: unknown field")


def validate(value: Any, schema: dict[str, Any]) -> None:
    """Raises `SchemaError` unless `value` is a message of `schema` (TO_RUNNER or FROM_RUNNER)."""
    _check(value, schema, "")
