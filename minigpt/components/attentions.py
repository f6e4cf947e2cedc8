"""Causal self-attention implementations. All share one interface and, for the same weights,
give the same output: `sdpa` (torch's fused kernel), `manual` (explicit masked softmax) and
`looped` (one module per head, concatenated)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from minigpt.components.positions import PositionEncoding
from minigpt.components.registries import attention
from minigpt.config import Config


class LayerCache:
    """Keys and values of the tokens seen so far, for one layer, in a buffer filled in place."""

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self.length = 0
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # k, v: (B, H, T, D) for the new tokens; returns all keys and values so far
        if self.k is None:
            shape = (*k.shape[:2], self.max_len, k.size(-1))
            self.k, self.v = k.new_empty(shape), v.new_empty(shape)
        end = self.length + k.size(2)
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions, asked for {end}")
        self.k[:, :, self.length : end] = k
        self.v[:, :, self.length : end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


def attention_mask(
    position: PositionEncoding, start: int, q_len: int, k_len: int, device: torch.device
) -> torch.Tensor | None:
    """The additive mask for queries at start.. over keys at 0..k_len-1, or None when the
    plain causal mask (queries and keys aligned) or no mask (a single newest query) will do."""
    bias = position.attn_bias(start, q_len, k_len)
    if bias is None and (q_len == k_len or q_len == 1):
        return None
    q_pos = torch.arange(start, start + q_len, device=device)
    future = torch.arange(k_len, device=device)[None, :] > q_pos[:, None]  # (Tq, Tk)
    mask = torch.zeros(q_len, k_len, device=device) if bias is None else bias
    return mask.masked_fill(future, float("-inf"))


class CausalSelfAttention(nn.Module):
    """Batched heads: one projection to q, k, v for all heads, then `attend`."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.dropout = cfg.dropout
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, position: PositionEncoding, start: int = 0, cache: LayerCache | None = None
    ) -> torch.Tensor:
        B, T, C = x.shape
        qkv = self.c_attn(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)  # (3, B, H, T, D)
        q, k = position.rotate(qkv[:2], start)  # queries and keys rotated in one pass
        v = qkv[2]
        if cache is not None:
            k, v = cache.append(k, v)
        mask = attention_mask(position, start, T, k.size(2), x.device)
        y = self.attend(q, k, v, mask, causal=mask is None and T > 1)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(B, T, C)))

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, causal: bool
    ) -> torch.Tensor:
        raise NotImplementedError


@attention.register("sdpa")
class SDPAttention(CausalSelfAttention):
    def attend(self, q, k, v, mask, causal):  # noqa: ANN001, ANN201
        dropout = self.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal)


def scores_mask(mask: torch.Tensor | None, causal: bool, q_len: int, k_len: int, device: torch.device):
    """The explicit additive mask for implementations that do their own softmax."""
    if causal:
        future = torch.ones(q_len, k_len, dtype=torch.bool, device=device).triu(1)
        return torch.zeros(q_len, k_len, device=device).masked_fill(future, float("-inf"))
    return mask


@attention.register("manual")
class ManualAttention(CausalSelfAttention):
    """The seed's explicit softmax(q k^T / sqrt(D) + mask) v."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.attn_dropout = nn.Dropout(cfg.dropout)

    def attend(self, q, k, v, mask, causal):  # noqa: ANN001, ANN201
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))  # (B, H, Tq, Tk)
        mask = scores_mask(mask, causal, q.size(2), k.size(2), q.device)
        if mask is not None:
            scores = scores + mask
        return self.attn_dropout(F.softmax(scores, dim=-1)) @ v


class Head(nn.Module):
    """One attention head with its own key, query and value projections."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.query = nn.Linear(cfg.n_embd, cfg.head_size, bias=cfg.bias)
        self.key = nn.Linear(cfg.n_embd, cfg.head_size, bias=cfg.bias)
        self.value = nn.Linear(cfg.n_embd, cfg.head_size, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)


@attention.register("looped")
class LoopedAttention(nn.Module):
    """The seed's older design: a Python loop over per-head modules, outputs concatenated.
    Kept to measure what batching the heads buys."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.heads = nn.ModuleList(Head(cfg) for _ in range(cfg.n_head))
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, position: PositionEncoding, start: int = 0, cache: LayerCache | None = None
    ) -> torch.Tensor:
        T = x.size(1)
        # stacked only so position schemes and the cache see their usual (B, H, T, D)
        q = position.rotate(torch.stack([head.query(x) for head in self.heads], dim=1), start)
        k = position.rotate(torch.stack([head.key(x) for head in self.heads], dim=1), start)
        v = torch.stack([head.value(x) for head in self.heads], dim=1)
        if cache is not None:
            k, v = cache.append(k, v)
        mask = attention_mask(position, start, T, k.size(2), x.device)
        mask = scores_mask(mask, mask is None and T > 1, T, k.size(2), x.device)
        outputs = []
        for index, head in enumerate(self.heads):
            scores = (q[:, index] @ k[:, index].transpose(-2, -1)) / math.sqrt(q.size(-1))  # (B, Tq, Tk)
            if mask is not None:
                scores = scores + (mask[index] if mask.dim() == 3 else mask)
            outputs.append(head.dropout(F.softmax(scores, dim=-1)) @ v[:, index])
        return self.resid_dropout(self.c_proj(torch.cat(outputs, dim=-1)))
