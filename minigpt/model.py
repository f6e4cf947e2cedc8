"""A character-level GPT: token embedding -> N pre-norm blocks -> final norm -> LM head.

The position scheme, attention, norm and MLP are looked up by name in `minigpt.components`,
so a variant adds an implementation without touching this file.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from minigpt import components
from minigpt.components.attentions import LayerCache
from minigpt.components.positions import PositionEncoding
from minigpt.config import Config


class Block(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.norm_1 = components.norm.build(cfg.norm, cfg)
        self.attn = components.attention.build(cfg.attention, cfg)
        self.norm_2 = components.norm.build(cfg.norm, cfg)
        self.mlp = components.mlp.build(cfg.mlp, cfg)

    def forward(
        self, x: torch.Tensor, position: PositionEncoding, start: int, cache: LayerCache | None
    ) -> torch.Tensor:
        x = x + self.attn(self.norm_1(x), position, start, cache)
        return x + self.mlp(self.norm_2(x))


class KVCache:
    """One LayerCache per block; `length` is how many positions have been fed so far."""

    def __init__(self, cfg: Config) -> None:
        self.layers = [LayerCache(cfg.block_size) for _ in range(cfg.n_layer)]

    @property
    def length(self) -> int:
        return self.layers[0].length


class GPT(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.position = components.position.build(cfg.position, cfg)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg.at_layer(i)) for i in range(cfg.n_layer))
        self.norm_f = components.norm.build(cfg.norm, cfg)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2 * n_layer) so depth keeps variance
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx, targets: (B, T) token ids. Returns logits (B, T, vocab) and the mean loss.
        With a cache, idx holds only the new tokens, placed after those already cached."""
        start = cache.length if cache is not None else 0
        if start + idx.size(1) > self.cfg.block_size:
            raise ValueError(f"sequence of {start + idx.size(1)} exceeds block_size {self.cfg.block_size}")
        x = self.drop(self.position.embed(self.wte(idx), start))  # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, self.position, start, cache.layers[i] if cache is not None else None)
        logits = self.lm_head(self.norm_f(x))  # (B, T, vocab)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    def num_params(self) -> int:
        """Trainable parameters, a tied matrix counted once."""
        return sum(p.numel() for p in self.parameters())
