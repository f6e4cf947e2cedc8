"""Feed-forward blocks. All project back to n_embd; `c_proj` is the residual projection."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from minigpt.components.registries import mlp
from minigpt.config import Config


class MLP(nn.Module):
    """n_embd -> 4 n_embd -> activation -> n_embd, then dropout."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def activation(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.activation(self.c_fc(x))))


@mlp.register("gelu")
class GeluMLP(MLP):
    def activation(self, h: torch.Tensor) -> torch.Tensor:
        return F.gelu(h)


@mlp.register("relu")
class ReluMLP(MLP):
    def activation(self, h: torch.Tensor) -> torch.Tensor:
        return F.relu(h)


@mlp.register("relu2")
class ReluSquaredMLP(MLP):
    def activation(self, h: torch.Tensor) -> torch.Tensor:
        return F.relu(h).square()


class GatedMLP(nn.Module):
    """act(x W1) * (x W3) -> W2 (Shazeer 2020, "GLU Variants Improve Transformer"): three
    matrices, so a hidden size near 8d/3 keeps the 4x GELU MLP's 8 d^2 weights."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        hidden = self.hidden_size(cfg.n_embd)
        self.c_fc = nn.Linear(cfg.n_embd, 2 * hidden, bias=cfg.bias)
        self.c_proj = nn.Linear(hidden, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def hidden_size(self, n_embd: int) -> int:
        raise NotImplementedError

    def activation(self, gate: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.c_fc(x).chunk(2, dim=-1)
        return self.dropout(self.c_proj(self.activation(gate) * value))


@mlp.register("swiglu")
class SwiGLU(GatedMLP):
    """SiLU gate; hidden 8d/3 rounded to a multiple of 8."""

    def hidden_size(self, n_embd: int) -> int:
        return swiglu_hidden_size(n_embd)

    def activation(self, gate: torch.Tensor) -> torch.Tensor:
        return F.silu(gate)


@mlp.register("geglu")
class GeGLU(GatedMLP):
    """GELU gate; hidden the integer nearest 8d/3, so its 3 d hidden weights are within d (one
    row) of the GELU MLP's 8 d^2."""

    def hidden_size(self, n_embd: int) -> int:
        return geglu_hidden_size(n_embd)

    def activation(self, gate: torch.Tensor) -> torch.Tensor:
        return F.gelu(gate)


def swiglu_hidden_size(n_embd: int) -> int:
    return max(8, round(8 * n_embd / 3 / 8) * 8)


def geglu_hidden_size(n_embd: int) -> int:
    return round(8 * n_embd / 3)
