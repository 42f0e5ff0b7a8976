"""The runner protocol against the golden files exported from shared/runner.ts: every vector
decodes to its value, encodes back, validates for its direction; every invalid frame is refused
at its stage; framing survives any split; decoding refuses what is not plain data."""

from __future__ import annotations

import io
import math
import random
import struct
import unittest

import msgpack

from floodgate_runner.protocol import (
    MAX_FRAME,
    FrameReader,
    FrameWriter,
    ProtocolError,
    decode_body,
    encode_body,
    encode_frame,
    read_messages,
)
from floodgate_runner.schema import FROM_RUNNER, TO_RUNNER, SchemaError, js_length, truncate, validate

from .support import bins, golden

VECTORS = golden("runner-vectors.json")
SCHEMA = golden("runner.schema.json")


def strip(x):
    if isinstance(x, dict):
        return {k: strip(v) for k, v in x.items() if k != "description"}
    if isinstance(x, list):
        return [strip(v) for v in x]
    return x


def schema_for(direction: str):
    return TO_RUNNER if direction == "to_runner" else FROM_RUNNER


class GoldenVectors(unittest.TestCase):
    def test_the_schemas_equal_the_golden_json_schema(self):
        self.assertEqual(VECTORS["protocol_version"], 1)
        self.assertEqual(VECTORS["max_frame"], MAX_FRAME)
        self.assertEqual(TO_RUNNER, strip(SCHEMA["$defs"]["ToRunner"]))
        self.assertEqual(FROM_RUNNER, strip(SCHEMA["$defs"]["FromRunner"]))

    def test_every_vector_decodes_to_its_value(self):
        for vec in VECTORS["vectors"]:
            with self.subTest(vec["name"]):
                self.assertEqual(decode_body(bytes.fromhex(vec["msgpack"])), bins(vec["value"]))

    def test_the_encoder_round_trips_every_vector(self):
        for vec in VECTORS["vectors"]:
            with self.subTest(vec["name"]):
                value = bins(vec["value"])
                self.assertEqual(decode_body(encode_body(value)), value)
                frame = encode_frame(value)
                self.assertEqual(struct.unpack(">I", frame[:4])[0], len(frame) - 4)

    def test_every_vector_validates_for_its_direction_only(self):
        for vec in VECTORS["vectors"]:
            with self.subTest(vec["name"]):
                value = bins(vec["value"])
                validate(value, schema_for(vec["direction"]))
                other = "from_runner" if vec["direction"] == "to_runner" else "to_runner"
                with self.assertRaises(SchemaError):
                    validate(value, schema_for(other))

    def test_every_invalid_frame_is_refused_at_its_stage(self):
        for vec in VECTORS["invalid"]:
            with self.subTest(vec["name"]):
                frame = bytes.fromhex(vec["frame"])
                reader = FrameReader()
                stage = None
                try:
                    # The length is judged on its 4 bytes alone, before any of the body.
                    bodies = reader.feed(frame[:4]) + reader.feed(frame[4:])
                    reader.end()
                    for body in bodies:
                        validate(decode_body(body), schema_for(vec["direction"]))
                except ProtocolError as err:
                    stage = err.stage
                    if stage == "length":
                        self.assertEqual(len(frame), 4)
                except SchemaError:
                    stage = "schema"
                self.assertEqual(stage, vec["reject_at"])

    def test_the_stream_reader_reports_and_goes_on_after_a_bad_frame_but_stops_on_a_fatal_one(self):
        good = [bins(v["value"]) for v in VECTORS["vectors"] if v["direction"] == "to_runner"]
        bad = bytes.fromhex(next(v["frame"] for v in VECTORS["invalid"] if v["name"] == "message of the other direction"))
        stream = encode_frame(good[0]) + bad + encode_frame(good[1]) + struct.pack(">I", MAX_FRAME + 1) + encode_frame(good[2])
        items = list(read_messages(io.BytesIO(stream), TO_RUNNER))
        self.assertEqual(items[0], good[0])
        self.assertIsInstance(items[1], ProtocolError)
        self.assertEqual(items[1].stage, "schema")
        self.assertEqual(items[2], good[1])
        self.assertEqual(items[3].stage, "length")
        self.assertTrue(items[3].fatal)
        self.assertEqual(len(items), 4)


