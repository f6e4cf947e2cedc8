"""The residual stream: how the blocks are chained. `plain` feeds each block's output to the
next; the others also carry earlier states forward with learned per-layer weights. A stream
mixes each position with that position only, so cached decoding is unaffected."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from minigpt.components.registries import residual
from minigpt.config import Config

RunLayer = Callable[[int, torch.Tensor], torch.Tensor]  # (layer index, its input) -> its output


@residual.register("plain")
class ResidualStream(nn.Module):
    """Block after block, nothing else (the baseline)."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.n_layer = cfg.n_layer

    def forward(self, x: torch.Tensor, run_layer: RunLayer) -> torch.Tensor:
        for layer in range(self.n_layer):
            x = run_layer(layer, x)
        return x


@residual.register("x0")
class X0Reinjection(ResidualStream):
    """The embeddings x0 re-added to every block's input with a learned weight per layer,
    starting at 0, so training starts from the plain stream (modded-nanogpt's x0 lambdas)."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.x0_weights = nn.Parameter(torch.zeros(cfg.n_layer))

    def forward(self, x: torch.Tensor, run_layer: RunLayer) -> torch.Tensor:
        x0 = x
        for layer in range(self.n_layer):
            x = run_layer(layer, x + self.x0_weights[layer] * x0)
        return x


@residual.register("unet")
class UNetSkips(ResidualStream):
    """U-net skips (modded-nanogpt): the outputs of the first n_layer // 2 blocks are kept and
    each is added, with a learned weight starting at 1, to the input of its mirror image in the
    second half (block i's output to block n_layer - 1 - i's input); a middle block of an odd
    depth has none."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.skip_weights = nn.Parameter(torch.ones(cfg.n_layer // 2))

    def forward(self, x: torch.Tensor, run_layer: RunLayer) -> torch.Tensor:
        half = self.n_layer // 2
        saved: list[torch.Tensor] = []
        for layer in range(self.n_layer):
            mirror = self.n_layer - 1 - layer
            if mirror < half:
                x = x + self.skip_weights[mirror] * saved.pop()
            x = run_layer(layer, x)
            if layer < half:
                saved.append(x)
        return x
