"""Plan a sweep (variants x devices x seeds, one budget), run its trials, keep the results.

Data flows one way: plan -> trial (data, model, trainer, measure) -> store. A trial that
fails or diverges is recorded and the sweep goes on; a re-run skips finished trials.
"""

from __future__ import annotations

import platform
import time
import traceback
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from minigpt import __version__
from minigpt.config import Config
from minigpt.errors import UserError
from minigpt.store import RunStore, append_point, trial_id
from minigpt.train import Budget
from minigpt.variants import BASELINE, VariantError, VariantRegistry

DEFAULT_VARIANTS = ("baseline", "learned-pos", "nope", "alibi", "heads-1", "heads-8", "rmsnorm", "swiglu", "adamw")
DEFAULT_TARGET_LOSS = 2.0
DEVICE_KINDS = ("cpu", "cuda", "mps")


class PlanError(UserError):
    """A sweep that cannot be planned as asked."""


@dataclass(frozen=True)
class TrialSpec:
    variant: str
    description: str
    device: str
    seed: int
    config: Config
    changed: dict[str, Any]  # key -> the variant's value, where it differs from the baseline

    @property
    def id(self) -> str:
        return trial_id(self.variant, self.device, self.seed)


@dataclass
class SweepPlan:
    trials: list[TrialSpec]
    data: str
    budget: Budget
    target_loss: float | None
    variants: list[str]
    devices: list[str]
    seeds: list[int]
    base_config: Config
    max_vocab: int | None = None
    options: dict[str, Any] = field(default_factory=dict)  # preset, overrides, plugins: for the record

    def describe(self) -> dict[str, Any]:
        return {
            "variants": self.variants,
            "devices": self.devices,
            "seeds": self.seeds,
            "data": self.data,
            "budget": asdict(self.budget),
            "target_loss": self.target_loss,
            "max_vocab": self.max_vocab,
            "base_config": self.base_config.to_dict(),
            "trials": [spec.id for spec in self.trials],
            **self.options,
        }


def parse_devices(spec: str) -> list[str]:
    """'auto' is every device this machine has; otherwise a comma list such as cpu,cuda:1."""
    from minigpt.measure import available_devices

    if spec.strip() == "auto":
        return available_devices()
    devices = [d.strip() for d in spec.split(",") if d.strip()]
    for device in devices:
        kind, _, index = device.partition(":")
        if kind not in DEVICE_KINDS or (index and not index.isdigit()):
            raise PlanError(
                f"unknown device {device!r}; use auto or a comma list of {', '.join(DEVICE_KINDS)} (cuda:N)"
            )
    if not devices:
        raise PlanError("--devices is empty; use auto or a comma list such as cpu,cuda")
    return list(dict.fromkeys(devices))


def parse_seeds(spec: str) -> list[int]:
    try:
        seeds = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise PlanError(f"--seeds expects comma-separated integers, got {spec!r}") from None
    if not seeds:
        raise PlanError("--seeds is empty; give at least one integer seed")
    return list(dict.fromkeys(seeds))


def resolve_variants(registry: VariantRegistry, spec: str | Iterable[str]) -> list[str]:
    names = [n.strip() for n in spec.split(",")] if isinstance(spec, str) else list(spec)
    if names == ["all"]:
        return registry.names()
    for name in names:
        registry.get(name)  # raises with the closest names
    if not names:
        raise VariantError("--variants is empty; name at least one variant, or all")
    return list(dict.fromkeys(names))


def plan_sweep(
    registry: VariantRegistry,
    variants: str | Iterable[str],
    devices: list[str],
    seeds: list[int],
    base_config: Config,
    data: str,
    budget: Budget,
    target_loss: float | None = DEFAULT_TARGET_LOSS,
    max_vocab: int | None = None,
    options: dict[str, Any] | None = None,
) -> SweepPlan:
    """Every variant is configured (and so validated) here, before any training starts."""
    names = resolve_variants(registry, variants)
    baseline = registry.get(BASELINE).configure(base_config) if BASELINE in registry.names() else base_config
    configured = {name: registry.get(name).configure(base_config) for name in names}
    trials = [
        TrialSpec(
            name,
            registry.get(name).description,
            device,
            seed,
            configured[name],
            {key: new for key, (new, _) in configured[name].diff(baseline).items()},
        )
        for name in names
        for device in devices
        for seed in seeds
    ]
    return SweepPlan(trials, data, budget, target_loss, names, devices, seeds, base_config, max_vocab, options or {})


