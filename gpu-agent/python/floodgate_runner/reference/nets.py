"""
The reference model's networks in plain PyTorch: a byte-level text encoder, a video DiT
(factorised attention: spatial within each frame, temporal across frames, cross-attention to the
text; adaLN conditioning on the timestep and the pooled text) and a VAE decoder that turns
latents into pixels (×8 per side). Sizes come from the version's config (generate.py: SIZES).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

BOS, EOS, PAD = 256, 257, 258  # byte-level tokens: 0–255 are UTF-8 bytes
VOCAB = 259


def tokenize(prompt: str, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (context,) and the mask of real tokens (context,) for a prompt."""
    body = list(prompt.encode("utf-8"))[: context - 2]
    ids = [BOS, *body, EOS]
    mask = [True] * len(ids) + [False] * (context - len(ids))
    ids += [PAD] * (context - len(ids))
    return torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.bool)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Scaled dot-product attention over (B, heads, N, d); `mask` (B, 1, 1, M) is True where a key counts.

    Uses PyTorch's fused kernel where it exists (2.0+: flash or memory-efficient on CUDA).
    """
    sdpa = getattr(F, "scaled_dot_product_attention", None)
    if sdpa is not None:
        return sdpa(q, k, v, attn_mask=mask)
    w = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
    if mask is not None:
        w = w.masked_fill(~mask, float("-inf"))
    return w.softmax(dim=-1) @ v


class Attention(nn.Module):
    """Multi-head attention; self-attention when `ctx` is None."""

    def __init__(self, dim: int, heads: int, ctx_dim: int | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(ctx_dim or dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        src = x if ctx is None else ctx
        h = self.heads
        q = self.q(x).reshape(b, n, h, d // h).transpose(1, 2)
        k, v = self.kv(src).reshape(b, src.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        y = attention(q, k, v, mask)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


def _mlp(dim: int, ratio: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, ratio * dim), nn.GELU(), nn.Linear(ratio * dim, dim))


class TextEncoder(nn.Module):
    """Byte tokens → contextual embeddings (B, L, dim): pre-norm transformer encoder."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        dim = cfg["dim"]
        self.embed = nn.Embedding(VOCAB, dim)
        self.pos = nn.Embedding(cfg["context"], dim)
        self.blocks = nn.ModuleList()
        for _ in range(cfg["layers"]):
            self.blocks.append(
                nn.ModuleDict(
                    {"n1": nn.LayerNorm(dim), "attn": Attention(dim, cfg["heads"]), "n2": nn.LayerNorm(dim), "mlp": _mlp(dim, 4)}
                )
            )
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
        m = mask[:, None, None, :]
        for blk in self.blocks:
            x = x + blk["attn"](blk["n1"](x), None, m)
            x = x + blk["mlp"](blk["n2"](x))
        return self.norm(x)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding (B, dim) of integer timesteps (B,), as in DDPM/DiT."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class DiTBlock(nn.Module):
    """Spatial attention, temporal attention, text cross-attention and an MLP, adaLN-modulated."""

    def __init__(self, dim: int, heads: int, mlp: int, text_dim: int) -> None:
        super().__init__()
        self.n1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.spatial = Attention(dim, heads)
        self.n2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.temporal = Attention(dim, heads)
        self.n3 = nn.LayerNorm(dim, eps=1e-6)
        self.cross = Attention(dim, heads, ctx_dim=text_dim)
        self.n4 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = _mlp(dim, mlp)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 9 * dim))

    def forward(
        self, x: torch.Tensor, c: torch.Tensor, ctx: torch.Tensor, mask: torch.Tensor, frames: int
    ) -> torch.Tensor:
        b, n, d = x.shape
        s = n // frames  # tokens per frame
        s1, c1, g1, s2, c2, g2, s3, c3, g3 = self.ada(c)[:, None, :].chunk(9, dim=-1)
        h = _modulate(self.n1(x), s1, c1).reshape(b * frames, s, d)
        x = x + g1 * self.spatial(h).reshape(b, n, d)
        h = _modulate(self.n2(x), s2, c2).reshape(b, frames, s, d).transpose(1, 2).reshape(b * s, frames, d)
        x = x + g2 * self.temporal(h).reshape(b, s, frames, d).transpose(1, 2).reshape(b, n, d)
        x = x + self.cross(self.n3(x), ctx, mask)
        return x + g3 * self.mlp(_modulate(self.n4(x), s3, c3))


