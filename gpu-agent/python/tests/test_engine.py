"""The runner's engine, in process: continuous batching (a job joins mid-batch, finishes in its
own steps, and gives the same frames as alone), cancel at the next step, decode off the sampling
loop, and failures (an injected CUDA OOM among them) that end only the job that caused them."""

from __future__ import annotations

import os
import threading
import unittest
from unittest import mock

import numpy as np
import torch

from floodgate_runner.engine import ModelEntry, Runner, failure_of
from floodgate_runner.reference.model import INJECT_ENV

from .support import VERSION, make_runner, run_msg, tiny_model, wait_for

SMALL = {"prompt": "a red fox in the snow", "frames": 4, "size": 32}
# Batched and alone differ only by float reassociation in batched matmuls: at most a level or two.
TOLERANCE = 2  # uint8 levels


def alone(input: dict) -> np.ndarray:
    runner, rec = make_runner(max_batch=1)
    runner.handle(run_msg("solo", input))
    runner.drain()
    runner.stop()
    rec.check_job("solo")
    assert rec.end("solo")["type"] == "job.done"
    return rec.frames("solo")


class WrappedModel:
    """The tiny reference model with hooks: a decode that waits for a go, and which thread decodes."""

    def __init__(self) -> None:
        self.inner = tiny_model()
        self.go = threading.Event()
        self.go.set()
        self.decode_threads: set[str] = set()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def decode(self, sample, device):
        self.decode_threads.add(threading.current_thread().name)
        for chunk in self.inner.decode(sample, device):
            self.go.wait(20)
            yield chunk


class ContinuousBatching(unittest.TestCase):
    def test_a_job_joins_a_running_batch_at_the_next_step_and_leaves_when_its_own_steps_are_done(self):
        runner, rec = make_runner(max_batch=4)
        runner.handle(run_msg("long", {**SMALL, "seed": 1, "steps": 12}))
        for _ in range(4):
            runner.tick()
        self.assertEqual(rec.sampling_steps("long"), [1, 2, 3, 4])
        runner.handle(run_msg("late", {**SMALL, "seed": 2, "steps": 5}))
        runner.tick()  # "late" joins here: both advance one step together
        self.assertEqual(rec.sampling_steps("late"), [1])
        self.assertEqual(rec.sampling_steps("long")[-1], 5)
        self.assertEqual(runner.stats.max_batch_seen, 2)
        for _ in range(4):
            runner.tick()
        # "late" took its own 5 steps and left the batch; "long" is still sampling.
        self.assertEqual(rec.sampling_steps("late"), [1, 2, 3, 4, 5])
        self.assertEqual(rec.of("late", "job.progress")[0]["total"], 5)
        self.assertEqual([j.id for j in runner.batch], ["long"])
        wait_for(lambda: rec.end("late") is not None)
        self.assertIsNone(rec.end("long"))
        runner.drain()
        runner.stop()
        self.assertEqual(rec.sampling_steps("long"), list(range(1, 13)))
        for j in ("long", "late"):
            rec.check_job(j)
            self.assertEqual(rec.end(j)["type"], "job.done")
            self.assertEqual(len(rec.frames(j)), 4)
        # The late job's frames equal the same job run alone (fixed seed), within tolerance.
        diff = np.abs(rec.frames("late").astype(int) - alone({**SMALL, "seed": 2, "steps": 5}).astype(int))
        self.assertLessEqual(diff.max(), TOLERANCE)

    def test_a_full_batch_admits_up_to_max_batch_and_mixed_shapes_step_apart(self):
        runner, rec = make_runner(max_batch=3)
        inputs = {f"j{i}": {**SMALL, "seed": i, "steps": 3, "size": 32 if i % 2 else 48} for i in range(5)}
        for jid, input in inputs.items():
            runner.handle(run_msg(jid, input))
        runner.tick()
        self.assertEqual(len(runner.batch), 3)
        self.assertEqual(len(runner.waiting), 2)
        runner.drain()
        runner.stop()
        self.assertEqual(runner.stats.max_batch_seen, 2)  # 3 jobs, two shapes: steps of 2 and 1
        for jid, input in inputs.items():
            rec.check_job(jid)
            self.assertEqual(rec.frames(jid).shape, (4, input["size"], input["size"], 4))
        diff = np.abs(rec.frames("j3").astype(int) - alone(inputs["j3"]).astype(int))
        self.assertLessEqual(diff.max(), TOLERANCE)

    def test_progress_previews_params_and_frames_are_sent_per_job(self):
        runner, rec = make_runner()
        runner.handle(run_msg("p", {**SMALL, "seed": 9, "steps": 11}))
        runner.drain()
        runner.stop()
        rec.check_job("p")
        previews = [m for m in rec.of("p", "job.frame") if m["preview"]]
        self.assertEqual(len(previews), 2)  # after steps 5 and 10
        self.assertTrue(all(m["width"] <= 64 and m["index"] == 2 for m in previews))
        out = rec.of("p", "job.output")
        self.assertEqual(out[0]["name"], "params.json")
        self.assertIn(b'"seed":9', out[0]["data"])
        decoding = [m["step"] for m in rec.of("p", "job.progress") if m["phase"] == "decoding"]
        self.assertEqual(decoding, [1, 2, 3, 4])


