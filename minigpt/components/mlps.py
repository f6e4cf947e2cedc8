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


@mlp.register("swiglu")
class SwiGLU(nn.Module):
    """silu(x W1) * (x W3) -> W2, with the hidden size chosen so the parameter count matches
    the 4x GELU MLP: 3 * d * hidden = 8 * d^2 gives hidden = 8d/3, rounded to a multiple of 8."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        hidden = swiglu_hidden_size(cfg.n_embd)
        self.c_fc = nn.Linear(cfg.n_embd, 2 * hidden, bias=cfg.bias)
        self.c_proj = nn.Linear(hidden, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.c_fc(x).chunk(2, dim=-1)
        return self.dropout(self.c_proj(F.silu(gate) * value))


def swiglu_hidden_size(n_embd: int) -> int:
    return max(8, round(8 * n_embd / 3 / 8) * 8)
