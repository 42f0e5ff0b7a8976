"""The runner as the agent sees it: a child process on stdio that says `runner.hello` first,
answers loads, batches jobs, cancels, reports an injected OOM and goes on, keeps stdout for
frames only, and exits 0 on `runner.shutdown` or when stdin ends."""

from __future__ import annotations

import os
import struct
import unittest

from floodgate_runner.client import RunnerProcess
from floodgate_runner.reference.model import INJECT_ENV

from .support import VERSION, cache_dir, tiny_dir

SMALL = {"prompt": "a red fox", "frames": 2, "size": 32}


def start(*extra: str, env: dict | None = None) -> RunnerProcess:
    tiny_dir()  # generated once for every test: the runners find it in the cache
    args = ["--model", "reference", "--model-size", "tiny", "--cache-dir", str(cache_dir()), "--device", "cpu", *extra]
    return RunnerProcess(args, env={**os.environ, **(env or {})})


class Process(unittest.TestCase):
    def test_a_runner_process_serves_the_protocol_end_to_end(self):
        r = start("--max-batch", "3", env={INJECT_ENV: "1"})
        try:
            hello = r.wait_hello()
            self.assertEqual(hello["runner"], "torch")
            self.assertEqual(hello["max_batch"], 3)
            self.assertEqual(hello["models"], [{"model": "reference", "version": VERSION}])
            r.send({"type": "runner.load", "model": "reference", "version": VERSION})
            r.send({"type": "runner.load", "model": "reference", "version": "huge-9"})
            got = [r.next(30)[1] for _ in range(2)]
            self.assertEqual([m["type"] for m in got], ["runner.loaded", "runner.load_failed"])

            long = r.run("long", {**SMALL, "steps": 40})
            r.wait_until(lambda: len(long.sampling()) >= 2)
            ok = r.run("ok", {**SMALL, "steps": 3, "seed": 4})
            oom = r.run("oom", {**SMALL, "steps": 3, "inject_oom": "step"})
            r.wait_jobs(["ok", "oom"])
            self.assertIsNone(long.end)  # "ok" joined the running batch and finished first
            r.send({"type": "job.cancel", "job_id": "long"})
            r.wait_jobs(["long"])
            after = r.run("after", {**SMALL, "steps": 2})
            r.wait_jobs(["after"])

            self.assertEqual(ok.end["type"], "job.done")
            self.assertEqual([m["step"] for _, m in ok.sampling()], [1, 2, 3])
            self.assertEqual([(f["width"], f["height"]) for f in ok.frames], [(32, 32)] * 2)
            self.assertIn(b'"seed":4', ok.outputs["params.json"])
            self.assertEqual((oom.end["type"], oom.end["code"]), ("job.error", "oom"))
            self.assertEqual((long.end["type"], long.end["code"]), ("job.error", "cancelled"))
            self.assertLess(len(long.sampling()), 40)
            self.assertEqual(after.end["type"], "job.done")
            self.assertEqual(r.close(), 0)
            self.assertEqual(r.violations, [])
            self.assertTrue(any("out of memory" in line for line in r.stderr))
            self.assertTrue(any(line.startswith("stats ") for line in r.stderr))
        finally:
            r.kill()

    def test_the_runner_exits_0_when_stdin_ends_and_skips_frames_it_cannot_use(self):
        r = start()
        try:
            r.wait_hello()
            body = b"\x81\xa1v\x01"  # {"v": 1}: plain, but not a message
            r.send_raw(struct.pack(">I", len(body)) + body)
            rec = r.run("j", {**SMALL, "steps": 1})
            r.wait_jobs(["j"])
            self.assertEqual(rec.end["type"], "job.done")
            assert r.proc.stdin is not None
            r.proc.stdin.close()
            self.assertEqual(r.proc.wait(20), 0)
            r.kill()  # closes the pipes
            self.assertEqual(r.violations, [])
            self.assertTrue(any("protocol error from the agent (schema)" in line for line in r.stderr))
        finally:
            r.kill()


if __name__ == "__main__":
    unittest.main()
