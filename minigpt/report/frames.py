"""Pandas frames from a run directory: one row per trial, per metric point, per variant and device."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from minigpt.errors import UserError
from minigpt.report.speed import SPEED_VALUES, SpeedPhase, speed_frame
from minigpt.stats import NO_VALUES, Interval, difference_interval, holm, mean_interval, verdict
from minigpt.store import RunStore
from minigpt.variants import BASELINE

STATUSES = ("completed", "failed", "diverged", "skipped", "interrupted", "running")
TRIAL_NUMBERS = (
    "seed", "params", "best_val_loss", "best_step", "final_val_loss", "steps", "tokens", "wall_seconds",
    "train_seconds", "eval_seconds", "tokens_per_sec", "step_ms_p50", "step_ms_p90", "peak_memory_mb",
    "flops_per_token", "mfu", "time_to_target_s", "target_loss", "compile_seconds", "drift_before", "drift_after",
    "drift_change",
)  # fmt: skip
# tokens_per_sec and step_ms_* are measured while each trial trained: minutes apart on a machine whose
# speed drifts, so they describe one trial and are never compared across trials (speed.json is).
TRIAL_COLUMNS = (
    "trial_id", "variant", "device", "device_name", "status", "precision", *TRIAL_NUMBERS, "drift_flagged",
    "stop_reason", "concurrent", "changed", "description", "error",
)  # fmt: skip
METRIC_NUMBERS = ("seed", "step", "tokens", "seconds", "train_loss", "val_loss", "lr", "tokens_per_sec")
METRIC_COLUMNS = ("trial_id", "variant", "device", *METRIC_NUMBERS)
SUMMARY_COLUMNS = (
    "variant", "device", "trials", *STATUSES, "params", "precision",
    "best_val_loss", "best_val_loss_low", "best_val_loss_high",
    "diff_vs_baseline", "diff_low", "diff_high", "diff_pct", "p_value", "p_holm", "verdict",
    *SPEED_VALUES,
    "tokens_per_sec_during_training", "tokens_per_sec_during_training_low", "tokens_per_sec_during_training_high",
    "step_ms_p50_during_training", "mfu", "peak_memory_mb",
    "time_to_target_s", "time_to_target_s_low", "time_to_target_s_high", "reached_target",
    "changed", "description",
)  # fmt: skip
BENCH_COLUMNS = (
    "variant", "device", "case", "rounds", "median_ms", "speed_ratio", "speed_ratio_low", "speed_ratio_high",
    "speed_verdict",
)  # fmt: skip


class ReportError(UserError):
    """A run directory that cannot be reported on."""


def load_frames(run_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per trial (summary fields, variant, device, seed, status, changes, error) and one
    row per metric point (with its trial's variant, device and seed)."""
    store = _open_store(run_dir)
    records = store.trials()
    if not records:
        raise ReportError(f"{run_dir} holds no trials yet; `minigpt-bench run --out {run_dir}` writes them")
    trials = pd.DataFrame([_trial_row(record) for record in records], columns=list(TRIAL_COLUMNS))
    trials[list(TRIAL_NUMBERS)] = trials[list(TRIAL_NUMBERS)].apply(pd.to_numeric, errors="coerce")
    points = [
        {**point, **{key: record.get(key) for key in ("trial_id", "variant", "device", "seed")}}
        for record in records
        for point in store.read_metrics(record["trial_id"])
    ]
    metrics = pd.DataFrame(points, columns=list(METRIC_COLUMNS))
    metrics[list(METRIC_NUMBERS)] = metrics[list(METRIC_NUMBERS)].apply(pd.to_numeric, errors="coerce")
    return trials, metrics


def _open_store(run_dir: str | Path) -> RunStore:
    path = Path(run_dir)
    if not path.exists():
        raise ReportError(f"run directory {path} does not exist")
    if not path.is_dir():
        raise ReportError(f"{path} is not a run directory (it is a file)")
    return RunStore(path)


def _trial_row(record: dict[str, Any]) -> dict[str, Any]:
    row = {key: record.get(key) for key in TRIAL_COLUMNS}
    row["changed"] = describe_changes(record.get("changed") or {})
    row["concurrent"] = bool(record.get("concurrent", False))  # shared its machine with other trials
    drift = record.get("drift") if isinstance(record.get("drift"), dict) else {}
    row.update({f"drift_{key}": drift.get(key) for key in ("before", "after", "change")})
    row["drift_flagged"] = bool(record.get("drift_flagged", False))  # absent in runs from before the drift probe
    if row["status"] == "running":
        row["error"] = row["error"] or "no final record: still running, or the sweep was killed"
    return row


def describe_changes(changed: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in changed.items())


def variant_order(trials: pd.DataFrame, sweep: dict[str, Any]) -> list[str]:
    """The sweep's order (as the user asked), then any other variant found; baseline first."""
    present = list(dict.fromkeys(trials["variant"]))
    names = list(dict.fromkeys([v for v in sweep.get("variants", []) if v in present] + present))
    return sorted(names, key=lambda name: name != BASELINE)


def summarize(trials: pd.DataFrame, order: Sequence[str], speed: SpeedPhase | None = None) -> pd.DataFrame:
    """One row per variant and device: status counts, loss with 95% intervals, the difference from
    the baseline on the same device and its verdict, and the interleaved speed from `speed`."""
    completed = trials[trials["status"] == "completed"]
    rows = []
    for device in dict.fromkeys(trials["device"]):
        baseline = completed[(completed["variant"] == BASELINE) & (completed["device"] == device)]
        groups = [trials[(trials["variant"] == variant) & (trials["device"] == device)] for variant in order]
        rows += _call_verdicts([_summary_row(group, baseline) for group in groups if not group.empty])
    summary = pd.DataFrame(rows, columns=[c for c in SUMMARY_COLUMNS if c not in SPEED_VALUES])
    measured = speed.frame if speed is not None else speed_frame([])
    return summary.merge(measured, on=["variant", "device"], how="left")[list(SUMMARY_COLUMNS)]


