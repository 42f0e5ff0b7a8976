"""
The runner's engine: it owns the jobs of one runner process and drives a model's step-wise
interface (model.py) on behalf of the agent.

- **Continuous batching.** Jobs wait in a queue and join the running batch at a step boundary,
  up to `max_batch`; each advances one denoising step per tick whatever step it is at, and leaves
  the batch when its own steps are done. Samples of different shapes are stepped in separate
  calls (grouped by `Sample.batch_key()`).
- **Decoupled decode.** A finished job's latents go to a decode thread (on `decode_device`, the
  sampling device by default), so the sampling loop never waits for the VAE.
- **Progress, previews, cancel, errors.** Progress after every step and every decoded frame; a
  small preview every few steps; a cancel takes effect at the job's next step boundary (or between
  decoded chunks); a failure ends only the job that caused it: a batch that raises is stepped
  again one job at a time, so the others go on.
- **Out of memory.** torch.cuda.OutOfMemoryError (or a RuntimeError saying "out of memory") ends
  the job with `oom`, drops its tensors, empties the CUDA cache, and the runner keeps serving.

Threads: the caller's thread runs `handle` and `tick` (`serve` loops over an inbox of messages);
the decode thread ends jobs too, so ending a job is guarded by a lock.
"""

from __future__ import annotations

import gc
import json
import queue
import resource
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from .model import JobFailure, Model, Sample
from .schema import truncate

PREVIEW_EVERY = 5  # steps between previews (none at the last step: the result follows)
PREVIEW_MAX = 64  # pixels: previews travel to the client live, keep them small
STOP = object()  # the inbox's end: stdin closed, or could not be framed any more

Send = Callable[[dict[str, Any]], None]


def is_oom(err: BaseException) -> bool:
    """Whether an exception is the accelerator running out of memory."""
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def release_memory() -> None:
    """Frees what a failed job left: unreachable tensors, then the CUDA caching allocator's blocks."""
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def failure_of(err: BaseException) -> tuple[str, str]:
    """The protocol error code and message for an exception raised by a model."""
    if isinstance(err, JobFailure):
        return err.code, str(err)
    if is_oom(err):
        return "oom", f"out of memory: {err}"
    return "model_error", f"{type(err).__name__}: {err}"


@dataclass
class ModelEntry:
    """A model version this runner serves; `loader(device)` makes the model on first use."""

    model: str
    version: str
    loader: Callable[[torch.device], Model]
    instance: Model | None = None


@dataclass
class Job:
    id: str
    entry: ModelEntry
    params: dict[str, Any]
    received: float  # time.monotonic() at job.run
    sample: Sample | None = None
    state: str = "waiting"  # waiting → sampling → decoding → ended
    cancelled: bool = False
    admitted: float | None = None  # time.monotonic() when it joined the batch


@dataclass
class Stats:
    """What the runner measured, logged at shutdown (the benchmark reads it)."""

    steps: int = 0  # step calls
    sample_steps: int = 0  # job-steps (a batch of 4 is 4)
    step_seconds: float = 0.0
    max_batch_seen: int = 0
    joins: int = 0  # jobs that joined the batch
    join_wait_seconds: float = 0.0  # summed over them: from job.run to joining the batch
    join_wait_max: float = 0.0
    decode_seconds: float = 0.0
    jobs_done: int = 0
    jobs_failed: int = 0

    def summary(self, device: torch.device) -> dict[str, Any]:
        out: dict[str, Any] = {
            "steps": self.steps,
            "sample_steps": self.sample_steps,
            "step_ms_mean": round(1000 * self.step_seconds / self.steps, 3) if self.steps else None,
            "max_batch_seen": self.max_batch_seen,
            "join_wait_ms_mean": round(1000 * self.join_wait_seconds / self.joins, 3) if self.joins else None,
            "join_wait_ms_max": round(1000 * self.join_wait_max, 3) if self.joins else None,
            "decode_seconds": round(self.decode_seconds, 3),
            "jobs_done": self.jobs_done,
            "jobs_failed": self.jobs_failed,
            # ru_maxrss is in KiB on Linux.
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        }
        if device.type == "cuda":
            out["peak_vram_bytes"] = torch.cuda.max_memory_allocated(device)
        return out


