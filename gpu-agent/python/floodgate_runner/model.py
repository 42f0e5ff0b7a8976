"""
What a model author writes: a small class with `load`, `parse`, `prepare`, `step` and `decode`
(and optionally `preview`). The runner (engine.py) owns everything else: batching, progress,
previews, cancel, errors and the decode stage, so a model has no serving code.

A model version lives in a directory:

    manifest.json          {"format": 1, "model": "reference", "version": "tiny-1",
                            "entry": "floodgate_runner.reference:ReferenceModel",
                            "weights": "weights.safetensors", "config": {...}}
    weights.safetensors    the weights (floodgate_runner.safetensors reads them)
    *.py                   optional: an entry module shipped with the version

`entry` is `module:Class`; the directory is put on `sys.path` first, so a version can ship its
own module next to its manifest. The manifest is the model repository's (shared/repository.ts,
docs/models.md): the fields the runner does not use (`runner`, `input_schema`, `resources`,
`max_batch`, `outputs`, …) are left to the agent and the edge.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable, Iterable

import numpy as np
import torch

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# A file of the version: a relative path without '.' or '..' parts (as shared/repository.ts says).
_FILE = re.compile(r"^(?!/)(?!.*(^|/)\.\.?(/|$))[A-Za-z0-9._+\-/]{1,255}$")


class JobFailure(Exception):
    """An expected failure of one job, sent as `job.error` with its code (anything else raised by
    a model is a `model_error`, and CUDA out-of-memory is `oom`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class InvalidInput(JobFailure):
    """The job's input cannot be run: it fails at once, and retrying would not help."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_input", message)


@dataclass
class Sample:
    """One job's state while it samples.

    The model makes it in `prepare` and reads it in `step`; the runner owns `step_index` (steps
    done so far) and replaces `latents` with what `step` returns.
    """

    latents: torch.Tensor
    """The job's latents on the model's device (no batch dimension)."""
    total: int
    """Denoising steps this job takes."""
    cond: Any = None
    """Whatever the model needs at each step (text embeddings, its timestep schedule, …)."""
    key: Hashable | None = None
    """Samples with equal keys may share one `step` call; default: the latents' shape and dtype."""
    step_index: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    """Free for the model (e.g. test-only switches)."""

    def batch_key(self) -> Hashable:
        return self.key if self.key is not None else (tuple(self.latents.shape), self.latents.dtype)


class Model:
    """The step-wise sampling interface the runner drives. Subclass it and implement:

    - `load(directory, device)` (classmethod): read the manifest's config and the weights.
    - `parse(input)`: check a job's input and resolve its defaults; return the resolved
      parameters (sent back as the job's `params.json`). Raise `InvalidInput` for bad input.
    - `prepare(params)`: the job's `Sample` (initial noise, conditioning, schedule).
    - `step(samples)`: advance every sample one denoising step, as one batch; return the new
      latents in the same order. Do not modify the samples: on a failure the runner retries the
      samples one by one to find the job that caused it.
    - `decode(sample, device)`: turn the sample's final latents (already moved to `device`, which
      may not be the sampling device; `cond` is dropped by then) into frames there, yielding uint8 RGBA (or RGB) arrays, one frame `(H, W, C)` or several
      `(N, H, W, C)` at a time; the runner checks for a cancel between yields.
    - `preview(sample)` (optional): `(frame_index, uint8 (h, w, 3|4))` of a cheap look at the
      latents, or None.
    """

    @classmethod
    def load(cls, directory: Path, device: torch.device) -> "Model":
        raise NotImplementedError

    def parse(self, input: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def prepare(self, params: dict[str, Any]) -> Sample:
        raise NotImplementedError

    def step(self, samples: list[Sample]) -> list[torch.Tensor]:
        raise NotImplementedError

    def decode(self, sample: Sample, device: torch.device) -> Iterable[np.ndarray | torch.Tensor]:
        raise NotImplementedError

    def preview(self, sample: Sample) -> tuple[int, np.ndarray] | None:
        return None


@dataclass(frozen=True)
class Manifest:
    """A model version's manifest.json."""

    model: str
    version: str
    entry: str
    weights: str
    config: dict[str, Any]

    @staticmethod
    def read(directory: Path) -> "Manifest":
        path = Path(directory) / MANIFEST
        try:
            raw = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from None
        if not isinstance(raw, dict) or raw.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"{path}: not a format {MANIFEST_FORMAT} model manifest")
        if raw.get("runner", "python") != "python":
            raise ValueError(f"{path}: a version for the {raw.get('runner')!r} runner, not the python one")
        model, version, entry = raw.get("model"), raw.get("version"), raw.get("entry")
        weights, config = raw.get("weights", "weights.safetensors"), raw.get("config", {})
        if not isinstance(model, str) or not _NAME.match(model):
            raise ValueError(f"{path}: `model` must be 1–64 of a-z, 0-9, '.', '_', '-'")
        if not isinstance(version, str) or not 1 <= len(version) <= 128:
            raise ValueError(f"{path}: `version` must be a string of 1–128 characters")
        if not isinstance(entry, str) or not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", entry):
            raise ValueError(f"{path}: `entry` must be 'module:Class'")
        if not isinstance(weights, str) or not _FILE.match(weights):
            raise ValueError(f"{path}: `weights` must be a file of the version (a relative path without '.' or '..' parts)")
        if not isinstance(config, dict):
            raise ValueError(f"{path}: `config` must be an object")
        return Manifest(model, version, entry, weights, config)

    def write(self, directory: Path) -> None:
        body = {
            "format": MANIFEST_FORMAT,
            "model": self.model,
            "version": self.version,
            "entry": self.entry,
            "weights": self.weights,
            "config": self.config,
        }
        (Path(directory) / MANIFEST).write_text(json.dumps(body, indent=2) + "\n", "utf-8")


def entry_class(manifest: Manifest, directory: Path) -> type[Model]:
    """Imports the manifest's entry point (the version's directory first on the path)."""
    module_name, _, class_name = manifest.entry.partition(":")
    d = str(Path(directory).resolve())
    if d not in sys.path:
        sys.path.insert(0, d)
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise ValueError(f"{manifest.entry} is not a floodgate_runner.Model subclass")
    return cls


def load_model(directory: Path, device: torch.device) -> tuple[Manifest, Model]:
    """Reads a version's manifest and loads its model on `device`."""
    manifest = Manifest.read(directory)
    return manifest, entry_class(manifest, directory).load(Path(directory), device)
