"""
The runner protocol's framing (docs/runner-protocol.md): each frame is a 4-byte big-endian
length, then that many bytes of one msgpack map. Decoding is hardened like the agent's
(shared/codec.ts): plain data only, so a reader refuses ext types, timestamps, non-finite
floats, non-string map keys, prototype keys, nesting past 32 levels and trailing bytes.

Used by the runner (stdin in, stdout out), by the test client and by the benchmark.
"""

from __future__ import annotations

import math
import struct
import threading
from typing import Any, BinaryIO, Callable, Iterator

import msgpack

from .schema import PROTOCOL_VERSION, FROM_RUNNER, SchemaError, validate

MAX_FRAME = 16 * 1024 * 1024  # bytes: MAX_RUNNER_FRAME in shared/runner.ts
MAX_DEPTH = 32
FORBIDDEN_KEYS = frozenset({"__proto__", "constructor", "prototype"})


class ProtocolError(Exception):
    """A frame the protocol refuses. `stage` is the golden vectors' `reject_at`; `fatal` when the
    byte stream cannot be framed any more (a length over the cap, or an end inside a frame)."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage
        self.fatal = stage in ("length", "end_of_stream")


def _no_ext(code: int, data: bytes) -> Any:
    raise ProtocolError("decode", f"msgpack ext type {code} is not plain data")


def _check_plain(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ProtocolError("decode", f"nesting deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, int, str, bytes)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ProtocolError("decode", "NaN and Infinity are not plain data")
        return
    if isinstance(value, list):
        for item in value:
            _check_plain(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ProtocolError("decode", "map keys must be strings")
            if key in FORBIDDEN_KEYS:
                raise ProtocolError("decode", f"the map key {key!r} is refused")
            _check_plain(item, depth + 1)
        return
    # msgpack.Timestamp (ext -1) and anything else a decoder may hand back.
    raise ProtocolError("decode", f"{type(value).__name__} is not plain data")


def decode_body(body: bytes) -> dict[str, Any]:
    """Decodes one frame body into a map of plain data, or raises ProtocolError("decode")."""
    if not body:
        raise ProtocolError("decode", "an empty frame holds no value")
    try:
        value = msgpack.unpackb(body, raw=False, ext_hook=_no_ext, strict_map_key=False, use_list=True)
    except ProtocolError:
        raise
    except msgpack.ExtraData:
        raise ProtocolError("decode", "trailing bytes after the msgpack value") from None
    except Exception as err:  # noqa: BLE001 - any decoder failure is a decode rejection
        raise ProtocolError("decode", f"not one msgpack value: {err}") from None
    _check_plain(value, 1)
    if not isinstance(value, dict):
        raise ProtocolError("decode", "a frame body must be a map")
    return value


def encode_body(message: dict[str, Any]) -> bytes:
    """Encodes a message body: bytes as bin, str as str (never the old raw format)."""
    return msgpack.packb(message, use_bin_type=True)


def encode_frame(message: dict[str, Any]) -> bytes:
    """The length prefix and the body; raises ValueError for a body over MAX_FRAME."""
    body = encode_body(message)
    if len(body) > MAX_FRAME:
        raise ValueError(f"a {message.get('type')} frame of {len(body)} bytes is over the {MAX_FRAME}-byte cap")
    return struct.pack(">I", len(body)) + body


class FrameReader:
    """Incremental framing: feed any split of the byte stream, get whole bodies back.

    The length is checked as soon as its 4 bytes are in, before the body is read or allocated. A
    fatal error raises, after the bodies complete before it have been handed back: a feed that
    completed some returns them and keeps the error in `error`, raised by the next call.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need: int | None = None
        self.error: ProtocolError | None = None

    def feed(self, data: bytes) -> list[bytes]:
        if self.error is not None:
            raise self.error
        self._buf += data
        out: list[bytes] = []
        while True:
            if self._need is None:
                if len(self._buf) < 4:
                    return out
                (n,) = struct.unpack(">I", bytes(self._buf[:4]))
                if n > MAX_FRAME:
                    self.error = ProtocolError("length", f"frame length {n} is over the {MAX_FRAME}-byte cap")
                    if out:
                        return out
                    raise self.error
                del self._buf[:4]
                self._need = n
            if len(self._buf) < self._need:
                return out
            out.append(bytes(self._buf[: self._need]))
            del self._buf[: self._need]
            self._need = None

    def end(self) -> None:
        """The stream ended: raises ProtocolError("end_of_stream") if it ended inside a frame."""
        if self.error is not None:
            raise self.error
        if self._need is not None or self._buf:
            raise ProtocolError("end_of_stream", "the stream ended inside a frame")


def read_messages(stream: BinaryIO, schema: dict[str, Any]) -> Iterator[dict[str, Any] | ProtocolError]:
    """Yields each message of `stream` checked against `schema`, or the ProtocolError of a frame
    that was refused. After a fatal error (or the end of the stream) the iteration ends."""
    reader = FrameReader()
    read = getattr(stream, "read1", stream.read)
    while True:
        chunk = read(1 << 16)
        if not chunk:
            try:
                reader.end()
            except ProtocolError as err:
                yield err
            return
        try:
            bodies = reader.feed(chunk)
        except ProtocolError as err:
            yield err
            return
        for body in bodies:
            try:
                message = decode_body(body)
                validate(message, schema)
            except ProtocolError as err:
                yield err
                continue
            except SchemaError as err:
                yield ProtocolError("schema", str(err))
                continue
            yield message
        if reader.error is not None:
            yield reader.error
            return


class FrameWriter:
    """Writes messages to a stream, one whole frame at a time from any thread.

    Every message is checked against `schema` first: a message the agent would refuse is a bug of
    this runner, raised here (ValueError) rather than getting the runner killed.
    """

    def __init__(self, stream: BinaryIO, schema: dict[str, Any] = FROM_RUNNER) -> None:
        self._stream = stream
        self._schema = schema
        self._lock = threading.Lock()
        self.broken = False
        self.on_broken: Callable[[BaseException], None] | None = None

    def send(self, message: dict[str, Any]) -> None:
        msg = {"v": PROTOCOL_VERSION, **message}
        try:
            validate(msg, self._schema)
        except SchemaError as err:
            raise ValueError(f"runner built an invalid {msg.get('type')}: {err}") from None
        frame = encode_frame(msg)
        with self._lock:
            if self.broken:
                return
            try:
                self._stream.write(frame)
                self._stream.flush()
            except (BrokenPipeError, OSError, ValueError) as err:
                # The agent is gone (or closed our stdout): nothing more can be said.
                self.broken = True
                if self.on_broken is not None:
                    self.on_broken(err)
