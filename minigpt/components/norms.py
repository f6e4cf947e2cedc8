"""Normalization layers: `layernorm` (the baseline), `rmsnorm`, and `dyt`, which replaces
normalization by an elementwise squashing."""

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


@norm.register("dyt")
class DynamicTanh(nn.Module):
    """Dynamic Tanh (Zhu et al. 2025, "Transformers without Normalization"): weight *
    tanh(alpha x) + bias, with one learned scalar alpha (initialized to 0.5, the paper's value
    for non-LLM-scale models) and per-channel weight and bias. No statistics over the channels."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.full((1,), 0.5))
        self.weight = nn.Parameter(torch.ones(cfg.n_embd))
        self.bias = nn.Parameter(torch.zeros(cfg.n_embd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias, self.weight, torch.tanh(self.alpha * x))