class DiT(nn.Module):
    """Predicts the noise in latents (B, C, F, h, w) at timesteps t (B,), given text (B, L, text_dim)."""

    def __init__(self, cfg: dict[str, Any], text_dim: int) -> None:
        super().__init__()
        dim, p, c = cfg["hidden"], cfg["patch"], cfg["channels"]
        self.patch, self.channels, self.freq_dim = p, c, 256
        self.proj = nn.Linear(c * p * p, dim)
        self.pos_f = nn.Embedding(cfg["max_frames"], dim)
        self.pos_y = nn.Embedding(cfg["max_grid"], dim)
        self.pos_x = nn.Embedding(cfg["max_grid"], dim)
        self.t_mlp = nn.Sequential(nn.Linear(self.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.text_pool = nn.Linear(text_dim, dim)
        self.blocks = nn.ModuleList(DiTBlock(dim, cfg["heads"], cfg["mlp"], text_dim) for _ in range(cfg["depth"]))
        self.n_out = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.out = nn.Linear(dim, c * p * p)

    def forward(self, x: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        p = self.patch
        gh, gw = h // p, w // p
        tok = x.reshape(b, c, f, gh, p, gw, p).permute(0, 2, 3, 5, 1, 4, 6).reshape(b, f * gh * gw, c * p * p)
        dev = x.device
        pos = (
            self.pos_f(torch.arange(f, device=dev))[:, None, None]
            + self.pos_y(torch.arange(gh, device=dev))[None, :, None]
            + self.pos_x(torch.arange(gw, device=dev))[None, None, :]
        ).reshape(f * gh * gw, -1)
        z = self.proj(tok) + pos
        keep = mask.to(ctx.dtype)[..., None]
        pooled = (ctx * keep).sum(1) / keep.sum(1).clamp(min=1)
        cond = self.t_mlp(timestep_embedding(t, self.freq_dim).to(z.dtype)) + self.text_pool(pooled)
        m = mask[:, None, None, :]
        for blk in self.blocks:
            z = blk(z, cond, ctx, m, f)
        shift, scale = self.ada_out(cond)[:, None, :].chunk(2, dim=-1)
        z = self.out(_modulate(self.n_out(z), shift, scale))
        return z.reshape(b, f, gh, gw, c, p, p).permute(0, 4, 1, 2, 5, 3, 6).reshape(b, c, f, h, w)


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, ch), ch, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.n1, self.c1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.n2, self.c2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x)))
        h = self.c2(F.silu(self.n2(h)))
        return self.skip(x) + h


class Upsample(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class VAEDecoder(nn.Module):
    """Latents (N, C, h, w) → RGB in [-1, 1] (N, 3, 8h, 8w), one frame per row of the batch."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        base = cfg["base"]
        chans = [base * 4, base * 2, base, base]
        self.conv_in = nn.Conv2d(cfg["channels"], chans[0], 3, padding=1)
        self.mid = ResBlock(chans[0], chans[0])
        self.up = nn.ModuleList()
        for i in range(3):
            self.up.append(nn.Sequential(ResBlock(chans[i], chans[i + 1]), Upsample(chans[i + 1])))
        self.n_out = _norm(chans[-1])
        self.conv_out = nn.Conv2d(chans[-1], 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid(self.conv_in(z))
        for up in self.up:
            x = up(x)
        return torch.tanh(self.conv_out(F.silu(self.n_out(x))))


class ReferenceNet(nn.Module):
    """All of the reference model's weights in one module (one safetensors file)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.text = TextEncoder(cfg["text"])
        self.dit = DiT(cfg["dit"], cfg["text"]["dim"])
        self.vae = VAEDecoder(cfg["vae"])
        # Latent → RGB for previews without the VAE (a cheap linear look, as UIs do for SD).
        self.preview_rgb = nn.Linear(cfg["dit"]["channels"], 3)
