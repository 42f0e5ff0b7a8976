"""
The reference model: a small text-to-video latent diffusion pipeline written against the
runner's model interface (floodgate_runner.model.Model). The text encoder runs once per job in
`prepare`; `step` runs the DiT on a batch whose jobs may sit at different timesteps (each job
walks its own DDIM schedule); `decode` runs the VAE decoder a few frames at a time, on whatever
device the runner hands it. Weights are random (generate.py), so the frames look like noise,
but every tensor on the way is real work.

Input: `prompt` (1–2000 characters), `seed` (uint32, default derived from the prompt), `steps`
(1–50, default 20), `frames` (1–32, default 8), `size` (32–256, a multiple of 16, default 64).
With FLOODGATE_INJECT_OOM=1 in the runner's environment, `inject_oom` ("prepare" | "step" |
"decode") raises the CUDA out-of-memory error there, so tests on a CPU can drive the OOM path.
"""

from __future__ import annotations

import copy
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from .. import safetensors
from ..model import InvalidInput, Manifest, Model, Sample
from .nets import ReferenceNet, tokenize

INJECT_ENV = "FLOODGATE_INJECT_OOM"
OOM_POINTS = ("prepare", "step", "decode")


def hash32(text: str, salt: int = 0) -> int:
    """FNV-1a over the UTF-8 bytes (the demo model's default seed, same numbers)."""
    h = (0x811C9DC5 ^ salt) & 0xFFFFFFFF
    for b in text.encode("utf-8"):
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def _injected_oom(where: str) -> torch.cuda.OutOfMemoryError:
    return torch.cuda.OutOfMemoryError(f"CUDA out of memory (injected at {where} by the input inject_oom)")


def _int(input: dict[str, Any], key: str, lo: int, hi: int, default: int | None) -> int | None:
    v = input.get(key)
    if v is None:
        if key in input:
            raise InvalidInput(f"input.{key}: expected an integer")
        return default
    # Integral floats count: the agent writes integers beyond 32 bits as float64.
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v):
        raise InvalidInput(f"input.{key}: expected an integer")
    if not lo <= int(v) <= hi:
        raise InvalidInput(f"input.{key}: must be between {lo} and {hi}")
    return int(v)


@dataclass
class Cond:
    text: torch.Tensor  # (L, text_dim)
    mask: torch.Tensor  # (L,) bool
    timesteps: list[int]  # DDIM timesteps, descending; step i denoises from timesteps[i]


