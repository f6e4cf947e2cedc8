"""One trial: build the model, train it within a budget, evaluate, keep the best weights.

`Trainer.run()` yields metric points as it goes; `Trainer.result` holds the summary after.
The trainer knows configurations, never variant names.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import torch
from torch import nn

from minigpt import components
from minigpt.config import Config
from minigpt.data import BatchSampler, Corpus, eval_batches
from minigpt.errors import UserError
from minigpt.host import keep_freed_memory
from minigpt.measure import StepTimer, percentile, reset_peak_memory, synchronize
from minigpt.model import GPT
from minigpt.precision import Precision, float32_matmuls

TIMING_WARMUP_STEPS = 5  # first steps pay for allocation, thread start-up and CUDA graph capture
LOG_INTERVAL = 50  # steps between train-loss points: one host sync each, never one per step
# Sequences per evaluation batch, whatever the trial's batch_size, so that every variant is
# scored on the same validation text.
EVAL_BATCH_SIZE = 32


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
    """Linear warm-up over warmup_steps, then cosine from lr to min_lr as progress goes 0 -> 1."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(max(progress, 0.0), 1.0)
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def compile_model(model: nn.Module, mode: str) -> nn.Module:
    """`model` torch.compile'd in `mode` (a Config.compile value), or itself when mode is "false"."""
    return model if mode == "false" else torch.compile(model, mode=mode)


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
        if self.device.type == "cpu":
            keep_freed_memory()
        torch.manual_seed(seed)
        self.model = GPT(self.cfg).to(self.device)
        self.optimizer = components.optimizer.build(self.cfg.optimizer, self.model, self.cfg, self.device)
        self.step_model = compile_model(self.model, self.cfg.compile)
        # CUDA graphs replay into the same output buffers: each step must be marked as new
        self.cuda_graphs = self.cfg.compile == "reduce-overhead" and self.device.type == "cuda"
        self.numerics = Precision.resolve(self.cfg.precision, self.device)
        self.precision = self.numerics.name
        self.scaler = self.numerics.scaler()
        self._backward_and_step = self._update if self.scaler is None else self._scaled_update
        self._whole_val: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._evals_without_gain = 0

    def run(self) -> Iterator[dict]:
        """Train until the budget, early stopping or divergence; yield a point per log/eval."""
        with float32_matmuls(self.precision, self.device):
            yield from self._run()

    def _run(self) -> Iterator[dict]:
        cfg, result = self.cfg, self.result
        sampler = BatchSampler(self.corpus.train, cfg.block_size, cfg.batch_size, self.seed, self.device)
        val_batches = eval_batches(self.corpus.val, cfg.block_size, EVAL_BATCH_SIZE, cfg.eval_batches, self.device)
        total_steps = self.budget.total_steps(self.tokens_per_step)
        timer = StepTimer(self.device)
        loss_sum = torch.zeros((), device=self.device)
        losses_since_log = 0
        evaluated_at = -1
        lr = cfg.lr
        self.model.train()
        if cfg.compile != "false":
            result.compile_seconds = self._compile_warmup()
        reset_peak_memory(self.device)
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
            # added at once: a CUDA graph's next replay overwrites the loss it returned
            loss_sum += self.train_step(sampler)
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
            if not evaluate:
                yield self._point(timer, started, train_loss, None, lr)
                continue
            val_loss = self._evaluate(val_batches)
            confirmed = self._confirm_target(val_loss, started)
            evaluated_at = result.steps
            yield self._point(timer, started, train_loss, val_loss, lr, confirmed)
            result.stop_reason = self._record_eval(val_loss)
            if result.stop_reason:
                break
        if evaluated_at != result.steps:
            val_loss = self._evaluate(val_batches)
            confirmed = self._confirm_target(val_loss, started)
            self._record_eval(val_loss)
            yield self._point(timer, started, None, val_loss, lr, confirmed)
        result.step_seconds = timer.durations()
        result.train_seconds = sum(result.step_seconds)
        result.wall_seconds = time.perf_counter() - started
        result.status = "completed"

    def _compile_warmup(self) -> float:
        """Seconds to compile the step: forward and backward on a batch of the training shape,
        then the gradients dropped. No optimizer step, and the RNG and the training sampler are
        left as they were, so the trajectory is the one an uncompiled trial would follow."""
        cfg = self.cfg
        began = time.perf_counter()
        with self._rng_kept():
            x, y = BatchSampler(self.corpus.train, cfg.block_size, cfg.batch_size, 0, self.device)()
            # CUDA graph trees run the first call eagerly and record on the second
            for _ in range(2 if self.cuda_graphs else 1):
                if self.cuda_graphs:
                    torch.compiler.cudagraph_mark_step_begin()
                with self.numerics.autocast():
                    _, loss = self.step_model(x, y)
                loss.backward()
            self.optimizer.zero_grad(set_to_none=True)
            synchronize(self.device)
        return time.perf_counter() - began

    def _rng_kept(self) -> AbstractContextManager:
        if self.device.type == "cpu":
            return torch.random.fork_rng(devices=[])
        return torch.random.fork_rng(devices=[self.device], device_type=self.device.type)

    def _progress(self, step: int, total_steps: int | None, elapsed: float) -> float:
        if total_steps is not None:
            fraction = (step - self.cfg.warmup_steps) / max(1, total_steps - self.cfg.warmup_steps)
            if self.budget.max_seconds is None:
                return fraction
            return max(fraction, elapsed / self.budget.max_seconds)
        return elapsed / self.budget.max_seconds

    def train_step(self, sampler: BatchSampler) -> torch.Tensor:
        """One optimizer step on the sampler's next batch (forward, backward, clipping, update);
        returns the loss, still on the device."""
        x, y = sampler()
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with self.numerics.autocast():
            _, loss = self.step_model(x, y)
        self._backward_and_step(loss)
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def _update(self, loss: torch.Tensor) -> None:
        loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()

    def _scaled_update(self, loss: torch.Tensor) -> None:
        """fp16: backward through the scaled loss, clip the true (unscaled) gradients; the scaler
        skips a step whose gradients overflowed. Fused AdamW takes that decision on the device;
        other optimizers make the scaler read it on the host, one sync per step."""
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()

    @torch.no_grad()
    def _evaluate(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        """Mean loss over `batches`. The uncompiled model runs it: evaluation's shapes and
        eval-mode graph would each cost a compilation, charged to no one."""
        began = time.perf_counter()
        self.model.eval()
        total = torch.zeros((), device=self.device)
        count = 0
        for x, y in batches:
            with self.numerics.autocast():
                _, loss = self.model(x, y)
            total += loss * y.numel()
            count += y.numel()
        self.model.train()
        val_loss = (total / count).item()
        self.result.eval_seconds += time.perf_counter() - began
        if not math.isfinite(val_loss):
            raise Diverged(f"validation loss became {val_loss} at step {self.result.steps}")
        return val_loss

    def _confirm_target(self, estimate: float, started: float) -> float | None:
        """The whole validation split's loss when `estimate` is the first to reach the target,
        else None. Only a crossing the whole split confirms sets time_to_target_s, to the time
        of the estimate (the confirmation's own time counts as eval time, not towards it)."""
        result, target = self.result, self.target_loss
        if target is None or result.time_to_target_s is not None or estimate > target:
            return None
        reached_at = time.perf_counter() - started
        confirmed = estimate if self.cfg.eval_batches == 0 else self._evaluate(self._whole_val_batches())
        if confirmed <= target:
            result.time_to_target_s = reached_at
        return confirmed

    def _whole_val_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if self._whole_val is None:
            self._whole_val = eval_batches(self.corpus.val, self.cfg.block_size, EVAL_BATCH_SIZE, 0, self.device)
        return self._whole_val

    def _record_eval(self, val_loss: float) -> str:
        """Note an evaluation, keep the weights when it is the best so far; the reason to stop
        the trial now, or "" to go on."""
        result, cfg = self.result, self.cfg
        result.final_val_loss = val_loss
        if result.best_val_loss is None or val_loss < result.best_val_loss:
            self._evals_without_gain = 0
            result.best_val_loss, result.best_step = val_loss, result.steps
            if self.on_best is not None:
                began = time.perf_counter()
                self.on_best(self.model, result.steps, val_loss)
                result.checkpoint_seconds += time.perf_counter() - began
        else:
            self._evals_without_gain += 1
        if self.budget.stop_at_target and result.time_to_target_s is not None:
            return "target loss reached"
        if cfg.patience and self._evals_without_gain >= cfg.patience:
            return f"early stop: no gain in {cfg.patience} evaluations"
        return ""

    def _point(
        self,
        timer: StepTimer,
        started: float,
        train_loss: float | None,
        val_loss: float | None,
        lr: float,
        confirmed_val_loss: float | None = None,
    ) -> dict:
        train_seconds = sum(timer.durations())
        return {
            "step": self.result.steps,
            "tokens": self.result.tokens,
            "seconds": round(time.perf_counter() - started, 4),
            "train_loss": train_loss,
            "val_loss": val_loss,
            "confirmed_val_loss": confirmed_val_loss,  # the whole split, when it checked a target crossing
            "lr": lr,
            "tokens_per_sec": self.result.tokens / train_seconds if train_seconds else None,
        }
