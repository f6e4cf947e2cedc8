"""The training loop, which knows no sweep: take training steps (minigpt.step) within a budget on the lr schedule, score them
(minigpt.evaluate), stop on the stop rules, keep the best weights.

`Trainer.run()` yields metric points as it goes; `Trainer.result` holds the summary after.
The trainer knows configurations, never variant names.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from minigpt import components
from minigpt.config import Config
from minigpt.data import BatchSampler, Corpus
from minigpt.errors import UserError
from minigpt.evaluate import Diverged, Evaluation, Evaluator, Patience, target_stop_reason
from minigpt.measure import StepTimer, percentile, reset_peak_memory
from minigpt.model import GPT
from minigpt.step import TrainStep

TIMING_WARMUP_STEPS = 5  # first steps pay for allocation, thread start-up and CUDA graph capture
LOG_INTERVAL = 50  # steps between train-loss points: one host sync each, never one per step


@dataclass(frozen=True)
class Budget:
    max_steps: int | None = None
    max_tokens: int | None = None
    max_seconds: float | None = None
    stop_at_target: bool = False  # end the trial at the first evaluation that reaches the target loss

    def __post_init__(self) -> None:
        if self.max_steps is None and self.max_tokens is None and self.max_seconds is None:
            raise UserError("a budget needs max_steps, max_tokens or max_seconds")
        for key in ("max_steps", "max_tokens", "max_seconds"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise UserError(f"--{key.replace('_', '-')} must be positive, got {value}")

    def total_steps(self, tokens_per_step: int) -> int | None:
        limits = [self.max_steps] if self.max_steps else []
        if self.max_tokens:
            limits.append(math.ceil(self.max_tokens / tokens_per_step))
        return min(limits) if limits else None


@dataclass
class TrialResult:
    status: str = "running"
    steps: int = 0
    tokens: int = 0
    best_val_loss: float | None = None
    best_step: int | None = None
    final_val_loss: float | None = None
    wall_seconds: float = 0.0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    checkpoint_seconds: float = 0.0
    compile_seconds: float | None = None  # the compile warm-up, outside every other time; None: not compiled
    time_to_target_s: float | None = None  # since training start, at the first crossing the whole split confirms
    stop_reason: str = ""
    step_seconds: list[float] = field(default_factory=list, repr=False)

    def speed(self, tokens_per_step: int) -> dict[str, float | None]:
        timed = self.step_seconds[TIMING_WARMUP_STEPS:] or self.step_seconds
        p50, p90 = percentile(timed, 50), percentile(timed, 90)
        return {
            "step_ms_p50": p50 * 1000 if p50 else None,
            "step_ms_p90": p90 * 1000 if p90 else None,
            "tokens_per_sec": tokens_per_step / p50 if p50 else None,
        }


def lr_at(cfg: Config, step: int, progress: float) -> float:
    """The learning rate of cfg.schedule (minigpt.components.schedules) at `step`, `progress`
    (0 -> 1) through the budget after warm-up."""
    return components.schedule.get(cfg.schedule)(cfg, step, progress)


class Trainer:
    """Trains one TrainStep within a budget on the lr schedule, timing each step; the Evaluator
    scores it, the stop rules end it early, and the best weights go to `on_best`."""

    def __init__(
        self,
        cfg: Config,
        corpus: Corpus,
        device: torch.device | str,
        seed: int,
        budget: Budget,
        target_loss: float | None = None,
        on_best: Callable[[GPT, int, float], None] | None = None,
    ) -> None:
        self.created_at = time.perf_counter()
        corpus.check_block_size(cfg.block_size)
        self.cfg = cfg.replace(vocab_size=corpus.tokenizer.vocab_size)
        self.corpus = corpus
        self.seed = seed
        self.budget = budget
        self.on_best = on_best
        self.result = TrialResult()
        self.train_step = TrainStep(self.cfg, device, seed)
        self.device = self.train_step.device
        self.tokens_per_step = self.train_step.tokens_per_step
        self.evaluator = Evaluator(corpus.val, self.cfg, self.device, self.train_step.precision, target_loss)
        self.patience = Patience(self.cfg.patience)
        self.timer = StepTimer(self.device)
        self._started = 0.0  # perf_counter() when training began, after any compile warm-up
        self._loss_sum = torch.zeros((), device=self.device)
        self._losses_summed = 0

    @property
    def model(self) -> GPT:
        return self.train_step.model

    @property
    def precision(self) -> str:
        """The resolved precision's name, as trial.json records it."""
        return self.train_step.precision.name

    def run(self) -> Iterator[dict]:
        """Train until the budget, a stop rule or divergence; yield a point per log/eval."""
        with self.train_step.precision.float32_matmuls():
            yield from self._run()

    def _run(self) -> Iterator[dict]:
        cfg, result = self.cfg, self.result
        sampler = BatchSampler(self.corpus.train, cfg.block_size, cfg.batch_size, self.seed, self.device)
        total_steps = self.budget.total_steps(self.tokens_per_step)
        if self.train_step.compiled:
            result.compile_seconds = self._compile()
        reset_peak_memory(self.device)
        self._started = time.perf_counter()
        while not result.stop_reason:
            lr = lr_at(cfg, result.steps, self._progress(total_steps))
            self._timed_step(sampler, lr)
            spent = self._budget_spent(total_steps)
            if spent or result.steps % cfg.eval_interval == 0:
                train_loss = self._mean_train_loss()
                evaluation = self.evaluator.evaluate(self.model, result.steps, self._started)
                yield self._point(train_loss, lr, evaluation)
                result.stop_reason = self._stop_reason_after(evaluation) or self._budget_spent(total_steps)
            elif result.steps % LOG_INTERVAL == 0:
                yield self._point(self._mean_train_loss(), lr)
        result.step_seconds = self.timer.durations()
        result.train_seconds = sum(result.step_seconds)
        result.wall_seconds = time.perf_counter() - self._started
        result.status = "completed"

    def _compile(self) -> float:
        """Seconds of the compile warm-up, on a batch no training step draws."""
        cfg = self.cfg
        x, y = BatchSampler(self.corpus.train, cfg.block_size, cfg.batch_size, 0, self.device)()
        return self.train_step.warm_up(x, y)

    def _timed_step(self, sampler: BatchSampler, lr: float) -> None:
        self.train_step.set_lr(lr)
        self.timer.start()
        # added at once: a CUDA graph's next replay overwrites the loss it returned
        self._loss_sum += self.train_step.step(*sampler())
        self.timer.stop()
        self._losses_summed += 1
        self.result.steps += 1
        self.result.tokens += self.tokens_per_step

    def _budget_spent(self, total_steps: int | None) -> str:
        """Why the budget allows no further step, or "" while it does."""
        if total_steps is not None and self.result.steps >= total_steps:
            return "budget"
        if self.budget.max_seconds is not None and time.perf_counter() - self._started >= self.budget.max_seconds:
            return "time budget"
        return ""

    def _progress(self, total_steps: int | None) -> float:
        """How far through the budget the next step is, 0 -> 1, for the lr schedule."""
        elapsed = time.perf_counter() - self._started
        if total_steps is not None:
            warmup = self.cfg.warmup_steps
            fraction = (self.result.steps - warmup) / max(1, total_steps - warmup)
            if self.budget.max_seconds is None:
                return fraction
            return max(fraction, elapsed / self.budget.max_seconds)
        return elapsed / self.budget.max_seconds

    def _mean_train_loss(self) -> float:
        """The mean training loss since the last point: one host sync."""
        train_loss = (self._loss_sum / self._losses_summed).item()
        self._loss_sum.zero_()
        self._losses_summed = 0
        if not math.isfinite(train_loss):
            raise Diverged(f"training loss became {train_loss} at step {self.result.steps}")
        return train_loss

    def _stop_reason_after(self, evaluation: Evaluation) -> str:
        """Note an evaluation, keep the weights when it is the best so far; the reason to stop
        the trial now, or "" to go on."""
        result = self.result
        result.final_val_loss = evaluation.val_loss
        result.eval_seconds = self.evaluator.seconds
        result.time_to_target_s = self.evaluator.time_to_target_s
        improved = result.best_val_loss is None or evaluation.val_loss < result.best_val_loss
        if improved:
            result.best_val_loss, result.best_step = evaluation.val_loss, result.steps
            self._save_best()
        patience = self.patience.stop_reason(improved)
        return target_stop_reason(self.budget.stop_at_target, result.time_to_target_s) or patience

    def _save_best(self) -> None:
        if self.on_best is not None:
            began = time.perf_counter()
            self.on_best(self.model, self.result.steps, self.result.best_val_loss)
            self.result.checkpoint_seconds += time.perf_counter() - began

    def _point(self, train_loss: float, lr: float, evaluation: Evaluation | None = None) -> dict:
        train_seconds = sum(self.timer.durations())
        return {
            "step": self.result.steps,
            "tokens": self.result.tokens,
            "seconds": round(time.perf_counter() - self._started, 4),
            "train_loss": train_loss,
            "val_loss": evaluation.val_loss if evaluation else None,
            # the whole split, when it checked a target crossing
            "confirmed_val_loss": evaluation.confirmed_val_loss if evaluation else None,
            "lr": lr,
            "tokens_per_sec": self.result.tokens / train_seconds if train_seconds else None,
        }
