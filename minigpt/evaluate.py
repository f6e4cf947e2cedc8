"""Evaluation apart from the training loop: the validation estimate on fixed batches, the whole
split that confirms a target crossing, and the rules that end a trial on what they find.

    evaluator = Evaluator(corpus.val, cfg, device, precision, target_loss=1.9)
    evaluation = evaluator.evaluate(model, step, started)   # started: the loop's perf_counter()
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from minigpt.config import Config
from minigpt.data import eval_batches
from minigpt.precision import Precision

# Sequences per evaluation batch, whatever the trial's batch_size, so that every variant is
# scored on the same validation text.
EVAL_BATCH_SIZE = 32

Batches = list[tuple[torch.Tensor, torch.Tensor]]


class Diverged(RuntimeError):
    """The training or validation loss became NaN or infinite."""


@dataclass(frozen=True)
class Evaluation:
    val_loss: float  # the estimate on the fixed validation batches
    confirmed_val_loss: float | None = None  # the whole split, when it checked a target crossing


class Evaluator:
    """Scores a model on the same validation text for every variant: cfg.eval_batches fixed
    batches (0: the whole split) for the estimate, the whole split to confirm a crossing of
    `target_loss`. Keeps the seconds it spent and the time the target was reached."""

    def __init__(
        self,
        val: torch.Tensor,
        cfg: Config,
        device: torch.device,
        precision: Precision,
        target_loss: float | None = None,
    ) -> None:
        self.val, self.block_size, self.device = val, cfg.block_size, device
        self.precision = precision
        self.target_loss = target_loss
        self.whole_split_estimate = cfg.eval_batches == 0
        self.batches = eval_batches(val, cfg.block_size, EVAL_BATCH_SIZE, cfg.eval_batches, device)
        self._whole_split: Batches | None = self.batches if self.whole_split_estimate else None
        self.seconds = 0.0
        self.time_to_target_s: float | None = None  # since `started`, at the first confirmed crossing

    @torch.no_grad()
    def loss(self, model: nn.Module, batches: Batches) -> float:
        """Mean loss of `model` over `batches`, in eval mode under the training autocast. Give it
        the uncompiled model: evaluation's shapes and eval-mode graph would each cost a
        compilation, charged to no one."""
        began = time.perf_counter()
        model.eval()
        total = torch.zeros((), device=self.device)
        count = 0
        for x, y in batches:
            with self.precision.autocast():
                _, loss = model(x, y)
            total += loss * y.numel()
            count += y.numel()
        model.train()
        mean = (total / count).item()
        self.seconds += time.perf_counter() - began
        return mean

    def whole_split(self, model: nn.Module) -> float:
        if self._whole_split is None:
            self._whole_split = eval_batches(self.val, self.block_size, EVAL_BATCH_SIZE, 0, self.device)
        return self.loss(model, self._whole_split)

    def evaluate(self, model: nn.Module, step: int, started: float) -> Evaluation:
        """The estimate and, when it is the first to reach the target, the whole split's loss.
        Only a crossing the whole split confirms sets time_to_target_s, to the time of the
        estimate (the confirmation's own time counts as evaluation, not towards the target)."""
        estimate = self.loss(model, self.batches)
        if not math.isfinite(estimate):
            raise Diverged(f"validation loss became {estimate} at step {step}")
        if self.target_loss is None or self.time_to_target_s is not None or estimate > self.target_loss:
            return Evaluation(estimate)
        reached_at = time.perf_counter() - started
        confirmed = estimate if self.whole_split_estimate else self.whole_split(model)
        if confirmed <= self.target_loss:
            self.time_to_target_s = reached_at
        return Evaluation(estimate, confirmed)


class Patience:
    """Early stopping: the trial ends after `evaluations` evaluations in a row without a new
    best validation loss (0: never)."""

    def __init__(self, evaluations: int) -> None:
        self.evaluations = evaluations
        self.without_gain = 0

    def stop_reason(self, improved: bool) -> str:
        """Note one evaluation; the reason to stop now, or "" to go on."""
        self.without_gain = 0 if improved else self.without_gain + 1
        if self.evaluations and self.without_gain >= self.evaluations:
            return f"early stop: no gain in {self.evaluations} evaluations"
        return ""


def target_stop_reason(stop_at_target: bool, time_to_target_s: float | None) -> str:
    """The reason to stop once the target loss is confirmed, when the budget asks for it."""
    return "target loss reached" if stop_at_target and time_to_target_s is not None else ""
