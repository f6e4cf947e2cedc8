"""A character-level GPT: token embedding -> N blocks on a residual stream -> final norm ->
LM head -> loss. The block layout, residual stream, embedding mix, position scheme, attention,
norm, MLP, head and initialization are looked up by name in `minigpt.components`, so a variant
adds an implementation without touching this file.
"""

from __future__ import annotations

import torch
from torch import nn

from minigpt import components
from minigpt.components.attentions import LayerCache
from minigpt.components.blocks import Block
from minigpt.config import Config

__all__ = ["GPT", "Block", "KVCache"]


class KVCache:
    """One LayerCache per block; `length` is how many positions have been fed so far; `state`
    holds what components other than attention keep between calls (token shift's last input)."""

    def __init__(self, cfg: Config, max_len: int | None = None) -> None:
        self.layers = [LayerCache(max_len or cfg.block_size) for _ in range(cfg.n_layer)]
        self.state: dict[str, torch.Tensor] = {}

    @property
    def length(self) -> int:
        return self.layers[0].length


class GPT(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.embedding = components.embedding.build(cfg.embedding, cfg)
        self.position = components.position.build(cfg.position, cfg)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(components.block.build(cfg.block, cfg.at_layer(i)) for i in range(cfg.n_layer))
        self.residual = components.residual.build(cfg.residual, cfg)
        self.norm_f = components.norm.build(cfg.norm, cfg)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.head = components.head.build(cfg.head, cfg)
        if cfg.tie_weights:
            self.lm_head.weight = self.wte.weight
        components.init.get(cfg.init)(self, cfg)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx, targets: (B, T) token ids. Returns logits (B, T, vocab) and the mean loss.
        With a cache, idx holds only the new tokens, placed after those already cached."""
        start = cache.length if cache is not None else 0
        if self.max_length is not None and start + idx.size(1) > self.max_length:
            raise ValueError(f"sequence of {start + idx.size(1)} positions: {self.position.limit_reason}")
        x = self.drop(self.position.embed(self.embedding(self.wte(idx), start, cache), start))  # (B, T, C)

        def run_layer(layer: int, h: torch.Tensor) -> torch.Tensor:
            return self.blocks[layer](h, self.position, start, cache.layers[layer] if cache is not None else None)

        x = self.residual(x, run_layer)
        return self.head(self.lm_head(self.norm_f(x)), targets)  # (B, T, vocab), loss

    @property
    def max_length(self) -> int | None:
        """The longest sequence it can score (None: any); past block_size it extrapolates."""
        return self.position.max_length

    def num_params(self) -> int:
        """Trainable parameters, a tied matrix counted once."""
        return sum(p.numel() for p in self.parameters())
