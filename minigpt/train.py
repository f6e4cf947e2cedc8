"""One trial: build the model, train it within a budget, evaluate, keep the best weights.

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
from minigpt.data import BatchSampler, Corpus, eval_batches
from minigpt.errors import UserError
from minigpt.measure import StepTimer, percentile, reset_peak_memory
from minigpt.model import GPT

TIMING_WARMUP_STEPS = 5  # first steps pay for allocation, thread start-up and compilation
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


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


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
    time_to_target_s: float | None = None
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
    """Linear warm-up over warmup_steps, then cosine from lr to min_lr as progress goes 0 -> 1."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(max(progress, 0.0), 1.0)
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


class Trainer:
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
        self.device = torch.device(device)
        self.seed = seed
        self.budget = budget
        self.target_loss = target_loss
        self.on_best = on_best
        self.tokens_per_step = cfg.batch_size * cfg.block_size
        self.result = TrialResult()
        torch.manual_seed(seed)
        self.model = GPT(self.cfg).to(self.device)
        self.optimizer = components.optimizer.build(self.cfg.optimizer, self.model, self.cfg, self.device)
        self.step_model = torch.compile(self.model) if self.cfg.compile else self.model

    def run(self) -> Iterator[dict]:
        """Train until the budget, early stopping or divergence; yield a point per log/eval."""
        cfg, result = self.cfg, self.result
        sampler = BatchSampler(self.corpus.train, cfg.block_size, cfg.batch_size, self.seed, self.device)
        val_batches = eval_batches(self.corpus.val, cfg.block_size, cfg.batch_size, cfg.eval_batches, self.device)
        total_steps = self.budget.total_steps(self.tokens_per_step)
        timer = StepTimer(self.device)
        loss_sum = torch.zeros((), device=self.device)
        losses_since_log = 0
        evals_without_gain = 0
        evaluated_at = -1
        lr = cfg.lr
        reset_peak_memory(self.device)
        self.model.train()
        started = time.perf_counter()
        while True:
            elapsed = time.perf_counter() - started
            if total_steps is not None and result.steps >= total_steps:
                result.stop_reason = "budget"
                break
            if self.budget.max_seconds is not None and elapsed >= self.budget.max_seconds:
                result.stop_reason = "time budget"
                break
            progress = self._progress(result.steps, total_steps, elapsed)
            lr = lr_at(cfg, result.steps, progress)
            for group in self.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            timer.start()
            loss_sum += self._train_step(sampler)
            timer.stop()
            result.steps += 1
            result.tokens += self.tokens_per_step
            losses_since_log += 1
            last = total_steps is not None and result.steps >= total_steps
            evaluate = last or result.steps % cfg.eval_interval == 0
            if not evaluate and result.steps % LOG_INTERVAL:
                continue
            train_loss = (loss_sum / losses_since_log).item()
            loss_sum.zero_()
            losses_since_log = 0
            if not math.isfinite(train_loss):
                raise Diverged(f"training loss became {train_loss} at step {result.steps}")
            val_loss = self._evaluate(val_batches) if evaluate else None
            evaluated_at = result.steps if evaluate else evaluated_at
            yield self._point(timer, started, train_loss, val_loss, lr)
            if val_loss is not None and self._record_eval(val_loss, started):
                evals_without_gain = 0
                if self.budget.stop_at_target and result.time_to_target_s is not None:
                    result.stop_reason = "target loss reached"
                    break
            elif val_loss is not None:
                evals_without_gain += 1
                if cfg.patience and evals_without_gain >= cfg.patience:
                    result.stop_reason = f"early stop: no gain in {cfg.patience} evaluations"
                    break
        if evaluated_at != result.steps:
            val_loss = self._evaluate(val_batches)
            self._record_eval(val_loss, started)
            yield self._point(timer, started, None, val_loss, lr)
        result.step_seconds = timer.durations()
        result.train_seconds = sum(result.step_seconds)
        result.wall_seconds = time.perf_counter() - started
        result.status = "completed"

    def _progress(self, step: int, total_steps: int | None, elapsed: float) -> float:
        if total_steps is not None:
            fraction = (step - self.cfg.warmup_steps) / max(1, total_steps - self.cfg.warmup_steps)
            if self.budget.max_seconds is None:
                return fraction
            return max(fraction, elapsed / self.budget.max_seconds)
        return elapsed / self.budget.max_seconds

    def _train_step(self, sampler: BatchSampler) -> torch.Tensor:
        x, y = sampler()
        _, loss = self.step_model(x, y)
        loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    @torch.no_grad()
    def _evaluate(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        began = time.perf_counter()
        self.model.eval()
        total = torch.zeros((), device=self.device)
        count = 0
        for x, y in batches:
            _, loss = self.step_model(x, y)
            total += loss * y.numel()
            count += y.numel()
        self.model.train()
        val_loss = (total / count).item()
        self.result.eval_seconds += time.perf_counter() - began
        if not math.isfinite(val_loss):
            raise Diverged(f"validation loss became {val_loss} at step {self.result.steps}")
        return val_loss

    def _record_eval(self, val_loss: float, started: float) -> bool:
        """Note an evaluation; True when it is the best so far (its weights are then kept)."""
        result = self.result
        result.final_val_loss = val_loss
        if self.target_loss is not None and result.time_to_target_s is None and val_loss <= self.target_loss:
            result.time_to_target_s = time.perf_counter() - started
        if result.best_val_loss is not None and val_loss >= result.best_val_loss:
            return False
        result.best_val_loss, result.best_step = val_loss, result.steps
        if self.on_best is not None:
            began = time.perf_counter()
            self.on_best(self.model, result.steps, val_loss)
            result.checkpoint_seconds += time.perf_counter() - began
        return True

    def _point(
        self, timer: StepTimer, started: float, train_loss: float | None, val_loss: float | None, lr: float
    ) -> dict:
        train_seconds = sum(timer.durations())
        return {
            "step": self.result.steps,
            "tokens": self.result.tokens,
            "seconds": round(time.perf_counter() - started, 4),
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lr": lr,
            "tokens_per_sec": self.result.tokens / train_seconds if train_seconds else None,
        }
