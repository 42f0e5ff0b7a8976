"""
Reads and writes the safetensors format (https://github.com/huggingface/safetensors), which
Debian does not package: an 8-byte little-endian header length N, N bytes of a JSON header,
then the tensors' raw little-endian bytes. The header maps each tensor name to
`{"dtype", "shape", "data_offsets": [begin, end]}` (offsets relative to the end of the header)
and may hold `"__metadata__"`, a map of strings. Loading never runs code from the file (unlike
pickle), which is why model versions ship weights in this format.
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
from pathlib import Path
from typing import Mapping

import torch

# Safetensors dtype names and the torch dtypes they map to.
DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
NAMES = {v: k for k, v in DTYPES.items()}
# A header above this is refused before it is read (bytes): the reference implementation's cap.
MAX_HEADER = 100 * 1024 * 1024
ALIGN = 8  # the header is padded with spaces so the data starts 8-byte aligned

if sys.byteorder != "little":  # pragma: no cover - every platform PyTorch ships for
    raise ImportError("floodgate_runner.safetensors needs a little-endian machine")


class SafetensorsError(ValueError):
    """A file that is not valid safetensors."""


def _raw(t: torch.Tensor) -> bytes:
    t = t.detach().to("cpu").contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: same bits, as int16
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def save(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """The safetensors bytes of `tensors` (names sorted, as the reference implementation writes)."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        if t.dtype not in NAMES:
            raise SafetensorsError(f"{name}: dtype {t.dtype} has no safetensors name")
        raw = _raw(t)
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-(8 + len(head)) % ALIGN)
    return struct.pack("<Q", len(head)) + head + b"".join(blobs)


def save_file(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike[str], metadata: Mapping[str, str] | None = None) -> None:
    """Writes `tensors` to `path` (through a temporary file, so a reader never sees half a file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(save(tensors, metadata))
    os.replace(tmp, path)


def parse_header(data: bytes | bytearray | memoryview) -> tuple[dict[str, dict[str, object]], dict[str, str], int]:
    """The tensor entries, the metadata and where the data starts; checks every entry."""
    if len(data) < 8:
        raise SafetensorsError("shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", bytes(data[:8]))
    if n > MAX_HEADER or 8 + n > len(data):
        raise SafetensorsError(f"header length {n} does not fit the file")
    try:
        header = json.loads(bytes(data[8 : 8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SafetensorsError(f"the header is not JSON: {err}") from None
    if not isinstance(header, dict):
        raise SafetensorsError("the header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise SafetensorsError("__metadata__ must map strings to strings")
    size = len(data) - 8 - n
    spans = []
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise SafetensorsError(f"{name}: an entry needs exactly dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in DTYPES:
            raise SafetensorsError(f"{name}: unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise SafetensorsError(f"{name}: bad shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise SafetensorsError(f"{name}: bad data_offsets {offsets!r}")
        begin, end = offsets
        want = math.prod(shape) * torch.empty((), dtype=DTYPES[dtype]).element_size()
        if not 0 <= begin <= end <= size or end - begin != want:
            raise SafetensorsError(f"{name}: data_offsets {offsets} do not hold {dtype}{shape} in {size} bytes")
        spans.append((begin, end))
    # The reference implementation refuses holes and overlaps: the data must be exactly covered.
    covered = 0
    for begin, end in sorted(spans):
        if begin != covered:
            raise SafetensorsError("tensor data overlaps or leaves a hole")
        covered = end
    if covered != size:
        raise SafetensorsError("bytes after the last tensor")
    return header, metadata, 8 + n


def load(data: bytes | bytearray, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of safetensors bytes, each a copy of its own on `device`."""
    header, _, start = parse_header(data)
    view = memoryview(data)
    out: dict[str, torch.Tensor] = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]  # type: ignore[misc]
        dtype = DTYPES[entry["dtype"]]  # type: ignore[index]
        shape = entry["shape"]  # type: ignore[assignment]
        # A copy per tensor: frombuffer wants a writable, aligned buffer of its own.
        chunk = bytearray(view[start + begin : start + end])
        t = torch.frombuffer(chunk, dtype=dtype) if chunk else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(shape).to(device)
    return out


def load_file(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Reads a safetensors file: see `load`."""
    with open(path, "rb") as f:
        return load(f.read(), device)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The `__metadata__` of a safetensors file, reading only its header."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise SafetensorsError("shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER:
            raise SafetensorsError(f"header length {n} is over the cap")
        body = f.read(n)
    # Validate the header alone: entries are checked against an empty data section, so only
    # the metadata is taken from it.
    try:
        header = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SafetensorsError(f"the header is not JSON: {err}") from None
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else {}
    return dict(meta) if isinstance(meta, dict) else {}