def _rgba(frame: Any) -> np.ndarray:
    """One frame as a C-contiguous uint8 (H, W, 4) array."""
    a = frame.detach().cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"a frame must be uint8 (H, W, 3|4), not {a.dtype} {a.shape}")
    if a.shape[2] == 3:
        a = np.concatenate([a, np.full(a.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return np.ascontiguousarray(a)


def _fit_preview(a: np.ndarray) -> np.ndarray:
    """Scales a preview by a whole factor so its longer side is at most (and near) PREVIEW_MAX."""
    side = max(a.shape[0], a.shape[1])
    if side > PREVIEW_MAX:
        k = -(-side // PREVIEW_MAX)
        return np.ascontiguousarray(a[::k, ::k])
    k = PREVIEW_MAX // side
    return np.ascontiguousarray(a.repeat(k, axis=0).repeat(k, axis=1)) if k > 1 else a


class Runner:
    """Serves model versions over the runner protocol's messages (already checked against the
    schema); `send` takes each outgoing message (without `v`)."""

    def __init__(
        self,
        send: Send,
        entries: list[ModelEntry],
        *,
        runner: str = "torch",
        version: str = "0.1.0",
        max_batch: int = 4,
        device: torch.device | str = "cpu",
        decode_device: torch.device | str | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self._send = send
        self.entries = entries
        self.runner = runner
        self.version = version
        self.max_batch = max_batch
        self.device = torch.device(device)
        self.decode_device = torch.device(decode_device) if decode_device is not None else self.device
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.jobs: dict[str, Job] = {}
        self.waiting: deque[Job] = deque()
        self.batch: list[Job] = []
        self.stats = Stats()
        self.stopped = False
        self._end_lock = threading.Lock()
        self._decode_q: queue.Queue[Job | None] = queue.Queue()
        self._decoder = threading.Thread(target=self._decode_loop, name="decode", daemon=True)
        self._decoder.start()

    # -- messages ---------------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        if not self.stopped:
            self._send(message)

    def hello(self) -> dict[str, Any]:
        return {
            "type": "runner.hello",
            "runner": self.runner,
            "version": self.version,
            "max_batch": self.max_batch,
            "models": [{"model": e.model, "version": e.version} for e in self.entries],
        }

    def _entry(self, model: str, version: str) -> ModelEntry | None:
        return next((e for e in self.entries if e.model == model and e.version == version), None)

    def handle(self, msg: dict[str, Any]) -> bool:
        """Acts on one message; False once the runner should stop (`runner.shutdown`)."""
        if self.stopped:
            return False
        kind = msg["type"]
        if kind == "job.run":
            self._run(msg["job_id"], msg["model"], msg["version"], msg["input"])
        elif kind == "job.cancel":
            # Takes effect at the job's next step boundary; a job not in flight is ignored.
            job = self.jobs.get(msg["job_id"])
            if job is not None:
                job.cancelled = True
        elif kind == "runner.load":
            self._load(msg["model"], msg["version"])
        elif kind == "runner.shutdown":
            self.stop()
            return False
        else:  # the schema admits nothing else
            raise AssertionError(f"unhandled message type {kind!r}")
        return True

    def _load(self, model: str, version: str) -> None:
        entry = self._entry(model, version)
        if entry is None:
            self.send(
                {
                    "type": "runner.load_failed",
                    "model": model,
                    "version": version,
                    "code": "invalid_input",
                    "message": f"model {model}@{version} is not served by this runner",
                }
            )
            return
        try:
            self.ensure_loaded(entry)
        except Exception as err:  # noqa: BLE001 - reported to the agent
            code, message = failure_of(err)
            self.send({"type": "runner.load_failed", "model": model, "version": version, "code": code, "message": truncate(message)})
            return
        self.send({"type": "runner.loaded", "model": model, "version": version})

    def ensure_loaded(self, entry: ModelEntry, job: Job | None = None) -> Model:
        """The entry's model, loaded now if it is not yet (a job waiting for it sees `loading`)."""
        if entry.instance is not None:
            return entry.instance
        if job is not None:
            self.send({"type": "job.progress", "job_id": job.id, "phase": "loading", "step": 0, "total": 1})
        started = time.monotonic()
        try:
            with torch.no_grad():
                entry.instance = entry.loader(self.device)
        except BaseException as err:
            if is_oom(err):
                release_memory()
            raise
        self.log(f"loaded {entry.model}@{entry.version} on {self.device} in {time.monotonic() - started:.1f} s")
        return entry.instance

    def _run(self, job_id: str, model: str, version: str, input: dict[str, Any]) -> None:
        if job_id in self.jobs:
            self.log(f"job.run for {job_id}, already in flight: ignored")
            return
        entry = self._entry(model, version)
        if entry is None:
            self.send(
                {
                    "type": "job.error",
                    "job_id": job_id,
                    "code": "invalid_input",
                    "message": f"model {model}@{version} is not served by this runner",
                }
            )
            return
        job = Job(job_id, entry, {}, time.monotonic())
        self.jobs[job_id] = job
        ok, params = self._attempt(job, lambda: self.ensure_loaded(entry, job).parse(input))
        if not ok:
            return
        job.params = params
        body = json.dumps(params, separators=(",", ":"), ensure_ascii=False).encode()
        self.send({"type": "job.output", "job_id": job_id, "name": "params.json", "content_type": "application/json", "data": body})
        self.waiting.append(job)

    # -- the sampling loop --------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether a tick has sampling work to do."""
        return bool(self.batch or self.waiting)

    def tick(self) -> bool:
        """One step boundary: drops cancelled jobs, admits waiting ones, advances the batch one
        step. Returns whether sampling work remains."""
        for job in [j for j in [*self.batch, *self.waiting] if j.cancelled]:
            self._remove(job)
            self._end(job, "cancelled", "cancelled")
        while self.waiting and len(self.batch) < self.max_batch:
            self._admit(self.waiting.popleft())
        if not self.batch:
            return self.busy
        groups: dict[Any, list[Job]] = {}
        for job in self.batch:
            assert job.sample is not None
            groups.setdefault((id(job.entry), job.sample.batch_key()), []).append(job)
        started = time.monotonic()
        for jobs in groups.values():
            self._step(jobs)
        self.stats.step_seconds += time.monotonic() - started
        return self.busy

    def _admit(self, job: Job) -> None:
        model = job.entry.instance
        assert model is not None
        def prepare() -> Sample:
            with torch.inference_mode():
                return model.prepare(job.params)

        ok, sample = self._attempt(job, prepare)
        if not ok:
            return
        job.sample = sample
        job.state = "sampling"
        job.admitted = time.monotonic()
        wait = job.admitted - job.received
        self.stats.joins += 1
        self.stats.join_wait_seconds += wait
        self.stats.join_wait_max = max(self.stats.join_wait_max, wait)
        self.batch.append(job)

    def _step(self, jobs: list[Job]) -> None:
        model = jobs[0].entry.instance
        assert model is not None
        failure: tuple[str, str] | None = None
        try:
            with torch.inference_mode():
                out = model.step([j.sample for j in jobs])  # type: ignore[misc]
            if len(out) != len(jobs):
                raise RuntimeError(f"step returned {len(out)} latents for {len(jobs)} samples")
        except Exception as err:  # noqa: BLE001 - isolated below, outside the except block
            failure = failure_of(err)
            if failure[0] == "model_error" and len(jobs) == 1:
                self.log(f"{jobs[0].id}: " + "".join(traceback.format_exception(type(err), err, err.__traceback__)).rstrip())
        if failure is not None:
            # Out of the except block: the exception's frames (and their tensors) are gone now.
            code, message = failure
            if code == "oom":
                release_memory()
            if len(jobs) == 1:
                self._remove(jobs[0])
                self._end(jobs[0], code, message)
                return
            # Which job caused it? Step them one by one: the culprit fails, the others go on.
            self.log(f"a batch of {len(jobs)} failed a step ({truncate(message, 200)}); stepping its jobs one by one")
            for job in jobs:
                self._step([job])
            return
        self.stats.steps += 1
        self.stats.sample_steps += len(jobs)
        self.stats.max_batch_seen = max(self.stats.max_batch_seen, len(jobs))
        for job, latents in zip(jobs, out):
            sample = job.sample
            assert sample is not None
            sample.latents = latents
            sample.step_index += 1
            s, total = sample.step_index, sample.total
            self.send({"type": "job.progress", "job_id": job.id, "phase": "sampling", "step": s, "total": total})
            if s % PREVIEW_EVERY == 0 and s < total:
                self._preview(job, model)
            if s >= total:
                self._to_decode(job)

    def _preview(self, job: Job, model: Model) -> None:
        try:
            with torch.inference_mode():
                got = model.preview(job.sample)  # type: ignore[arg-type]
            if got is None:
                return
            index, image = got
            a = _fit_preview(_rgba(image))
            self.send(
                {
                    "type": "job.frame",
                    "job_id": job.id,
                    "index": int(index),
                    "width": int(a.shape[1]),
                    "height": int(a.shape[0]),
                    "format": "rgba8",
                    "data": a.tobytes(),
                    "preview": True,
                }
            )
        except Exception as err:  # noqa: BLE001 - a preview is optional: never fail the job for it
            self.log(f"{job.id}: preview failed: {err}")

    def _to_decode(self, job: Job) -> None:
        self.batch.remove(job)
        sample = job.sample
        assert sample is not None
        sample.cond = None  # the conditioning stays on the sampling device: let it go
        if sample.latents.device != self.decode_device:
            sample.latents = sample.latents.to(self.decode_device)
        job.state = "decoding"
        self._decode_q.put(job)

    # -- the decode stage (its own thread) ------------------------------------------------------

    def _decode_loop(self) -> None:
        while True:
            job = self._decode_q.get()
            if job is None:
                return
            if self.stopped:
                continue
            started = time.monotonic()
            self._attempt(job, lambda: self._decode(job))  # noqa: B023 - called at once
            job.sample = None
            self.stats.decode_seconds += time.monotonic() - started

    def _decode(self, job: Job) -> None:
        model = job.entry.instance
        sample = job.sample
        assert model is not None and sample is not None
        total = max(1, int(job.params.get("frames", 1)))
        index = 0
        size: tuple[int, int] | None = None
        if job.cancelled:
            self._end(job, "cancelled", "cancelled")
            return
        with torch.inference_mode():
            for chunk in model.decode(sample, self.decode_device):
                if self.stopped:
                    return
                if job.cancelled:
                    self._end(job, "cancelled", "cancelled")
                    return
                arr = chunk.detach().cpu().numpy() if isinstance(chunk, torch.Tensor) else np.asarray(chunk)
                for frame in arr if arr.ndim == 4 else [arr]:
                    a = _rgba(frame)
                    if size is None:
                        size = (a.shape[1], a.shape[0])
                    elif size != (a.shape[1], a.shape[0]):
                        # The agent kills a runner whose result frames change size: fail the job.
                        raise ValueError(f"frame {index} is {a.shape[1]}×{a.shape[0]}, frame 0 was {size[0]}×{size[1]}")
                    self.send(
                        {
                            "type": "job.frame",
                            "job_id": job.id,
                            "index": index,
                            "width": int(a.shape[1]),
                            "height": int(a.shape[0]),
                            "format": "rgba8",
                            "data": a.tobytes(),
                            "preview": False,
                        }
                    )
                    index += 1
                    total = max(total, index)
                    self.send({"type": "job.progress", "job_id": job.id, "phase": "decoding", "step": index, "total": total})
        self._end(job, None, "")

    # -- endings -------------------------------------------------------------------------------

    def _remove(self, job: Job) -> None:
        if job in self.batch:
            self.batch.remove(job)
        if job in self.waiting:
            self.waiting.remove(job)

    def _attempt(self, job: Job, fn: Callable[[], Any]) -> tuple[bool, Any]:
        """Runs `fn` for a job; if it raises, the job fails with the matching code, handled after
        the except block so that the exception's frames (and their tensors) are gone first."""
        failure: tuple[str, str] | None = None
        try:
            return True, fn()
        except Exception as err:  # noqa: BLE001 - the job's error
            failure = failure_of(err)
            if failure[0] == "model_error":
                self.log(f"{job.id}: " + "".join(traceback.format_exception(type(err), err, err.__traceback__)).rstrip())
        self._fail(job, *failure)
        return False, None

    def _fail(self, job: Job, code: str, message: str) -> None:
        if job.state != "decoding":  # the batch and the queue belong to the sampling thread
            self._remove(job)
        job.sample = None
        if code == "oom":
            release_memory()
        self._end(job, code, message)

    def _end(self, job: Job, code: str | None, message: str) -> None:
        """Sends the job's one last message (`job.done`, or `job.error` with `code`)."""
        with self._end_lock:
            if job.state == "ended":
                return
            job.state = "ended"
            job.sample = None
            if self.jobs.get(job.id) is job:
                del self.jobs[job.id]
            if code is None:
                self.stats.jobs_done += 1
                self.send({"type": "job.done", "job_id": job.id})
            else:
                self.stats.jobs_failed += 1
                if code == "oom":
                    # Said on stderr too: the agent's rule for a runner killed soon after an OOM.
                    self.log(f"{job.id}: out of memory; the job is reported oom and the runner goes on")
                self.send({"type": "job.error", "job_id": job.id, "code": code, "message": truncate(message)})

    # -- lifecycle ----------------------------------------------------------------------------

    def serve(self, inbox: "queue.Queue[Any]") -> None:
        """Handles messages from `inbox` and steps between them until `runner.shutdown` or STOP.

        While jobs sample, messages are taken without waiting at each step boundary, so a new
        job joins the batch at the next step and a cancel lands before it.
        """
        while not self.stopped:
            try:
                msg = inbox.get(block=not self.busy)
            except queue.Empty:
                msg = None
            while msg is not None:
                if msg is STOP or not self.handle(msg):
                    self.stop()
                    return
                try:
                    msg = inbox.get_nowait()
                except queue.Empty:
                    msg = None
            self.tick()

    def stop(self) -> None:
        """Stops all work; jobs in flight get no further messages (the protocol's shutdown)."""
        if self.stopped:
            return
        self.stopped = True
        self._decode_q.put(None)

    def join(self, timeout: float = 5.0) -> None:
        """Waits for the decode thread to finish its current chunk after `stop`."""
        self._decoder.join(timeout)

    def drain(self, timeout: float = 30.0) -> None:
        """Ticks until no job is in flight (tests and the benchmark without a message loop)."""
        deadline = time.monotonic() + timeout
        while self.jobs:
            if not self.tick():
                time.sleep(0.002)
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs still in flight: {sorted(self.jobs)}")