class Cancel(unittest.TestCase):
    def test_cancel_ends_a_sampling_job_at_its_next_step_and_the_others_go_on(self):
        runner, rec = make_runner()
        runner.handle(run_msg("a", {**SMALL, "seed": 1, "steps": 20}))
        runner.handle(run_msg("b", {**SMALL, "seed": 2, "steps": 6}))
        for _ in range(3):
            runner.tick()
        runner.handle({"type": "job.cancel", "job_id": "a"})
        runner.handle({"type": "job.cancel", "job_id": "nobody"})  # not in flight: ignored
        runner.tick()
        self.assertEqual(rec.end("a"), {"v": 1, "type": "job.error", "job_id": "a", "code": "cancelled", "message": "cancelled"})
        self.assertEqual(rec.sampling_steps("a"), [1, 2, 3])
        runner.drain()
        runner.stop()
        rec.check_job("a")
        self.assertEqual(rec.end("b")["type"], "job.done")

    def test_cancel_reaches_a_job_still_waiting_and_one_being_decoded(self):
        model = WrappedModel()
        runner, rec = make_runner(max_batch=1, model=model)
        model.go.clear()
        runner.handle(run_msg("decoding", {**SMALL, "steps": 1, "frames": 8}))
        runner.handle(run_msg("waiting", {**SMALL, "steps": 3}))
        runner.tick()  # "decoding" samples its one step and goes to the decode thread
        wait_for(lambda: "decode" in model.decode_threads)
        runner.handle({"type": "job.cancel", "job_id": "waiting"})
        runner.handle({"type": "job.cancel", "job_id": "decoding"})
        runner.tick()
        self.assertEqual(rec.end("waiting")["code"], "cancelled")
        self.assertEqual(rec.sampling_steps("waiting"), [])
        model.go.set()
        wait_for(lambda: rec.end("decoding") is not None)
        runner.stop()
        self.assertEqual(rec.end("decoding")["code"], "cancelled")
        self.assertLess(len([m for m in rec.of("decoding", "job.frame") if not m["preview"]]), 8)
        rec.check_job("decoding")


class Decode(unittest.TestCase):
    def test_decoding_runs_on_its_own_thread_and_never_holds_up_sampling(self):
        model = WrappedModel()
        runner, rec = make_runner(max_batch=2, model=model, decode_device="cpu")
        self.assertEqual(runner.decode_device, torch.device("cpu"))
        model.go.clear()  # the decoder is stuck until told
        runner.handle(run_msg("first", {**SMALL, "steps": 2}))
        runner.tick()
        runner.tick()
        wait_for(lambda: "decode" in model.decode_threads)
        runner.handle(run_msg("second", {**SMALL, "seed": 3, "steps": 6}))
        for _ in range(6):
            runner.tick()
        # The second job sampled all its steps while the first one's decode was held up.
        self.assertEqual(rec.sampling_steps("second"), [1, 2, 3, 4, 5, 6])
        self.assertIsNone(rec.end("first"))
        model.go.set()
        runner.drain()
        runner.stop()
        self.assertEqual(model.decode_threads, {"decode"})
        for j in ("first", "second"):
            rec.check_job(j)
            self.assertEqual(rec.end(j)["type"], "job.done")

    @unittest.skipUnless(torch.cuda.is_available(), "needs CUDA: samples on the GPU, decodes on the CPU")
    def test_sampling_on_cuda_hands_decoding_to_the_cpu(self):  # pragma: no cover - GPU machines
        from floodgate_runner.model import load_model

        from .support import tiny_dir

        model = load_model(tiny_dir(), torch.device("cuda"))[1]
        runner, rec = make_runner(model=model, device="cuda", decode_device="cpu")
        runner.handle(run_msg("g", {**SMALL, "steps": 3}))
        runner.drain()
        runner.stop()
        self.assertEqual(rec.end("g")["type"], "job.done")


