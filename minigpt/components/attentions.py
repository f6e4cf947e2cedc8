"""Causal self-attention implementations. All share one interface and, for the same weights,
give the same output: `sdpa` (torch's fused kernel), `manual` (explicit masked softmax) and
`looped` (one module per head, concatenated). Each also says where each head's query, key and
value projection lives (`projection_heads`), so that an optimizer that treats matrices as
wholes (Muon) sees the same matrices whatever the layout: the same weights then also train
alike, and the implementations differ in speed only."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from minigpt.components.positions import PositionEncoding
from minigpt.components.registries import attention
from minigpt.config import Config

# rows start:stop of a (rows, n_embd) weight: one head's projection, where it lives
HeadRows = tuple[nn.Parameter, int, int]
ROLES = ("q", "k", "v")


class LayerCache:
    """Keys and values of the tokens seen so far, for one layer, in a buffer filled in place.
    It holds the key/value heads only (fewer than the query heads under grouped-query
    attention) and every position, also those older than a window: the mask hides those."""

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
    position: PositionEncoding, start: int, q_len: int, k_len: int, device: torch.device, window: int = 0
) -> torch.Tensor | None:
    """The additive mask for queries at start.. over keys at 0..k_len-1, or None when the
    plain causal mask (queries and keys aligned) or no mask (a single newest query) will do.
    With a window, a query at i sees only the keys at i - window + 1 .. i, cached or not."""
    bias = position.attn_bias(start, q_len, k_len)
    windowed = 0 < window < start + q_len  # some query has keys older than its window
    if bias is None and not windowed and (q_len == k_len or q_len == 1):
        return None
    q_pos = torch.arange(start, start + q_len, device=device)
    offset = q_pos[:, None] - torch.arange(k_len, device=device)[None, :]  # (Tq, Tk): how far back each key is
    hidden = (offset < 0) | (offset >= window) if windowed else offset < 0
    mask = torch.zeros(q_len, k_len, device=device) if bias is None else bias
    return mask.masked_fill(hidden, float("-inf"))


class HeadNorm(nn.Module):
    """qk-norm: RMSNorm over each head's dims, one learned gain per dim shared by the heads
    (as Gemma 3 and Qwen 3; modded-nanogpt and nanochat use no gain)."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(cfg.head_size))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(t, self.weight.shape, self.weight, 1e-6)


