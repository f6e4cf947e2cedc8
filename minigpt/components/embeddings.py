"""What the blocks receive from the token embeddings, after the lookup and before the
position scheme: `token` passes them on unchanged (the baseline). A component that mixes in
earlier positions keeps what it needs for cached decoding in `cache.state`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from minigpt.components.registries import embedding
from minigpt.config import Config


@embedding.register("token")
class TokenEmbedding(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor, start: int, cache: Any | None) -> torch.Tensor:
        """x: (B, T, C) token embeddings of positions start.. ; cache: the model's KVCache."""
        return x


@embedding.register("token-shift")
class TokenShift(TokenEmbedding):
    """Token shift, or smear (RWKV, modded-nanogpt): each position adds a learned per-channel
    share, starting at 0, of the previous position's embedding, so a single layer sees
    bigrams. With a cache the last embedding is kept for the next token."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.shift = nn.Parameter(torch.zeros(cfg.n_embd))

    def forward(self, x: torch.Tensor, start: int, cache: Any | None) -> torch.Tensor:
        first = cache.state["token-shift"] if start else torch.zeros_like(x[:, :1])
        previous = torch.cat((first, x[:, :-1]), dim=1)
        if cache is not None:
            cache.state["token-shift"] = x[:, -1:]
        return x + self.shift * previous