class Failures(unittest.TestCase):
    def test_an_injected_cuda_oom_fails_only_its_job_and_the_runner_keeps_serving(self):
        with mock.patch.dict(os.environ, {INJECT_ENV: "1"}):
            runner, rec = make_runner(max_batch=4)
            runner.handle(run_msg("ok1", {**SMALL, "seed": 1, "steps": 4}))
            runner.handle(run_msg("boom", {**SMALL, "seed": 2, "steps": 4, "inject_oom": "step"}))
            runner.handle(run_msg("ok2", {**SMALL, "seed": 3, "steps": 4}))
            runner.handle(run_msg("prep", {**SMALL, "inject_oom": "prepare"}))
            runner.drain()
            self.assertEqual(rec.end("boom")["code"], "oom")
            self.assertEqual(rec.end("prep")["code"], "oom")
            self.assertEqual(rec.sampling_steps("boom"), [])
            for j in ("ok1", "ok2"):
                self.assertEqual(rec.end(j)["type"], "job.done")
                self.assertEqual(rec.sampling_steps(j), [1, 2, 3, 4])
            # The batch that hit the OOM was stepped one by one: the survivors' frames are right.
            diff = np.abs(rec.frames("ok2").astype(int) - alone({**SMALL, "seed": 3, "steps": 4}).astype(int))
            self.assertLessEqual(diff.max(), TOLERANCE)
            # An OOM while decoding, then an ordinary job: still serving.
            runner.handle(run_msg("dec", {**SMALL, "steps": 1, "inject_oom": "decode"}))
            runner.handle(run_msg("after", {**SMALL, "steps": 2}))
            runner.drain()
            runner.stop()
            self.assertEqual(rec.end("dec")["code"], "oom")
            self.assertEqual(rec.end("after")["type"], "job.done")
            self.assertEqual(runner.jobs, {})  # nothing of the failed jobs is held
            for j in ("ok1", "boom", "ok2", "prep", "dec", "after"):
                rec.check_job(j)

    def test_out_of_memory_is_recognised_by_type_and_by_message(self):
        self.assertEqual(failure_of(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))[0], "oom")
        self.assertEqual(failure_of(RuntimeError("CUDA error: out of memory"))[0], "oom")
        self.assertEqual(failure_of(RuntimeError("shape mismatch"))[0], "model_error")

    def test_bad_input_unknown_models_and_model_exceptions_are_errors_of_their_job_only(self):
        model = WrappedModel()
        runner, rec = make_runner(model=model)
        runner.handle(run_msg("bad", {"prompt": "x", "size": 33}))
        runner.handle(run_msg("other", {"prompt": "x"}, version="tiny-999"))
        runner.handle({"type": "runner.load", "model": "reference", "version": VERSION})
        runner.handle({"type": "runner.load", "model": "nope", "version": "1"})
        self.assertEqual(rec.end("bad")["code"], "invalid_input")
        self.assertEqual(rec.end("other")["code"], "invalid_input")
        loads = [m for m in rec.messages if m["type"].startswith("runner.")]
        self.assertEqual([m["type"] for m in loads], ["runner.loaded", "runner.load_failed"])
        self.assertEqual(loads[1]["code"], "invalid_input")

        real_step = model.inner.step

        def step(samples):
            if any(s.total == 7 for s in samples):
                raise ValueError("a bug in the model")
            return real_step(samples)

        model.step = step  # type: ignore[method-assign]
        runner.handle(run_msg("buggy", {**SMALL, "steps": 7}))
        runner.handle(run_msg("fine", {**SMALL, "steps": 3}))
        runner.drain()
        runner.stop()
        self.assertEqual(rec.end("buggy")["code"], "model_error")
        self.assertIn("a bug in the model", rec.end("buggy")["message"])
        self.assertEqual(rec.end("fine")["type"], "job.done")

    def test_a_model_that_cannot_load_fails_the_load_and_its_jobs_and_is_tried_again(self):
        calls = []

        def loader(device):
            calls.append(device)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory while loading")

        msgs: list = []
        runner = Runner(msgs.append, [ModelEntry("m", "1", loader)], log=lambda line: None)
        runner.handle({"type": "runner.load", "model": "m", "version": "1"})
        runner.handle({"type": "job.run", "job_id": "j", "model": "m", "version": "1", "input": {}})
        runner.stop()
        self.assertEqual(msgs[0]["type"], "runner.load_failed")
        self.assertEqual(msgs[0]["code"], "oom")
        self.assertEqual([m["type"] for m in msgs[1:]], ["job.progress", "job.error"])
        self.assertEqual(msgs[2]["code"], "oom")
        self.assertEqual(len(calls), 2)


if __name__ == "__main__":
    unittest.main()
