"""Normalization layers: `layernorm` (the baseline) and `rmsnorm`."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from minigpt.components.registries import norm
from minigpt.config import Config


@norm.register("layernorm")
class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (torch's cannot drop only the bias)."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(cfg.n_embd))
        self.bias = nn.Parameter(torch.zeros(cfg.n_embd)) if cfg.bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


@norm.register("rmsnorm")
class RMSNorm(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(cfg.n_embd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.weight.shape, self.weight, 1e-5)