def _call_verdicts(rows: list[tuple[dict[str, Any], Interval]]) -> list[dict[str, Any]]:
    """Holm's method over one device's variants that have a p-value: with many variants, some
    interval would exclude zero by chance alone; Holm keeps the chance of any false call at 5%."""
    adjusted = holm([row["p_value"] for row, _ in rows])
    for (row, diff), p_holm in zip(rows, adjusted, strict=True):
        row["p_holm"] = p_holm
        row["verdict"] = row["verdict"] or verdict(diff, p_holm)
    return [row for row, _ in rows]


def _summary_row(group: pd.DataFrame, baseline: pd.DataFrame) -> tuple[dict[str, Any], Interval]:
    """The row (its verdict None where a test decides it) and the loss difference from the baseline."""
    done = group[group["status"] == "completed"]
    variant = group["variant"].iloc[0]
    loss = mean_interval(done["best_val_loss"])
    speed, reached = (
        _positive(mean_interval(done["tokens_per_sec"])),
        _positive(mean_interval(done["time_to_target_s"])),
    )
    is_baseline = variant == BASELINE
    diff = NO_VALUES if is_baseline else difference_interval(_by_seed(done), _by_seed(baseline))
    counts = group["status"].value_counts()
    row = {
        "variant": variant,
        "device": group["device"].iloc[0],
        "trials": len(group),
        **{status: int(counts.get(status, 0)) for status in STATUSES},
        "params": group["params"].max(),
        "precision": ", ".join(sorted(group["precision"].dropna().astype(str).unique())) or None,
        "best_val_loss": loss.mean,
        "best_val_loss_low": loss.low,
        "best_val_loss_high": loss.high,
        "diff_vs_baseline": diff.mean,
        "diff_low": diff.low,
        "diff_high": diff.high,
        "diff_pct": 100 * _ratio(diff.mean, mean_interval(baseline["best_val_loss"]).mean),
        "p_value": diff.p,
        "verdict": _fixed_verdict(is_baseline, done, baseline),
        "tokens_per_sec_during_training": speed.mean,
        "tokens_per_sec_during_training_low": speed.low,
        "tokens_per_sec_during_training_high": speed.high,
        "step_ms_p50_during_training": done["step_ms_p50"].mean(),
        "mfu": done["mfu"].mean(),
        "peak_memory_mb": done["peak_memory_mb"].mean(),
        "time_to_target_s": reached.mean,  # over the seeds that reached the target
        "time_to_target_s_low": reached.low,
        "time_to_target_s_high": reached.high,
        "reached_target": f"{reached.n}/{len(done)}",
        "changed": group["changed"].iloc[0],
        "description": group["description"].iloc[0],
    }
    return row, diff


def _positive(interval: Interval) -> Interval:
    """Rates and durations cannot be negative: a few noisy seeds can stretch a t interval below
    zero, and the part below zero says nothing, so it is cut there."""
    return replace(interval, low=max(interval.low, 0.0)) if math.isfinite(interval.low) else interval


def _by_seed(trials: pd.DataFrame) -> dict[int, float]:
    kept = trials[trials["best_val_loss"].notna()]
    return dict(zip(kept["seed"].astype(int), kept["best_val_loss"].astype(float), strict=True))


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator and math.isfinite(denominator) else math.nan


def _fixed_verdict(is_baseline: bool, done: pd.DataFrame, baseline: pd.DataFrame) -> str | None:
    """The verdict when there is nothing to test; None when the comparison decides it."""
    if is_baseline:
        return "reference"
    if done.empty:
        return "no completed trials"
    if baseline.empty:
        return "no baseline to compare"
    return None


def load_bench(run_dir: str | Path) -> tuple[pd.DataFrame | None, str | None]:
    """Micro-benchmarks from RUN_DIR/bench.json (pytest-benchmark's JSON), as (frame, note):
    per variant, device and case the median ms per call over the interleaved rounds, and the
    speed relative to the baseline paired within rounds (> 1 is faster) with its interval."""
    from minigpt.bench import bench_rows

    path = Path(run_dir) / "bench.json"
    if not path.is_file():
        return None, None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        frame = pd.DataFrame(bench_rows(raw), columns=list(BENCH_COLUMNS))
        ratios = ["speed_ratio", "speed_ratio_low", "speed_ratio_high"]
        frame[ratios] = frame[ratios].astype(float)  # None (no baseline timed) -> NaN
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return None, f"{path.name} could not be read ({error}); micro-benchmarks are left out"
    if frame.empty:
        return None, f"{path.name} holds no benchmark tagged with a variant; micro-benchmarks are left out"
    return frame, None


@dataclass
class RunReport:
    """Everything the figures and documents are built from."""

    name: str
    sweep: dict[str, Any]
    trials: pd.DataFrame
    metrics: pd.DataFrame
    summary: pd.DataFrame
    bench: pd.DataFrame | None
    bench_note: str | None
    order: list[str]
    palette: dict[str, Any]
    speed: SpeedPhase | None = None
    speed_note: str | None = None  # why there is no speed comparison

    @property
    def devices(self) -> list[str]:
        return list(dict.fromkeys(self.trials["device"]))

    def label(self, variant: str) -> str:
        return f"{variant} (reference)" if variant == BASELINE else variant

    def target_text(self) -> str:
        target = self.sweep.get("target_loss", self.trials["target_loss"].max())
        return "(no target set)" if target is None or not math.isfinite(target) else f"{target:g}"
