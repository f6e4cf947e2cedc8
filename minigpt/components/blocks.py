"""Block layouts: where the norms sit around attention and the MLP, and how their outputs join
the residual stream. Every layout has the same four parts (`norm_1`, `attn`, `norm_2`, `mlp`),
so a new layout is a subclass that overrides `forward` only:

    @block.register("mlp-first")
    class MLPFirst(Block):
        def forward(self, x, position, start, cache):
            x = x + self.mlp(self.norm_2(x))
            return x + self.attn(self.norm_1(x), position, start, cache)
"""

from __future__ import annotations

import torch
from torch import nn

from minigpt.components.attentions import LayerCache
from minigpt.components.positions import PositionEncoding
from minigpt.components.registries import attention, block, mlp, norm
from minigpt.config import Config


@block.register("pre-norm")
class Block(nn.Module):
    """The baseline (GPT-2): each sublayer reads a normalized copy of the stream and adds to it."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.norm_1 = norm.build(cfg.norm, cfg)
        self.attn = attention.build(cfg.attention, cfg)
        self.norm_2 = norm.build(cfg.norm, cfg)
        self.mlp = mlp.build(cfg.mlp, cfg)

    def forward(
        self, x: torch.Tensor, position: PositionEncoding, start: int, cache: LayerCache | None
    ) -> torch.Tensor:
        x = x + self.attn(self.norm_1(x), position, start, cache)
        return x + self.mlp(self.norm_2(x))


@block.register("post-norm")
class PostNormBlock(Block):
    """The original Transformer's (Vaswani et al. 2017): the norm follows each residual sum."""

    def forward(
        self, x: torch.Tensor, position: PositionEncoding, start: int, cache: LayerCache | None
    ) -> torch.Tensor:
        x = self.norm_1(x + self.attn(x, position, start, cache))
        return self.norm_2(x + self.mlp(x))


@block.register("sandwich")
class SandwichBlock(Block):
    """Sandwich norm (CogView, Gemma 2): pre-norm, plus a norm on each sublayer's output before
    it joins the stream, which bounds what any one layer adds."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.norm_attn_out = norm.build(cfg.norm, cfg)
        self.norm_mlp_out = norm.build(cfg.norm, cfg)

    def forward(
        self, x: torch.Tensor, position: PositionEncoding, start: int, cache: LayerCache | None
    ) -> torch.Tensor:
        x = x + self.norm_attn_out(self.attn(self.norm_1(x), position, start, cache))
        return x + self.norm_mlp_out(self.mlp(self.norm_2(x)))


@block.register("parallel")
class ParallelBlock(Block):
    """GPT-J and PaLM: attention and the MLP read the same normalized input side by side and
    both add to the stream, so one norm serves both (norm_2 is dropped)."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        del self.norm_2

    def forward(
        self, x: torch.Tensor, position: PositionEncoding, start: int, cache: LayerCache | None
    ) -> torch.Tensor:
        h = self.norm_1(x)
        return x + self.attn(h, position, start, cache) + self.mlp(h)
