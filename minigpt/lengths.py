"""Length generalization: a trained model scored on the validation split at multiples of the
length it trained at (`run --eval-lengths 1,2,4`), after training and outside its timed steps.

Every variant and seed is scored on the same text, the first SPAN_WINDOWS windows of the longest
length, under two protocols:

  non-overlapping  consecutive windows of the length; every token is scored once, so the first
                   tokens of each window see little context (the "early token curse", which
                   makes long windows look better for any scheme);
  sliding          windows of the length ending every `stride` = block_size / 2 tokens, scoring
                   only each window's last `stride` tokens: every scored token sees at least
                   length - stride tokens before it. The same tokens are scored at every length.

Per-position loss (the non-overlapping windows of the longest length, averaged over windows)
shows where a scheme breaks past its training length. A model whose positions cannot extend
(a learned table) reads "not applicable" at such a length, with the reason: never a number from
clipped or wrapped positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from minigpt.metrics import length_metric_name
from minigpt.model import GPT
from minigpt.precision import Precision

SPAN_WINDOWS = 32  # windows of the longest length scored, the same text for every variant
BATCH_SIZE = 16  # windows per forward pass


@dataclass
class LengthEvaluation:
    """What one trial's model scored at each length (a multiple of block_size)."""

    block_size: int
    stride: int
    scored_tokens: int  # tokens scored by the sliding protocol (the same at every length)
    non_overlapping: dict[int, float] = field(default_factory=dict)
    sliding: dict[int, float] = field(default_factory=dict)
    not_applicable: dict[int, str] = field(default_factory=dict)  # multiple -> why
    per_position: list[float] = field(default_factory=list)  # at the longest applicable length

    def fields(self) -> dict[str, Any]:
        """trial.json's fields: one loss per length and protocol, plus the details."""
        flat: dict[str, Any] = {}
        for multiple in sorted({*self.non_overlapping, *self.sliding, *self.not_applicable}):
            flat[length_metric_name(multiple)] = self.non_overlapping.get(multiple)
            flat[length_metric_name(multiple, sliding=True)] = self.sliding.get(multiple)
        details = {
            "block_size": self.block_size,
            "stride": self.stride,
            "scored_tokens": self.scored_tokens,
            "not_applicable": {str(m): reason for m, reason in self.not_applicable.items()},
            "per_position": self.per_position,
        }
        return {**flat, "length_eval": details}


@torch.no_grad()
def evaluate_lengths(
    model: GPT, val: torch.Tensor, multiples: Sequence[int], precision: Precision, device: torch.device
) -> LengthEvaluation:
    """Score `model` on the validation split at each multiple of its block_size."""
    block_size = model.cfg.block_size
    longest = block_size * max(multiples)
    text = val[: SPAN_WINDOWS * longest + 1].to(device).long()
    if len(text) < longest + 1:
        raise ValueError(f"the validation split has {len(val)} tokens, fewer than one window of {longest} + 1")
    stride = max(1, block_size // 2)
    ends = list(range(longest, len(text), stride))  # every sliding window ends here, at every length
    result = LengthEvaluation(block_size, stride, scored_tokens=len(ends) * stride)
    was_training = model.training
    model.eval()
    try:
        for multiple in multiples:
            length = block_size * multiple
            if model.max_length is not None and length > model.max_length:
                result.not_applicable[multiple] = model.position.limit_reason
                continue
            per_position = non_overlapping_losses(model, text, length, precision)  # (windows, length)
            result.non_overlapping[multiple] = per_position.mean().item()
            result.sliding[multiple] = sliding_loss(model, text, length, stride, ends, precision)
            result.per_position = per_position.mean(dim=0).tolist()
    finally:
        model.train(was_training)
    return result


def token_losses(model: GPT, x: torch.Tensor, y: torch.Tensor, precision: Precision) -> torch.Tensor:
    """Cross-entropy of every target, (B, T), from the logits the model samples from."""
    with precision.autocast():
        logits, _ = model(x)
    return F.cross_entropy(logits.float().transpose(1, 2), y, reduction="none")


def non_overlapping_losses(model: GPT, text: torch.Tensor, length: int, precision: Precision) -> torch.Tensor:
    """Loss at every position of consecutive windows of `length`: (windows, length)."""
    windows = (len(text) - 1) // length
    x = text[: windows * length].view(windows, length)
    y = text[1 : windows * length + 1].view(windows, length)
    return torch.cat([token_losses(model, x[i : i + BATCH_SIZE], y[i : i + BATCH_SIZE], precision)
                      for i in range(0, windows, BATCH_SIZE)])  # fmt: skip


def sliding_loss(
    model: GPT, text: torch.Tensor, length: int, stride: int, ends: list[int], precision: Precision
) -> float:
    """Mean loss of the last `stride` targets of windows of `length` ending at each of `ends`."""
    starts = torch.tensor(ends, device=text.device) - length
    offsets = torch.arange(length, device=text.device)
    total = torch.zeros((), device=text.device)
    for i in range(0, len(ends), BATCH_SIZE):
        index = starts[i : i + BATCH_SIZE, None] + offsets  # (B, length)
        losses = token_losses(model, text[index], text[index + 1], precision)
        total += losses[:, -stride:].sum()
    return (total / (len(ends) * stride)).item()