class SweepObserver(Protocol):
    def sweep_started(self, plan: SweepPlan, pending: int) -> None: ...
    def trial_started(self, spec: TrialSpec) -> None: ...
    def trial_point(self, spec: TrialSpec, point: dict[str, Any]) -> None: ...
    def trial_finished(self, spec: TrialSpec, record: dict[str, Any], resumed: bool) -> None: ...


class QuietObserver:
    def sweep_started(self, plan: SweepPlan, pending: int) -> None:
        pass

    def trial_started(self, spec: TrialSpec) -> None:
        pass

    def trial_point(self, spec: TrialSpec, point: dict[str, Any]) -> None:
        pass

    def trial_finished(self, spec: TrialSpec, record: dict[str, Any], resumed: bool) -> None:
        pass


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def environment() -> dict[str, Any]:
    import torch

    from minigpt.measure import cpu_model

    return {
        "minigpt_bench": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
    }


EXECUTORS = ("local", "ray")


class Executor(Protocol):
    """Runs the pending trials of a plan into the store and tells the observer about every trial."""

    def __call__(
        self,
        plan: SweepPlan,
        pending: list[TrialSpec],
        corpus: Any,
        store: RunStore,
        peak_flops: dict[str, float],
        observer: SweepObserver,
    ) -> None: ...


def run_sweep(
    plan: SweepPlan,
    store: RunStore,
    observer: SweepObserver | None = None,
    fresh: bool = False,
    executor: str = "local",
    ray_address: str | None = None,
    ray_cpus_per_trial: int | None = None,
) -> list[dict[str, Any]]:
    """Run every unfinished trial of the plan into the store; returns the plan's records.
    executor "ray" runs the trials as tasks on a Ray cluster (connected to before anything is
    written). Raises KeyboardInterrupt after recording the running trials as interrupted."""
    if executor not in EXECUTORS:
        raise PlanError(f"unknown executor {executor!r}; choose {' or '.join(EXECUTORS)}")
    if executor == "local":
        return _run(plan, store, observer or QuietObserver(), fresh, run_locally)
    from minigpt.ray_executor import RayExecutor

    with RayExecutor(ray_address, ray_cpus_per_trial) as on_ray:
        return _run(plan, store, observer or QuietObserver(), fresh, on_ray)


def _run(
    plan: SweepPlan, store: RunStore, observer: SweepObserver, fresh: bool, execute: Executor
) -> list[dict[str, Any]]:
    from minigpt.data import load_corpus

    with store.lock():
        if fresh:
            store.reset()
        corpus = load_corpus(plan.data, plan.max_vocab)
        for spec in plan.trials:
            corpus.check_block_size(spec.config.block_size)
        sweep = {**store.read_sweep(), **plan.describe(), "environment": environment(), "updated_at": now()}
        sweep.setdefault("created_at", sweep["updated_at"])
        sweep["peak_flops"] = probe_devices(plan.devices, sweep.get("peak_flops", {}))
        store.write_sweep(sweep)
        pending = [spec for spec in plan.trials if not store.is_finished(spec.id)]
        observer.sweep_started(plan, len(pending))
        execute(plan, pending, corpus, store, sweep["peak_flops"], observer)
        return [store.read_trial(spec.id) for spec in plan.trials]


def run_locally(
    plan: SweepPlan,
    pending: list[TrialSpec],
    corpus: Any,
    store: RunStore,
    peak_flops: dict[str, float],
    observer: SweepObserver,
) -> None:
    """The local executor: one trial after another in this process, in plan order."""
    for spec in plan.trials:
        if spec in pending:
            observer.trial_started(spec)
            record = run_trial(spec, plan, corpus, store, peak_flops, observer)
            observer.trial_finished(spec, record, resumed=False)
        else:
            observer.trial_finished(spec, store.read_trial(spec.id), resumed=True)


def probe_devices(devices: list[str], known: dict[str, float]) -> dict[str, float]:
    """The matmul peak of each present device, measured once per sweep (kept on resume)."""
    import torch

    from minigpt.measure import device_absent_reason, matmul_peak_flops

    peaks = dict(known)
    for device in devices:
        if device not in peaks and device_absent_reason(device) is None:
            peaks[device] = matmul_peak_flops(torch.device(device))
    return peaks


def base_record(spec: TrialSpec, plan: SweepPlan) -> dict[str, Any]:
    return {
        "trial_id": spec.id,
        "variant": spec.variant,
        "description": spec.description,
        "device": spec.device,
        "seed": spec.seed,
        "status": "running",
        "config": spec.config.to_dict(),
        "changed": spec.changed,
        "data": plan.data,
        "budget": asdict(plan.budget),
        "target_loss": plan.target_loss,
        "started_at": now(),
        "error": None,
    }


def begin_record(spec: TrialSpec, plan: SweepPlan, device: str | None = None) -> dict[str, Any]:
    """The trial's record as it starts on `device` (the device this process calls
    spec.device): `skipped` with the reason when that device is absent here."""
    import torch

    from minigpt.measure import device_absent_reason, device_name

    device = device or spec.device
    record = base_record(spec, plan)
    absent = device_absent_reason(device)
    if absent:
        record.update(status="skipped", error=absent, finished_at=now())
    else:
        record.update(device_name=device_name(torch.device(device)), threads=torch.get_num_threads())
    return record


def failure(error: Exception) -> dict[str, Any]:
    """The status and error fields of a trial that raised `error`."""
    from minigpt.train import Diverged

    if isinstance(error, Diverged):
        return {"status": "diverged", "error": f"{type(error).__name__}: {error}"}
    return {"status": "failed", "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}


def run_trial(
    spec: TrialSpec,
    plan: SweepPlan,
    corpus: Any,
    store: RunStore,
    peak_flops: dict[str, float],
    observer: SweepObserver,
) -> dict[str, Any]:
    """Train one trial into its directory. Any exception becomes a `failed` record."""
    record = begin_record(spec, plan)
    store.write_trial(record)
    if record["status"] == "skipped":
        return record
    trainer = None
    try:
        trainer = build_trainer(spec, plan, corpus, store.trial_dir(spec.id))
        with store.metrics_log(spec.id) as log:
            for point in trainer.run():
                append_point(log, point)
                observer.trial_point(spec, point)
        record["status"] = "completed"
    except KeyboardInterrupt:
        record.update(status="interrupted", error="interrupted by the user")
        raise
    except Exception as error:  # one trial's failure, whatever it is, must not stop the sweep
        record.update(failure(error))
    finally:
        record.update(summarize(trainer, spec, peak_flops), finished_at=now())
        store.write_trial(record)
    return record


def build_trainer(
    spec: TrialSpec, plan: SweepPlan, corpus: Any, checkpoint_dir: Path, device: str | None = None
) -> Any:
    """The trial's trainer, saving each best checkpoint into checkpoint_dir; `device` is
    where it trains when this process calls spec.device something else (a Ray worker's GPU)."""
    from minigpt.checkpoint import save_checkpoint
    from minigpt.train import Trainer

    def save_best(model: Any, step: int, val_loss: float) -> None:
        save_checkpoint(
            checkpoint_dir, model, corpus.tokenizer,
            variant=spec.variant, trial_id=spec.id, step=step, val_loss=val_loss, data=plan.data,
        )  # fmt: skip

    return Trainer(
        spec.config, corpus, device or spec.device, spec.seed, plan.budget, plan.target_loss, on_best=save_best
    )


def summarize(trainer: Any, spec: TrialSpec, peak_flops: dict[str, float]) -> dict[str, Any]:
    """The summary fields of trial.json; nulls where the trial never got that far."""
    if trainer is None:
        return {}
    from minigpt.measure import flops_per_token, peak_memory_mb

    result = trainer.result
    speed = result.speed(trainer.tokens_per_step)
    flops = flops_per_token(trainer.model)
    peak = peak_flops.get(spec.device)
    tokens_per_sec = speed["tokens_per_sec"]
    return {
        "params": trainer.model.num_params(),
        "flops_per_token": flops,
        "best_val_loss": result.best_val_loss,
        "best_step": result.best_step,
        "final_val_loss": result.final_val_loss,
        "steps": result.steps,
        "tokens": result.tokens,
        "wall_seconds": result.wall_seconds or time.perf_counter() - trainer.created_at,
        "train_seconds": result.train_seconds,
        "eval_seconds": result.eval_seconds,
        "checkpoint_seconds": result.checkpoint_seconds,
        **speed,
        "peak_memory_mb": peak_memory_mb(trainer.device),
        "mfu": flops * tokens_per_sec / peak if tokens_per_sec and peak else None,
        "time_to_target_s": result.time_to_target_s,
        "stop_reason": result.stop_reason,
        "compiled": trainer.cfg.compile,
    }
