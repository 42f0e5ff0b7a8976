"""
Makes a version of the reference model: random weights (seeded, so every machine makes the same
bytes with the same PyTorch) written as safetensors, and its manifest. Nothing is downloaded.

    python3 -m floodgate_runner.reference.generate --size tiny --out DIR
    python3 -m floodgate_runner.reference.generate --size tiny --out models/reference/tiny-1 --weights-only
    python3 -m floodgate_runner.reference.generate --size tiny --describe

The runner calls `ensure` on first use, into the agent's cache directory (`--runner python`).
The repository's version directory (models/reference/<version>/) keeps its manifest.json in
git and gets its weights from `--weights-only`, which checks that the manifest describes these
weights; `--describe` prints what the manifest must say (scripts/models.ts writes it).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from .. import safetensors
from ..model import MANIFEST, Manifest

MODEL = "reference"
# Bump when the networks or the generator change: a new revision is a new version (new weights).
REVISION = 1
ENTRY = "floodgate_runner.reference.model:ReferenceModel"

_COMMON: dict[str, Any] = {
    # DDPM training schedule the DDIM sampler walks (Stable Diffusion's "scaled linear").
    "schedule": {"train_steps": 1000, "beta_start": 0.00085, "beta_end": 0.012},
    "latent_scale": 0.18215,
    "x0_clip": 3.0,  # the predicted clean latents are clamped to ±this (DDIM's clip_sample)
    "decode_chunk": 4,  # frames the VAE decodes at once
    "limits": {"steps": 50, "frames": 32, "size_min": 32, "size_max": 256},
    "defaults": {"steps": 20, "frames": 8, "size": 64},
}

SIZES: dict[str, dict[str, Any]] = {
    # Fast on a CPU: the unit tests and the end-to-end test.
    "tiny": {
        "text": {"context": 32, "dim": 64, "layers": 1, "heads": 4},
        "dit": {"channels": 4, "patch": 2, "hidden": 64, "depth": 2, "heads": 4, "mlp": 2},
        "vae": {"channels": 4, "base": 16},
        "dtype": "float32",
    },
    # A few tens of millions of parameters: CPU benchmarks, small GPUs.
    "small": {
        "text": {"context": 64, "dim": 256, "layers": 2, "heads": 4},
        "dit": {"channels": 4, "patch": 2, "hidden": 384, "depth": 6, "heads": 6, "mlp": 4},
        "vae": {"channels": 4, "base": 32},
        "dtype": "float32",
    },
    # DiT-XL width, ~0.62 B parameters (1.2 GB in bfloat16): enough to load a data-centre GPU at batch 4.
    "large": {
        "text": {"context": 64, "dim": 512, "layers": 4, "heads": 8},
        "dit": {"channels": 4, "patch": 2, "hidden": 1152, "depth": 16, "heads": 16, "mlp": 4},
        "vae": {"channels": 4, "base": 128},
        "dtype": "bfloat16",
    },
}


def version_of(size: str) -> str:
    """The version string of the reference model at a size, e.g. `tiny-1`."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; one of {', '.join(SIZES)}")
    return f"{size}-{REVISION}"


def config_of(size: str) -> dict[str, Any]:
    cfg = copy.deepcopy(_COMMON) | copy.deepcopy(SIZES[size])
    limits = cfg["limits"]
    cfg["dit"]["max_frames"] = limits["frames"]
    cfg["dit"]["max_grid"] = limits["size_max"] // (8 * cfg["dit"]["patch"])
    cfg["size"] = size
    return cfg


def manifest_of(size: str) -> Manifest:
    """The manifest of the version `size`: what the runner reads of it."""
    return Manifest(MODEL, version_of(size), ENTRY, "weights.safetensors", config_of(size))


def write_weights(out: Path, size: str, seed: int = 0) -> Path:
    """Writes the weights of the version `size` into the directory `out` (made if missing), under a
    temporary name renamed into place; returns their path."""
    from .nets import ReferenceNet

    manifest = manifest_of(size)
    cfg = manifest.config
    out.mkdir(parents=True, exist_ok=True)
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        net = ReferenceNet(cfg)
    finally:
        torch.random.set_rng_state(state)
    dtype = getattr(torch, cfg["dtype"])
    tensors = {k: v.to(dtype) for k, v in net.state_dict().items()}
    target = out / manifest.weights
    tmp = out / f".{manifest.weights}.{os.getpid()}.tmp"
    safetensors.save_file(tensors, tmp, {"model": MODEL, "version": manifest.version, "seed": str(seed)})
    os.replace(tmp, target)
    return target


def generate(out: Path, size: str, seed: int = 0) -> Manifest:
    """Writes the version `size` into the directory `out` (made if missing) and returns its manifest."""
    manifest = manifest_of(size)
    write_weights(out, size, seed)
    manifest.write(out)
    return manifest


def weights_for(directory: Path, size: str, seed: int = 0) -> Path:
    """Writes the weights into a version directory whose manifest.json (the repository's, kept as
    it is) must describe the version `size`; an error says what differs."""
    want = manifest_of(size)
    have = Manifest.read(directory)
    for field in ("model", "version", "entry", "weights", "config"):
        if getattr(have, field) != getattr(want, field):
            raise ValueError(f"{directory / MANIFEST}: `{field}` is not the reference model's at size {size} (regenerate it: npx node scripts/models.ts)")
    return write_weights(directory, size, seed)


def ensure(cache_dir: Path, size: str, log=lambda line: None) -> Path:
    """The directory of the reference version `size` under `cache_dir`, generated on first use.

    Generated into a temporary directory and renamed into place, so a crash half way leaves no
    half-written version behind and a second process racing this one finds a whole one.
    """
    target = Path(cache_dir) / "models" / f"{MODEL}-{version_of(size)}"
    if (target / MANIFEST).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"generating the reference model ({size}) into {target}")
    generate(tmp, size)
    try:
        os.rename(tmp, target)
    except OSError:
        if not (target / MANIFEST).exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another process made it first
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write a random-weight version of the reference model.")
    ap.add_argument("--size", choices=list(SIZES), default="tiny")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weights-only", action="store_true", help="write only the weights, beside the manifest.json already in --out")
    ap.add_argument("--describe", action="store_true", help="print the manifest's model, version, entry, weights and config as JSON")
    args = ap.parse_args(argv)
    if args.describe:
        m = manifest_of(args.size)
        print(json.dumps({"model": m.model, "version": m.version, "entry": m.entry, "weights": m.weights, "config": m.config}, indent=2))
        return 0
    if args.out is None:
        ap.error("--out is required")
    if args.weights_only:
        try:
            path = weights_for(args.out, args.size, args.seed)
        except ValueError as err:
            print(err, file=sys.stderr)
            return 1
    else:
        path = args.out / generate(args.out, args.size, args.seed).weights
    params = sum(t.numel() for t in safetensors.load_file(path).values())
    print(f"{MODEL}@{version_of(args.size)}: {params:,} parameters in {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
