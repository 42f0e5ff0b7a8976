"""The reference model: generated from a seed (no downloads), loaded from its manifest, inputs
checked and bounded, and a real pipeline (text encoder → DiT/DDIM → VAE) that is deterministic."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from floodgate_runner.model import InvalidInput, Manifest, load_model
from floodgate_runner.reference.generate import MODEL, SIZES, config_of, generate, version_of
from floodgate_runner.reference.model import INJECT_ENV, ReferenceModel

from .support import ROOT, tiny_dir, tiny_model


def run_alone(model: ReferenceModel, params: dict) -> np.ndarray:
    with torch.inference_mode():
        s = model.prepare(model.parse(params))
        while s.step_index < s.total:
            s.latents = model.step([s])[0]
            s.step_index += 1
        return np.concatenate([c.numpy() for c in model.decode(s, torch.device("cpu"))])


class Reference(unittest.TestCase):
    def test_a_version_is_a_manifest_and_safetensors_weights_made_from_a_seed(self):
        m = Manifest.read(tiny_dir())
        self.assertEqual((m.model, m.version), (MODEL, "tiny-1"))
        self.assertEqual(m.entry, "floodgate_runner.reference.model:ReferenceModel")
        digest = hashlib.sha256((tiny_dir() / m.weights).read_bytes()).hexdigest()
        with tempfile.TemporaryDirectory() as d:
            generate(Path(d), "tiny")
            self.assertEqual(hashlib.sha256((Path(d) / m.weights).read_bytes()).hexdigest(), digest)
        self.assertEqual([version_of(s) for s in SIZES], ["tiny-1", "small-1", "large-1"])
        self.assertEqual(config_of("large")["dit"]["hidden"], 1152)

    def test_load_model_imports_the_entry_point_of_the_manifest(self):
        _, model = load_model(tiny_dir(), torch.device("cpu"))
        self.assertIsInstance(model, ReferenceModel)

    def test_inputs_are_checked_and_bounded(self):
        model = tiny_model()
        p = model.parse({"prompt": "a fox"})
        self.assertEqual((p["steps"], p["frames"], p["size"]), (20, 8, 64))
        self.assertEqual(model.parse({"prompt": "a fox", "seed": 2.0**32 - 1})["seed"], 2**32 - 1)
        bad = [
            {},
            {"prompt": ""},
            {"prompt": "x", "size": 40},
            {"prompt": "x", "size": 512},
            {"prompt": "x", "steps": 0},
            {"prompt": "x", "steps": 2.5},
            {"prompt": "x", "seed": True},
            {"prompt": "x", "seed": -1},
            {"prompt": "x", "frames": 33},
            {"prompt": "x", "guidance": 7},
            {"prompt": "x", "inject_oom": "step"},  # only with FLOODGATE_INJECT_OOM=1
        ]
        for input in bad:
            with self.subTest(input), self.assertRaises(InvalidInput):
                model.parse(input)
        with mock.patch.dict(os.environ, {INJECT_ENV: "1"}):
            self.assertEqual(model.parse({"prompt": "x", "inject_oom": "step"})["inject_oom"], "step")

    def test_the_pipeline_makes_frames_of_the_asked_size_deterministically_from_the_seed(self):
        model = tiny_model()
        a = run_alone(model, {"prompt": "a red fox", "seed": 5, "steps": 3, "frames": 3, "size": 32})
        b = run_alone(model, {"prompt": "a red fox", "seed": 5, "steps": 3, "frames": 3, "size": 32})
        c = run_alone(model, {"prompt": "a red fox", "seed": 6, "steps": 3, "frames": 3, "size": 32})
        self.assertEqual(a.shape, (3, 32, 32, 3))
        self.assertTrue(np.array_equal(a, b))
        self.assertFalse(np.array_equal(a, c))
        # Random weights: noise-like, but not blank or saturated.
        self.assertGreater(a.std(), 2.0)
        self.assertLess(np.mean((a == 0) | (a == 255)), 0.5)


if __name__ == "__main__":
    unittest.main()


class RepositoryVersions(unittest.TestCase):
    """The model repository's manifests (shared/repository.ts) as the runner reads them."""

    def test_the_repository_reference_version_is_what_the_generator_describes(self):
        from floodgate_runner.reference.generate import manifest_of

        directory = ROOT / "models" / MODEL / version_of("tiny")
        raw = json.loads((directory / "manifest.json").read_text("utf-8"))
        self.assertEqual(raw["runner"], "python")
        self.assertEqual(Manifest.read(directory), manifest_of("tiny"))

    def test_a_repository_manifest_with_fields_the_runner_does_not_use_and_weights_in_a_folder_loads(self):
        with tempfile.TemporaryDirectory() as d:
            m = generate(Path(d), "tiny")
            (Path(d) / "w").mkdir()
            (Path(d) / m.weights).rename(Path(d) / "w" / "model.safetensors")
            raw = json.loads((Path(d) / "manifest.json").read_text("utf-8"))
            raw.update(
                runner="python",
                weights="w/model.safetensors",
                input_schema={"type": "object"},
                resources={"gpus": 1, "vram_gib": 2},
                max_batch=4,
                expected_runtime_s=10,
                outputs={"required": ["animation.gif"]},
            )
            (Path(d) / "manifest.json").write_text(json.dumps(raw), "utf-8")
            manifest, model = load_model(Path(d), torch.device("cpu"))
            self.assertEqual(manifest.weights, "w/model.safetensors")
            self.assertIsInstance(model, ReferenceModel)

    def test_a_manifest_of_another_runner_or_with_weights_outside_the_version_is_refused(self):
        with tempfile.TemporaryDirectory() as d:
            generate(Path(d), "tiny")
            raw = json.loads((Path(d) / "manifest.json").read_text("utf-8"))
            for bad in ({"runner": "demo"}, {"weights": "../weights.safetensors"}, {"weights": "/etc/passwd"}):
                with self.subTest(bad):
                    (Path(d) / "manifest.json").write_text(json.dumps({**raw, **bad}), "utf-8")
                    with self.assertRaises(ValueError):
                        Manifest.read(Path(d))

    def test_weights_are_written_only_beside_a_manifest_that_describes_them(self):
        from floodgate_runner.reference.generate import weights_for

        with tempfile.TemporaryDirectory() as d:
            m = generate(Path(d), "tiny")
            digest = hashlib.sha256((Path(d) / m.weights).read_bytes()).hexdigest()
            (Path(d) / m.weights).unlink()
            weights_for(Path(d), "tiny")
            self.assertEqual(hashlib.sha256((Path(d) / m.weights).read_bytes()).hexdigest(), digest)
            with self.assertRaisesRegex(ValueError, "`version` is not the reference model's at size small"):
                weights_for(Path(d), "small")
