"""The head's loss side: from the LM head's logits to what is sampled and what is trained on.
`linear` (the baseline) is plain cross-entropy; its `softcap` and `z_loss` keys add logit
soft-capping and PaLM's z-loss."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from minigpt.components.registries import head
from minigpt.config import Config


@head.register("linear")
class LMHeadLoss(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.softcap = cfg.softcap
        self.z_loss = cfg.z_loss

    def forward(self, logits: torch.Tensor, targets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """logits: (B, T, vocab) from the LM head; targets: (B, T) or None. Returns the logits
        sampling sees and the mean loss."""
        if self.softcap:  # Gemma 2, modded-nanogpt: smooth, bounded logits, cap * tanh(logits / cap)
            logits = self.softcap * torch.tanh(logits / self.softcap)
        if targets is None:
            return logits, None
        flat = logits.view(-1, logits.size(-1))
        loss = F.cross_entropy(flat, targets.reshape(-1))
        if self.z_loss:  # PaLM: pulls log Z towards 0, so the softmax normalizer stays stable
            loss = loss + self.z_loss * torch.logsumexp(flat.float(), dim=-1).square().mean()
        return logits, loss