def shared_kv(t: torch.Tensor, n_head: int) -> torch.Tensor:
    """Keys or values of the key/value heads (B, K, T, D), repeated for the n_head query heads
    that share them: query head h reads key/value head h // (n_head / K)."""
    return t if t.size(1) == n_head else t.repeat_interleave(n_head // t.size(1), dim=1)


class CausalSelfAttention(nn.Module):
    """Batched heads: one projection to q (n_head heads) and k, v (kv_heads heads each),
    then `attend`. q and k are normalized (qk_norm), then rotated, then k and v cached."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.n_kv_head = cfg.kv_heads
        self.head_size = cfg.head_size
        self.window = cfg.window
        self.dropout = cfg.dropout
        self.c_attn = nn.Linear(cfg.n_embd, (cfg.n_head + 2 * cfg.kv_heads) * cfg.head_size, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.q_norm = HeadNorm(cfg) if cfg.qk_norm else None
        self.k_norm = HeadNorm(cfg) if cfg.qk_norm else None

    def projection_heads(self) -> dict[str, list[HeadRows]]:
        """Each role's heads ("q": n_head, "k" and "v": kv_heads each) as rows of c_attn, whose
        rows are the query heads, then the key heads, then the value heads."""
        weight, D = self.c_attn.weight, self.head_size
        firsts = {"q": 0, "k": self.n_head, "v": self.n_head + self.n_kv_head}
        counts = {"q": self.n_head, "k": self.n_kv_head, "v": self.n_kv_head}
        return {
            role: [(weight, (firsts[role] + h) * D, (firsts[role] + h + 1) * D) for h in range(counts[role])]
            for role in ROLES
        }

    def forward(
        self, x: torch.Tensor, position: PositionEncoding, start: int = 0, cache: LayerCache | None = None
    ) -> torch.Tensor:
        B, T, C = x.shape
        H, K = self.n_head, self.n_kv_head
        qkv = self.c_attn(x).view(B, T, H + 2 * K, self.head_size).transpose(1, 2)  # (B, H + 2K, T, D)
        qk, v = qkv.split((H + K, K), dim=1)
        if self.q_norm is not None:
            qk = torch.cat((self.q_norm(qk[:, :H]), self.k_norm(qk[:, H:])), dim=1)
        q, k = position.rotate(qk, start).split((H, K), dim=1)  # queries and keys rotated in one pass
        if cache is not None:
            k, v = cache.append(k, v)
        mask = attention_mask(position, start, T, k.size(2), x.device, self.window)
        y = self.attend(q, k, v, mask, causal=mask is None and T > 1)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(B, T, C)))

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, causal: bool
    ) -> torch.Tensor:
        """q: (B, n_head, Tq, D); k, v: (B, kv_heads, Tk, D); returns (B, n_head, Tq, D)."""
        raise NotImplementedError


@attention.register("sdpa")
class SDPAttention(CausalSelfAttention):
    def attend(self, q, k, v, mask, causal):  # noqa: ANN001, ANN201
        dropout = self.dropout if self.training else 0.0
        if mask is not None:  # the kernels that take a mask do not all take grouped heads
            k, v = shared_kv(k, self.n_head), shared_kv(v, self.n_head)
        grouped = k.size(1) != q.size(1)
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal, enable_gqa=grouped
        )


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
        k, v = shared_kv(k, self.n_head), shared_kv(v, self.n_head)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))  # (B, H, Tq, Tk)
        mask = scores_mask(mask, causal, q.size(2), k.size(2), q.device)
        if mask is not None:
            scores = scores + mask
        return self.attn_dropout(F.softmax(scores, dim=-1)) @ v


class Head(nn.Module):
    """One attention head with its own query projection and, unless it shares another head's
    (grouped-query attention), its own key and value projections."""

    def __init__(self, cfg: Config, own_kv: bool = True) -> None:
        super().__init__()
        self.query = nn.Linear(cfg.n_embd, cfg.head_size, bias=cfg.bias)
        if own_kv:
            self.key = nn.Linear(cfg.n_embd, cfg.head_size, bias=cfg.bias)
            self.value = nn.Linear(cfg.n_embd, cfg.head_size, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)


def whole_rows(linear: nn.Linear) -> HeadRows:
    return linear.weight, 0, linear.weight.size(0)


@attention.register("looped")
class LoopedAttention(nn.Module):
    """The seed's older design: a Python loop over per-head modules, outputs concatenated.
    Kept to measure what batching the heads buys. With grouped-query attention the first
    kv_heads heads hold the key and value projections the others share."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.heads = nn.ModuleList(Head(cfg, own_kv=i < cfg.kv_heads) for i in range(cfg.n_head))
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.q_norm = HeadNorm(cfg) if cfg.qk_norm else None
        self.k_norm = HeadNorm(cfg) if cfg.qk_norm else None
        self.kv_heads = cfg.kv_heads
        self.window = cfg.window

    def projection_heads(self) -> dict[str, list[HeadRows]]:
        """Each role's heads as whole per-head weights, in the order the batched layout keeps them."""
        kv_heads = self.heads[: self.kv_heads]
        return {
            "q": [whole_rows(head.query) for head in self.heads],
            "k": [whole_rows(head.key) for head in kv_heads],
            "v": [whole_rows(head.value) for head in kv_heads],
        }

    def forward(
        self, x: torch.Tensor, position: PositionEncoding, start: int = 0, cache: LayerCache | None = None
    ) -> torch.Tensor:
        T = x.size(1)
        kv_heads = self.heads[: self.kv_heads]
        # stacked only so position schemes and the cache see their usual (B, H, T, D)
        q = torch.stack([head.query(x) for head in self.heads], dim=1)
        k = torch.stack([head.key(x) for head in kv_heads], dim=1)
        v = torch.stack([head.value(x) for head in kv_heads], dim=1)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = position.rotate(q, start), position.rotate(k, start)
        if cache is not None:
            k, v = cache.append(k, v)
        mask = attention_mask(position, start, T, k.size(2), x.device, self.window)
        mask = scores_mask(mask, mask is None and T > 1, T, k.size(2), x.device)
        group = len(self.heads) // self.kv_heads
        outputs = []
        for index, head in enumerate(self.heads):
            key, value = k[:, index // group], v[:, index // group]
            scores = (q[:, index] @ key.transpose(-2, -1)) / math.sqrt(q.size(-1))  # (B, Tq, Tk)
            if mask is not None:
                scores = scores + (mask[index] if mask.dim() == 3 else mask)
            outputs.append(head.dropout(F.softmax(scores, dim=-1)) @ value)
        return self.resid_dropout(self.c_proj(torch.cat(outputs, dim=-1)))
