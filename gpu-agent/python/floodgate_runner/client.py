"""
The agent's side of the protocol in Python, for tests and the benchmark: starts a runner
process, sends it messages and collects what it says, checking every frame against the
protocol as the agent does (a violation is recorded, never ignored).
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .protocol import ProtocolError, encode_frame, read_messages
from .schema import FROM_RUNNER, PROTOCOL_VERSION

SERVE = Path(__file__).resolve().parent.parent / "serve.py"


@dataclass
class JobRecord:
    """Everything one job said, with arrival times (time.monotonic())."""

    id: str
    sent: float = 0.0
    progress: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    frames: list[dict[str, Any]] = field(default_factory=list)
    previews: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[str, bytes] = field(default_factory=dict)
    end: dict[str, Any] | None = None
    ended: float | None = None

    def sampling(self) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.progress if m["phase"] == "sampling"]


class RunnerProcess:
    """A runner child process on pipes."""

    def __init__(self, args: list[str], env: Mapping[str, str] | None = None, python: str = sys.executable) -> None:
        self.proc = subprocess.Popen(
            [python, "-B", str(SERVE), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env) if env is not None else None,
        )
        self.inbox: queue.Queue[tuple[float, dict[str, Any]] | None] = queue.Queue()
        self.violations: list[str] = []
        self.stderr: list[str] = []
        self.jobs: dict[str, JobRecord] = {}
        self.hello: dict[str, Any] | None = None
        self.loads: list[dict[str, Any]] = []  # runner.loaded and runner.load_failed, in order
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for item in read_messages(self.proc.stdout, FROM_RUNNER):
            if isinstance(item, ProtocolError):
                self.violations.append(f"{item.stage}: {item}")
                continue
            self.inbox.put((time.monotonic(), item))
        self.inbox.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.decode("utf-8", "replace").rstrip("\n"))

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(encode_frame({"v": PROTOCOL_VERSION, **message}))
        self.proc.stdin.flush()

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def next(self, timeout: float) -> tuple[float, dict[str, Any]]:
        """The next message (and when it came), recorded against its job; raises on silence or exit."""
        try:
            item = self.inbox.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no message from the runner in {timeout} s; stderr:\n" + "\n".join(self.stderr[-20:])) from None
        if item is None:
            self.inbox.put(None)
            raise EOFError("the runner's stdout ended; stderr:\n" + "\n".join(self.stderr[-20:]))
        t, msg = item
        self._record(t, msg)
        return item

    def _record(self, t: float, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "runner.hello":
            if self.hello is not None:
                self.violations.append("a second runner.hello")
            self.hello = msg
            return
        if self.hello is None:
            self.violations.append(f"{kind} before runner.hello")
        if kind in ("runner.loaded", "runner.load_failed"):
            self.loads.append(msg)
        job_id = msg.get("job_id")
        if job_id is None:
            return
        rec = self.jobs.get(job_id)
        if rec is None or rec.end is not None:
            self.violations.append(f"{kind} for {job_id}, which is not in flight")
            return
        if kind == "job.progress":
            rec.progress.append((t, msg))
        elif kind == "job.frame":
            if len(msg["data"]) != msg["width"] * msg["height"] * 4:
                self.violations.append(f"{job_id}: frame data is not width × height × 4 bytes")
            if msg["preview"]:
                rec.previews.append(msg)
            else:
                first = rec.frames[0] if rec.frames else msg
                if msg["index"] != len(rec.frames) or (msg["width"], msg["height"]) != (first["width"], first["height"]):
                    self.violations.append(f"{job_id}: result frame {msg['index']} out of order or of another size")
                rec.frames.append(msg)
        elif kind == "job.output":
            rec.outputs[msg["name"]] = msg["data"]
        elif kind in ("job.done", "job.error"):
            rec.end, rec.ended = msg, t

    def wait_hello(self, timeout: float = 60.0) -> dict[str, Any]:
        while self.hello is None:
            self.next(timeout)
        return self.hello

    def run(self, job_id: str, input: dict[str, Any], model: str = "reference", version: str | None = None) -> JobRecord:
        """Sends `job.run` (the version from the hello when not given)."""
        hello = self.wait_hello()
        rec = JobRecord(job_id, sent=time.monotonic())
        self.jobs[job_id] = rec
        self.send({"type": "job.run", "job_id": job_id, "model": model, "version": version or hello["models"][0]["version"], "input": input})
        return rec

    def wait_until(self, predicate, timeout: float = 60.0) -> None:
        """Reads messages until `predicate()` holds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the runner did not get there in time; stderr:\n" + "\n".join(self.stderr[-20:]))
            self.next(left)

    def wait_jobs(self, ids: list[str], timeout: float = 60.0) -> list[JobRecord]:
        self.wait_until(lambda: all(self.jobs[i].end is not None for i in ids), timeout)
        return [self.jobs[i] for i in ids]

    def close(self, timeout: float = 20.0) -> int:
        """Sends `runner.shutdown`, closes stdin and waits for the exit status (killing it late)."""
        try:
            self.send({"type": "runner.shutdown"})
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._release()
        return code

    def kill(self) -> None:
        """Ends the process if it still runs (SIGKILL) and closes the pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._release()

    def _release(self) -> None:
        for t in self._threads:
            t.join(5)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass
