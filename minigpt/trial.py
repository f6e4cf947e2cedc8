"""A trial of a sweep, from its job to its record: what a trial is (`TrialSpec`), what it needs
wherever it runs (`TrialJob`, and a batch's `SweepJob`), and `train_trial`, which builds the
trainer (minigpt.train: the training loop), trains, keeps the best checkpoint and summarizes, or
records why it failed. Every executor calls `train_trial`; none imports another.

The record is trial.json's content: what was asked (variant, device, seed, configuration),
the status, the summary metrics, and the machine's speed before and after (drift).
"""

from __future__ import annotations

import re
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minigpt import metrics
from minigpt.config import Config
from minigpt.store import trial_id
from minigpt.trackers import TrackingSettings, TrialTracking
from minigpt.train import Budget

if TYPE_CHECKING:
    from minigpt.data import Corpus
    from minigpt.store import RunStore

Peaks = dict[str, dict[str, float]]  # device -> precision -> measured matmul FLOP/s (MFU's denominator)


@dataclass(frozen=True)
class TrialSpec:
    variant: str
    description: str
    device: str
    seed: int
    config: Config
    changed: dict[str, Any]  # key -> the variant's value, where it differs from the baseline
    budget: Budget | None = (
        None  # this trial's own budget (a size's, a FLOPs budget, a tuning stage's); None: the sweep's
    )
    labels: dict[str, Any] = field(default_factory=dict)  # stage, size, tuned values: kept in trial.json
    suffix: str = ""  # ID parts after sSEED: size, tuning point, q for a quarter budget

    @property
    def id(self) -> str:
        base = trial_id(self.variant, self.device, self.seed)
        return f"{base}--{re.sub(r'[^A-Za-z0-9._+-]', '_', self.suffix)}" if self.suffix else base

    def budget_in(self, settings: TrialSettings) -> Budget:
        return self.budget or settings.budget


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of a sweep shares, as the process that trains a trial needs it."""

    data: str
    budget: Budget
    target_loss: float | None
    plugins: tuple[str, ...] = ()  # absolute paths: imported where the trial runs, before building
    tracking: TrackingSettings | None = None  # the experiment trackers each trial also logs to
    eval_lengths: tuple[int, ...] = ()  # multiples of block_size its best checkpoint is scored at


@dataclass(frozen=True)
class TrialJob:
    """What training one trial needs, wherever it trains: sent whole to the trial's process."""

    spec: TrialSpec
    settings: TrialSettings
    corpus: Corpus
    peaks: dict[str, float] = field(default_factory=dict)  # the trial's device's: precision -> FLOP/s

    def ended(self, status: str, error: str) -> dict[str, Any]:
        return ended_record(self.spec, self.settings, status, error)


@dataclass(frozen=True)
class SweepJob:
    """What an executor needs to run a batch of a sweep's trials: the trials' shared part, and the
    store and observer that stay with the sweep's process."""

    settings: TrialSettings
    corpus: Corpus
    store: RunStore
    peaks: Peaks
    observer: Any  # a minigpt.sweep.SweepObserver

    def trial(self, spec: TrialSpec) -> TrialJob:
        return TrialJob(spec, self.settings, self.corpus, self.peaks.get(spec.device, {}))


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def base_record(spec: TrialSpec, settings: TrialSettings) -> dict[str, Any]:
    return {
        "trial_id": spec.id,
        "variant": spec.variant,
        "description": spec.description,
        "device": spec.device,
        "seed": spec.seed,
        "status": "running",
        "config": spec.config.to_dict(),
        "changed": spec.changed,
        "data": settings.data,
        "budget": asdict(spec.budget_in(settings)),
        "target_loss": settings.target_loss,
        "started_at": now(),
        "error": None,
        **spec.labels,
    }


def ended_record(spec: TrialSpec, settings: TrialSettings, status: str, error: str) -> dict[str, Any]:
    """The record of a trial that ended without training: skipped, interrupted, or lost with its process."""
    return {**base_record(spec, settings), "status": status, "error": error, "finished_at": now()}


def begin_record(spec: TrialSpec, settings: TrialSettings, device: str | None = None) -> dict[str, Any]:
    """The trial's record as it starts on `device` (the device this process calls
    spec.device): `skipped` with the reason when that device is absent here."""
    import torch

    from minigpt.measure import device_absent_reason, device_name

    device = device or spec.device
    absent = device_absent_reason(device)
    if absent:
        return ended_record(spec, settings, "skipped", absent)
    record = base_record(spec, settings)
    record.update(device_name=device_name(torch.device(device)), threads=torch.get_num_threads())
    return record


def failure(error: Exception) -> dict[str, Any]:
    """The status and error fields of a trial that raised `error`."""
    from minigpt.train import Diverged

    if isinstance(error, Diverged):
        return {"status": "diverged", "error": f"{type(error).__name__}: {error}"}
    return {"status": "failed", "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}


def train_trial(
    record: dict[str, Any],
    job: TrialJob,
    checkpoint_dir: Path,
    on_point: Callable[[dict[str, Any]], None],
    device: str | None = None,
) -> dict[str, Any]:
    """Train the trial begun as `record`, calling on_point with every metric point; returns
    the finished record. Any exception becomes a `failed` (or `diverged`) record; Ctrl-C
    marks it `interrupted` and propagates. The trackers log each point after on_point, where
    the trainer has already synced for it."""
    import torch

    from minigpt.measure import probe_speed
    from minigpt.precision import resolve_precision

    spec, settings = job.spec, job.settings
    device = device or spec.device
    precision = resolve_precision(spec.config.precision, torch.device(device))
    trainer, before = None, None
    tracking = TrialTracking(settings.tracking, spec.id, record)
    try:
        before = probe_speed(device, precision)
        trainer = build_trainer(job, checkpoint_dir, device)
        for point in trainer.run():
            on_point(point)
            tracking.log(point)
        if settings.eval_lengths:
            record.update(length_fields(trainer, checkpoint_dir, settings.eval_lengths))
        record["status"] = "completed"
    except KeyboardInterrupt:
        record.update(status="interrupted", error="interrupted by the user")
        raise
    except Exception as error:  # one trial's failure, whatever it is, must not stop the sweep
        record.update(failure(error))
    finally:
        record.update(precision=precision, finished_at=now())
        record.update(closing_fields(trainer, job.peaks.get(precision), before, device, precision, record["status"]))
        record.update(tracking.finish(record))
    return record


def length_fields(trainer: Any, checkpoint_dir: Path, multiples: tuple[int, ...]) -> dict[str, Any]:
    """The best checkpoint's losses at `multiples` of block_size (minigpt.lengths), after training."""
    from safetensors.torch import load_model

    from minigpt.checkpoint import WEIGHTS
    from minigpt.lengths import evaluate_lengths

    began = time.perf_counter()
    load_model(trainer.model, str(checkpoint_dir / WEIGHTS))  # the trainer is done with its own weights
    precision = trainer.train_step.precision
    with precision.float32_matmuls():
        evaluation = evaluate_lengths(trainer.model, trainer.corpus.val, multiples, precision, trainer.device)
    return {**evaluation.fields(), "length_eval_seconds": time.perf_counter() - began}


def closing_fields(
    trainer: Any, peak: float | None, before: tuple[float, int] | None, device: str, precision: str, status: str
) -> dict[str, Any]:
    """The summary and the drift of a trial that ended; after a failure these may fail in turn
    (a device in an error state), and must not hide the failure that ended the trial."""
    from minigpt.measure import drift_fields, probe_speed

    fields: dict[str, Any] = {}
    try:
        fields.update(training_summary(trainer, peak))
        if before is not None and status != "interrupted":
            fields.update(drift_fields(before[0], probe_speed(device, precision, before[1])[0]))
    except Exception as error:  # recorded; the status the trial ended with stands
        fields["closing_error"] = f"{type(error).__name__}: {error}"
    return fields


def build_trainer(job: TrialJob, checkpoint_dir: Path, device: str | None = None) -> Any:
    """The trial's trainer, saving each best checkpoint into checkpoint_dir; `device` is
    where it trains when this process calls spec.device something else (a Ray worker's GPU)."""
    from minigpt.checkpoint import save_checkpoint
    from minigpt.train import Trainer

    spec, settings, corpus = job.spec, job.settings, job.corpus

    def save_best(model: Any, step: int, val_loss: float) -> None:
        save_checkpoint(
            checkpoint_dir, model, corpus.tokenizer,
            variant=spec.variant, trial_id=spec.id, step=step, val_loss=val_loss, data=settings.data,
        )  # fmt: skip

    return Trainer(
        spec.config,
        corpus,
        device or spec.device,
        spec.seed,
        spec.budget_in(settings),
        settings.target_loss,
        on_best=save_best,
    )


def training_summary(trainer: Any, peak: float | None) -> dict[str, Any]:
    """The summary fields of trial.json, derived metrics included (minigpt.metrics declares them
    all); nulls where the trial never got that far. MFU divides the model FLOP/s by `peak`, this
    device's measured peak in the trial's precision."""
    if trainer is None:
        return {}
    from minigpt.flops import total_fields
    from minigpt.measure import flops_per_token, peak_memory_mb

    result = trainer.result
    speed = result.speed(trainer.tokens_per_step)
    flops = flops_per_token(trainer.model)
    tokens_per_sec = speed["tokens_per_sec"]
    measured = {
        "params": trainer.model.num_params(),
        "flops_per_token": flops,
        **total_fields(trainer.cfg),
        "best_val_loss": result.best_val_loss,
        "best_step": result.best_step,
        "final_val_loss": result.final_val_loss,
        "steps": result.steps,
        "tokens": result.tokens,
        "wall_seconds": result.wall_seconds or time.perf_counter() - trainer.created_at,
        "train_seconds": result.train_seconds,
        "eval_seconds": result.eval_seconds,
        "checkpoint_seconds": result.checkpoint_seconds,
        "compile_seconds": result.compile_seconds,
        **speed,
        "peak_memory_mb": peak_memory_mb(trainer.device),
        "peak_flops": peak,
        "mfu": flops * tokens_per_sec / peak if tokens_per_sec and peak else None,
        "time_to_target_s": result.time_to_target_s,
        "stop_reason": result.stop_reason,
        "compiled": trainer.cfg.compile != "false",
        "val_bytes_per_char": trainer.corpus.val_bytes_per_char,
    }
    return metrics.with_derived(measured)