class Framing(unittest.TestCase):
    def test_any_split_of_the_byte_stream_gives_the_same_messages(self):
        values = [bins(v["value"]) for v in VECTORS["vectors"]]
        stream = b"".join(encode_frame(v) for v in values)
        rng = random.Random(7)
        for sizes in ([1], [2, 3, 5], [4096], [rng.randint(1, 40) for _ in range(50)]):
            reader, got, i = FrameReader(), [], 0
            while i < len(stream):
                n = sizes[len(got) % len(sizes)] if len(sizes) > 1 else sizes[0]
                got += [decode_body(b) for b in reader.feed(stream[i : i + n])]
                i += n
            reader.end()
            self.assertEqual(got, values)

    def test_a_stream_that_ends_inside_a_header_is_an_error(self):
        reader = FrameReader()
        reader.feed(b"\x00\x00")
        with self.assertRaises(ProtocolError) as ctx:
            reader.end()
        self.assertEqual(ctx.exception.stage, "end_of_stream")

    def test_a_body_over_the_cap_is_never_written(self):
        with self.assertRaises(ValueError):
            encode_frame({"v": 1, "type": "job.output", "data": b"\0" * (MAX_FRAME + 1)})


class HardenedDecode(unittest.TestCase):
    def refused(self, value=None, raw: bytes | None = None):
        body = raw if raw is not None else msgpack.packb(value, use_bin_type=True)
        with self.assertRaises(ProtocolError) as ctx:
            decode_body(body)
        self.assertEqual(ctx.exception.stage, "decode")

    def test_what_is_not_plain_data_is_refused(self):
        self.refused({"x": math.nan})
        self.refused({"x": [math.inf]})
        self.refused(raw=msgpack.packb({1: 2}))
        self.refused(raw=msgpack.packb({"t": msgpack.Timestamp(1, 0)}, datetime=False))
        self.refused(raw=msgpack.packb({"e": msgpack.ExtType(5, b"x")}))
        self.refused({"a": {"b": {"__proto__": 1}}})
        self.refused({"prototype": 1})
        self.refused([1, 2])  # a body is a map
        self.refused(raw=b"\xa2\xff\xfe")  # a str that is not UTF-8
        self.refused(raw=b"")

    def test_nesting_is_limited_to_32_levels(self):
        deep: dict = {}
        cur = deep
        for _ in range(31):
            cur["a"] = {}
            cur = cur["a"]
        decode_body(msgpack.packb(deep))
        cur["a"] = {}
        self.refused(deep)


class Messages(unittest.TestCase):
    def test_integral_floats_are_integers_and_bools_are_not(self):
        msg = {"v": 1, "type": "job.progress", "job_id": "j", "phase": "sampling", "step": 3.0, "total": 2**40 * 1.0}
        validate(msg, FROM_RUNNER)
        for bad in (3.5, True):
            with self.assertRaises(SchemaError):
                validate({**msg, "step": bad}, FROM_RUNNER)

    def test_string_lengths_count_utf16_units_as_the_agent_does(self):
        self.assertEqual(js_length("🦊"), 2)
        msg = {"v": 1, "type": "job.log", "job_id": "j", "level": "info", "message": "🦊" * 2049}
        with self.assertRaises(SchemaError):
            validate(msg, FROM_RUNNER)
        cut = truncate("🦊" * 3000)
        self.assertLessEqual(js_length(cut), 4096)
        validate({**msg, "message": cut}, FROM_RUNNER)

    def test_output_names_match_the_pattern_without_a_trailing_newline(self):
        base = {"v": 1, "type": "job.output", "job_id": "j", "content_type": "text/plain", "data": b""}
        validate({**base, "name": "params.json"}, FROM_RUNNER)
        for bad in ("params.json\n", "Params", ".hidden", ""):
            with self.assertRaises(SchemaError):
                validate({**base, "name": bad}, FROM_RUNNER)

    def test_the_writer_refuses_a_message_the_agent_would_refuse(self):
        out = io.BytesIO()
        w = FrameWriter(out)
        with self.assertRaises(ValueError):
            w.send({"type": "job.progress", "job_id": "j", "phase": "sampling", "step": 1})
        with self.assertRaises(ValueError):
            w.send({"type": "job.frame", "job_id": "j", "index": 0, "width": 1, "height": 1, "format": "rgba8", "data": [0, 0, 0, 0], "preview": False})
        self.assertEqual(out.getvalue(), b"")
        w.send({"type": "job.done", "job_id": "j"})
        self.assertEqual(decode_body(out.getvalue()[4:]), {"v": 1, "type": "job.done", "job_id": "j"})


if __name__ == "__main__":
    unittest.main()