class ReferenceModel(Model):
    def __init__(self, cfg: dict[str, Any], device: torch.device, dtype: torch.dtype) -> None:
        self.cfg = cfg
        self.device = device
        self.dtype = dtype
        self.net = ReferenceNet(cfg)
        s = cfg["schedule"]
        betas = torch.linspace(s["beta_start"] ** 0.5, s["beta_end"] ** 0.5, s["train_steps"], dtype=torch.float64) ** 2
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0).to(device=device, dtype=torch.float32)
        self._vaes: dict[str, torch.nn.Module] = {}
        self._vae_lock = threading.Lock()

    @classmethod
    def load(cls, directory: Path, device: torch.device) -> "ReferenceModel":
        manifest = Manifest.read(directory)
        # bfloat16/float16 matmuls are slow or missing on CPUs: compute in float32 there.
        dtype = torch.float32 if device.type == "cpu" else getattr(torch, manifest.config["dtype"])
        model = cls(manifest.config, device, dtype)
        state = safetensors.load_file(Path(directory) / manifest.weights)
        model.net.load_state_dict(state, strict=True)
        model.net.to(device=device, dtype=dtype).eval().requires_grad_(False)
        model._vaes[str(device)] = model.net.vae
        return model

    def parse(self, input: dict[str, Any]) -> dict[str, Any]:
        known = {"prompt", "seed", "steps", "frames", "size"}
        if os.environ.get(INJECT_ENV) == "1":
            known.add("inject_oom")
        unknown = sorted(set(input) - known)
        if unknown:
            raise InvalidInput(f"input.{unknown[0]}: unknown field")
        prompt = input.get("prompt")
        if not isinstance(prompt, str) or not 1 <= len(prompt) <= 2000:
            raise InvalidInput("input.prompt: a string of 1–2000 characters is required")
        lim, dft = self.cfg["limits"], self.cfg["defaults"]
        seed = _int(input, "seed", 0, 2**32 - 1, None)
        params: dict[str, Any] = {
            "prompt": prompt,
            "seed": hash32(prompt) if seed is None else seed,
            "steps": _int(input, "steps", 1, lim["steps"], dft["steps"]),
            "frames": _int(input, "frames", 1, lim["frames"], dft["frames"]),
            "size": _int(input, "size", lim["size_min"], lim["size_max"], dft["size"]),
        }
        if params["size"] % 16:
            raise InvalidInput("input.size: must be a multiple of 16")
        if "inject_oom" in input:
            if input["inject_oom"] not in OOM_POINTS:
                raise InvalidInput(f"input.inject_oom: one of {', '.join(OOM_POINTS)}")
            params["inject_oom"] = input["inject_oom"]
        return params

    def _timesteps(self, steps: int) -> list[int]:
        # DDIM "leading" spacing with offset 1 (Stable Diffusion's scheduler settings).
        t = self.cfg["schedule"]["train_steps"]
        ratio = t // steps
        return [i * ratio + 1 for i in reversed(range(steps))]

    def prepare(self, params: dict[str, Any]) -> Sample:
        if params.get("inject_oom") == "prepare":
            raise _injected_oom("prepare")
        ids, mask = tokenize(params["prompt"], self.cfg["text"]["context"])
        ids, mask = ids[None].to(self.device), mask[None].to(self.device)
        text = self.net.text(ids, mask)[0]
        side = params["size"] // 8
        # The noise comes from a CPU generator of the job's own: one seed gives the same latents
        # on every device and whatever else is in the batch.
        g = torch.Generator().manual_seed(params["seed"])
        shape = (self.cfg["dit"]["channels"], params["frames"], side, side)
        latents = torch.randn(shape, generator=g).to(self.device, self.dtype)
        cond = Cond(text, mask[0], self._timesteps(params["steps"]))
        return Sample(latents, params["steps"], cond, extra={"inject_oom": params.get("inject_oom")})

    def step(self, samples: list[Sample]) -> list[torch.Tensor]:
        if any(s.extra.get("inject_oom") == "step" for s in samples):
            raise _injected_oom("step")
        x = torch.stack([s.latents for s in samples])
        conds: list[Cond] = [s.cond for s in samples]
        ts = [c.timesteps[s.step_index] for s, c in zip(samples, conds)]
        prev = [c.timesteps[s.step_index + 1] if s.step_index + 1 < s.total else -1 for s, c in zip(samples, conds)]
        t = torch.tensor(ts, device=self.device)
        ctx = torch.stack([c.text for c in conds])
        mask = torch.stack([c.mask for c in conds])
        eps = self.net.dit(x, t, ctx, mask).float()
        ac = self.alphas_cumprod
        a_t = ac[t].view(-1, 1, 1, 1, 1)
        # The last step lands on alpha = 1 (DDIM's set_alpha_to_one): clean latents.
        a_prev = torch.stack([ac[p] if p >= 0 else torch.ones((), device=self.device) for p in prev]).view(-1, 1, 1, 1, 1)
        xf = x.float()
        clip = self.cfg["x0_clip"]
        x0 = ((xf - (1 - a_t).sqrt() * eps) / a_t.sqrt()).clamp(-clip, clip)
        out = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps  # eta = 0: deterministic
        return list(out.to(self.dtype).unbind(0))

    def _vae_on(self, device: torch.device) -> torch.nn.Module:
        with self._vae_lock:
            vae = self._vaes.get(str(device))
            if vae is None:
                # A decode device of its own (e.g. the CPU): a copy of the decoder lives there.
                dtype = torch.float32 if device.type == "cpu" else self.dtype
                vae = copy.deepcopy(self.net.vae).to(device=device, dtype=dtype)
                self._vaes[str(device)] = vae
            return vae

    def decode(self, sample: Sample, device: torch.device) -> Iterator[torch.Tensor]:
        vae = self._vae_on(device)
        dtype = next(vae.parameters()).dtype
        inject_oom = sample.extra.get("inject_oom")
        z = (sample.latents.to(device=device, dtype=dtype) / self.cfg["latent_scale"]).transpose(0, 1)  # (F, C, h, w)
        chunk = self.cfg["decode_chunk"]
        for i in range(0, z.shape[0], chunk):
            if inject_oom == "decode":
                raise _injected_oom("decode")
            rgb = vae(z[i : i + chunk])  # (n, 3, H, W) in [-1, 1]
            pixels = ((rgb.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
            yield pixels.permute(0, 2, 3, 1).cpu()

    def preview(self, sample: Sample) -> tuple[int, np.ndarray] | None:
        mid = sample.latents.shape[1] // 2
        lat = sample.latents[:, mid].float().permute(1, 2, 0)  # (h, w, C)
        rgb = torch.tanh(lat @ self.net.preview_rgb.weight.float().T + self.net.preview_rgb.bias.float())
        return mid, ((rgb + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
