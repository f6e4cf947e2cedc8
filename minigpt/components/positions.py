"""Position schemes. Each may add to the token embeddings (`embed`), rotate queries and keys
(`rotate`), and/or bias attention scores (`attn_bias`); the defaults do nothing, so a scheme
overrides only what it uses. `start` is the absolute position of the first token in `x`
(non-zero only when decoding with a KV cache).

A scheme works at any length unless it sets `max_length` (and says why in `limit_reason`): a
table it computes is grown on demand, to exactly what a model built for the longer block_size
would hold, so a model trained at one length can be evaluated or sampled at another."""

from __future__ import annotations

import math

import torch
from torch import nn

from minigpt.components.registries import position
from minigpt.config import Config


class PositionEncoding(nn.Module):
    max_length: int | None = None  # the longest sequence it can place; None: any
    limit_reason = ""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.block_size = cfg.block_size

    def embed(self, x: torch.Tensor, start: int) -> torch.Tensor:
        return x  # x: (B, T, C)

    def rotate(self, t: torch.Tensor, start: int) -> torch.Tensor:
        return t  # t: (..., T, D), queries and/or keys

    def attn_bias(self, start: int, q_len: int, k_len: int) -> torch.Tensor | None:
        return None  # or (H, q_len, k_len), added to the attention scores


@position.register("none")
class NoPosition(PositionEncoding):
    """NoPE: the causal mask alone tells tokens apart by position."""


@position.register("learned")
class LearnedPosition(PositionEncoding):
    """GPT-2's absolute position table, added to the token embeddings."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.max_length = cfg.block_size
        self.limit_reason = f"learned positions have a table of block_size = {cfg.block_size} rows, none past it"

    def embed(self, x: torch.Tensor, start: int) -> torch.Tensor:
        return x + self.wpe.weight[start : start + x.size(1)]


@position.register("sinusoidal")
class SinusoidalPosition(PositionEncoding):
    """The original Transformer's fixed sin/cos table (no parameters)."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.n_embd = cfg.n_embd
        self.register_buffer("table", self.table_for(cfg.block_size), persistent=False)

    def table_for(self, length: int, device: torch.device | None = None) -> torch.Tensor:
        positions = torch.arange(length, dtype=torch.float32, device=device)[:, None]
        freqs = torch.exp(torch.arange(0, self.n_embd, 2, device=device) * (-math.log(10000.0) / self.n_embd))
        table = torch.zeros(length, self.n_embd, device=device)
        table[:, 0::2] = torch.sin(positions * freqs)
        table[:, 1::2] = torch.cos(positions * freqs[: self.n_embd // 2])
        return table  # (length, C)

    def embed(self, x: torch.Tensor, start: int) -> torch.Tensor:
        end = start + x.size(1)
        if end > self.table.size(0):  # past the training length: the rows a longer model would have
            self.table = self.table_for(end, self.table.device)
        return x + self.table[start:end]


@position.register("rope")
class RotaryPosition(PositionEncoding):
    """RoPE: rotate each (i, i + d/2) pair of the first d = cfg.rope_dims dims of q and k by
    angle pos * rope_base^(-2i/d), so q.k depends only on the offset between the two positions.
    The other dims (partial RoPE, as GPT-NeoX) pass through unrotated."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.half = cfg.rope_dims // 2
        self.rotated = cfg.rope_dims
        self.inv_freq = cfg.rope_base ** (-torch.arange(self.half, dtype=torch.float32) / self.half)
        cos, signed_sin = self.tables_for(cfg.block_size)
        self.register_buffer("cos", cos, persistent=False)  # (T, d)
        self.register_buffer("signed_sin", signed_sin, persistent=False)

    def tables_for(self, length: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        inv_freq = self.inv_freq.to(device)
        angles = torch.outer(torch.arange(length, dtype=torch.float32, device=device), inv_freq)  # (T, d/2)
        # the sign of rotate-half folded into sin: (-x2, x1) * sin == roll(x) * (-sin, sin)
        return angles.cos().repeat(1, 2), torch.cat((-angles.sin(), angles.sin()), dim=1)

    def rotate(self, t: torch.Tensor, start: int) -> torch.Tensor:
        if self.rotated < t.size(-1):
            rotated, passed = t.split((self.rotated, t.size(-1) - self.rotated), dim=-1)
            return torch.cat((self.rotate(rotated, start), passed), dim=-1)
        end = start + t.size(-2)
        if end > self.cos.size(0):  # past the training length: the rows a longer model would have
            self.cos, self.signed_sin = self.tables_for(end, self.cos.device)
        return t * self.cos[start:end] + t.roll(self.half, dims=-1) * self.signed_sin[start:end]


@position.register("rope+learned")
class RotaryAndLearnedPosition(RotaryPosition):
    """The seed's own combination: RoPE on q and k *and* a learned absolute table."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.max_length = cfg.block_size
        self.limit_reason = f"its learned table has block_size = {cfg.block_size} rows, none past it"

    def embed(self, x: torch.Tensor, start: int) -> torch.Tensor:
        return x + self.wpe.weight[start : start + x.size(1)]


@position.register("alibi")
class ALiBi(PositionEncoding):
    """Attention with Linear Biases: score(i, j) -= slope_h * (i - j), slopes geometric in h."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.register_buffer("slopes", alibi_slopes(cfg.n_head), persistent=False)

    def attn_bias(self, start: int, q_len: int, k_len: int) -> torch.Tensor:
        q_pos = torch.arange(start, start + q_len, device=self.slopes.device)
        k_pos = torch.arange(k_len, device=self.slopes.device)
        distance = (k_pos[None, :] - q_pos[:, None]).clamp(max=0).float()  # (Tq, Tk), <= 0
        return self.slopes[:, None, None] * distance  # (H, Tq, Tk)


def alibi_slopes(n_head: int) -> torch.Tensor:
    """The ALiBi paper's slopes: 2^(-8i/n) for a power of two n, interleaved otherwise."""
    closest = 2 ** math.floor(math.log2(n_head))
    slopes = [2 ** (-8 * (i + 1) / closest) for i in range(closest)]
    if closest < n_head:
        extra = [2 ** (-4 * (i + 1) / closest) for i in range(2 * closest)][0::2]
        slopes += extra[: n_head - closest]
    return torch.tensor(slopes)
