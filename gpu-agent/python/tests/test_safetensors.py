"""The runner's own safetensors reader and writer: the documented byte layout, a round trip of
every dtype, and refusal of malformed files."""

from __future__ import annotations

import json
import struct
import tempfile
import unittest
from pathlib import Path

import torch

from floodgate_runner import safetensors as st


class Safetensors(unittest.TestCase):
    def test_the_bytes_follow_the_format_header_length_json_header_then_raw_little_endian_data(self):
        t = torch.tensor([[1.0, 2.0]], dtype=torch.float32)
        raw = st.save({"b": t, "a": torch.tensor([7], dtype=torch.int64)}, {"k": "v"})
        (n,) = struct.unpack("<Q", raw[:8])
        self.assertEqual((8 + n) % 8, 0)  # data 8-byte aligned, header padded with spaces
        header = json.loads(raw[8 : 8 + n])
        self.assertEqual(header["__metadata__"], {"k": "v"})
        self.assertEqual(header["a"], {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]})
        self.assertEqual(header["b"], {"dtype": "F32", "shape": [1, 2], "data_offsets": [8, 16]})
        self.assertEqual(raw[8 + n :], struct.pack("<q", 7) + struct.pack("<2f", 1.0, 2.0))

    def test_every_dtype_round_trips_through_a_file(self):
        g = torch.Generator().manual_seed(1)
        tensors = {
            "f64": torch.randn(3, generator=g, dtype=torch.float64),
            "f32": torch.randn(2, 3, generator=g),
            "f16": torch.randn(4, generator=g).half(),
            "bf16": torch.randn(5, 1, generator=g).bfloat16(),
            "i64": torch.tensor([-(2**40), 3]),
            "i32": torch.tensor([1, -2], dtype=torch.int32),
            "i16": torch.tensor([300], dtype=torch.int16),
            "i8": torch.tensor([-5], dtype=torch.int8),
            "u8": torch.tensor([250, 1], dtype=torch.uint8),
            "bool": torch.tensor([True, False]),
            "scalar": torch.tensor(2.5),
            "empty": torch.zeros(0, 4),
        }
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "w.safetensors"
            st.save_file(tensors, path, {"model": "x"})
            back = st.load_file(path)
            self.assertEqual(st.read_metadata(path), {"model": "x"})
        self.assertEqual(set(back), set(tensors))
        for name, t in tensors.items():
            self.assertEqual(back[name].dtype, t.dtype, name)
            self.assertEqual(back[name].shape, t.shape, name)
            self.assertTrue(torch.equal(back[name], t), name)

    def test_malformed_files_are_refused(self):
        good = st.save({"a": torch.ones(4)})
        (n,) = struct.unpack("<Q", good[:8])

        def with_header(h: dict, data: bytes) -> bytes:
            body = json.dumps(h).encode()
            return struct.pack("<Q", len(body)) + body + data

        cases = {
            "short": good[:5],
            "truncated data": good[:-1],
            "trailing data": good + b"\0",
            "header past the end": struct.pack("<Q", 10**6) + good[8:],
            "not json": struct.pack("<Q", 3) + b"{x}",
            "unknown dtype": with_header({"a": {"dtype": "F8", "shape": [1], "data_offsets": [0, 1]}}, b"\0"),
            "size mismatch": with_header({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4),
            "overlap": with_header(
                {
                    "a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
                    "b": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]},
                },
                b"\0" * 3,
            ),
            "extra key": with_header({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1], "x": 1}}, b"\0"),
        }
        for name, data in cases.items():
            with self.subTest(name), self.assertRaises(st.SafetensorsError):
                st.load(data)
        self.assertTrue(torch.equal(st.load(good)["a"], torch.ones(4)))
        self.assertGreater(n, 0)


if __name__ == "__main__":
    unittest.main()
