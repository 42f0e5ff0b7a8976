"""Shared by the tests: the repository's golden files, a tiny reference model made once per run,
and a runner whose every message goes through the real framing and schema checks."""

from __future__ import annotations

import atexit
import io
import json
import shutil
import tempfile
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from floodgate_runner.engine import ModelEntry, Runner
from floodgate_runner.model import Model, load_model
from floodgate_runner.protocol import FrameReader, FrameWriter, decode_body
from floodgate_runner.reference.generate import MODEL, ensure, version_of
from floodgate_runner.schema import FROM_RUNNER, validate

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = ROOT / "shared" / "golden"
VERSION = version_of("tiny")

_cache = Path(tempfile.mkdtemp(prefix="floodgate-py-"))
atexit.register(shutil.rmtree, _cache, True)


def golden(name: str) -> Any:
    return json.loads((GOLDEN / name).read_text("utf-8"))


def bins(v: Any) -> Any:
    """A golden JSON value as msgpack gives it: {"$bytes": hex} → bytes."""
    if isinstance(v, dict):
        if v.keys() == {"$bytes"}:
            return bytes.fromhex(v["$bytes"])
        return {k: bins(x) for k, x in v.items()}
    if isinstance(v, list):
        return [bins(x) for x in v]
    return v


def cache_dir() -> Path:
    return _cache


@lru_cache(maxsize=None)
def tiny_dir() -> Path:
    return ensure(_cache, "tiny")


@lru_cache(maxsize=None)
def tiny_model() -> Model:
    torch.manual_seed(0)
    return load_model(tiny_dir(), torch.device("cpu"))[1]


class Recorder:
    """A runner's output: every message framed, decoded back and checked as the agent would."""

    def __init__(self) -> None:
        self._buf = io.BytesIO()
        self._writer = FrameWriter(self._buf)
        self._reader = FrameReader()
        self._lock = threading.Lock()
        self.messages: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        with self._lock:
            start = self._buf.tell()
            self._writer.send(message)
            self._buf.seek(start)
            raw = self._buf.read()
            for body in self._reader.feed(raw):
                msg = decode_body(body)
                validate(msg, FROM_RUNNER)
                self.messages.append(msg)

    def of(self, job_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.messages if m.get("job_id") == job_id and (kind is None or m["type"] == kind)]

    def end(self, job_id: str) -> dict[str, Any] | None:
        ends = [m for m in self.of(job_id) if m["type"] in ("job.done", "job.error")]
        return ends[-1] if ends else None

    def frames(self, job_id: str) -> np.ndarray:
        fr = [m for m in self.of(job_id, "job.frame") if not m["preview"]]
        return np.stack([np.frombuffer(m["data"], np.uint8).reshape(m["height"], m["width"], 4) for m in fr])

    def sampling_steps(self, job_id: str) -> list[int]:
        return [m["step"] for m in self.of(job_id, "job.progress") if m["phase"] == "sampling"]

    def check_job(self, job_id: str) -> None:
        """The protocol's rules for one job: exactly one last message, nothing after it, result
        frames in order from 0, all of one size."""
        msgs = self.of(job_id)
        ends = [i for i, m in enumerate(msgs) if m["type"] in ("job.done", "job.error")]
        assert len(ends) == 1 and ends[0] == len(msgs) - 1, f"{job_id}: {[m['type'] for m in msgs]}"
        frames = [m for m in msgs if m["type"] == "job.frame" and not m["preview"]]
        assert [m["index"] for m in frames] == list(range(len(frames)))
        assert len({(m["width"], m["height"]) for m in frames}) <= 1


def make_runner(max_batch: int = 4, model: Model | None = None, **kw: Any) -> tuple[Runner, Recorder]:
    rec = Recorder()
    m = model or tiny_model()
    runner = Runner(rec.send, [ModelEntry(MODEL, VERSION, lambda device: m)], max_batch=max_batch, log=lambda line: None, **kw)
    return runner, rec


def run_msg(job_id: str, input: dict[str, Any], version: str = VERSION) -> dict[str, Any]:
    return {"type": "job.run", "job_id": job_id, "model": MODEL, "version": version, "input": input}


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.002)
