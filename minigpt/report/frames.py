"""Pandas frames from a run directory: one row per trial, per metric point, per variant and device."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from minigpt import metrics
from minigpt.decide import LOSS_LABELS, NO_DECISION, Decision, Design, decide, paired_differences
from minigpt.errors import UserError
from minigpt.report.speed_results import SPEED_VALUES, SpeedPhase, speed_frame
from minigpt.stats import Interval, holm, mean_interval
from minigpt.store import RunStore
from minigpt.variants import BASELINE

STATUSES = ("completed", "failed", "diverged", "skipped", "interrupted", "running")
DRIFT_NUMBERS = ("drift_before", "drift_after", "drift_change")
# The loss comparison with the baseline on the same device, the verdict column last. diff_low and
# diff_high bound the interval the verdict reads (adjusted for the variants and the looks, minigpt.decide);
# p_adjusted is the verdict's own test's p-value on the same scale (below 0.05: decided); p_holm is Holm's
# adjustment of the unadjusted p-values, as reports before the four verdicts gave it.
COMPARISON_COLUMNS = (
    "diff_vs_baseline", "diff_low", "diff_high", "diff_pct", "p_value", "p_holm", "p_adjusted", "confidence",
    "seeds", "detectable", "seeds_needed", "verdict",
)  # fmt: skip


def trial_numbers() -> list[str]:
    return ["seed", *metrics.names("trial"), "target_loss", *DRIFT_NUMBERS]


def trial_columns() -> list[str]:
    """results.csv: one row per trial. Its tokens/s and step times were measured while each trial
    trained, minutes apart on a machine whose speed drifts: never compared across trials (speed.json is)."""
    return [
        "trial_id", "variant", "device", "device_name", "status", "precision", *trial_numbers(), "drift_flagged",
        "stop_reason", "concurrent", "changed", "description", "error", "stage", "size", "tuned",
        "tracking",
    ]  # fmt: skip


def point_numbers() -> list[str]:
    return ["seed", *metrics.names("point")]


def point_columns() -> list[str]:
    return ["trial_id", "variant", "device", *point_numbers()]


def summary_columns() -> list[str]:
    """summary.csv: one row per variant and device (and size, on a size ladder: empty otherwise); each
    aggregated metric where its kind places it."""

    def of(kind: metrics.Kind) -> list[str]:
        return [column for metric in metrics.summarized(kind) for column in metric.summary_columns()]

    return [
        "variant", "device", "size", "trials", *STATUSES, *of("size"), "precision", *of("quality"), *COMPARISON_COLUMNS,
        *SPEED_VALUES, *of("cost"), "changed", "description",
    ]  # fmt: skip


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
    lengths = [m.name for m in metrics.length_metrics(key for record in records for key in record)]
    trials = _numeric(
        pd.DataFrame([_trial_row(record, lengths) for record in records], columns=trial_columns() + lengths),
        trial_numbers() + lengths,
    )
    points = [
        {
            **metrics.with_derived(point, "point"),
            **{key: record.get(key) for key in ("trial_id", "variant", "device", "seed")},
        }
        for record in records
        for point in store.read_metrics(record["trial_id"])
    ]
    return trials, _numeric(pd.DataFrame(points, columns=point_columns()), point_numbers())


def _numeric(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    frame[columns] = frame[columns].apply(pd.to_numeric, errors="coerce")
    return frame


def _open_store(run_dir: str | Path) -> RunStore:
    path = Path(run_dir)
    if not path.exists():
        raise ReportError(f"run directory {path} does not exist")
    if not path.is_dir():
        raise ReportError(f"{path} is not a run directory (it is a file)")
    return RunStore(path)


def _trial_row(record: dict[str, Any], lengths: list[str]) -> dict[str, Any]:
    """results.csv's row; `lengths` are the columns of --eval-lengths losses any trial of the run has."""
    record = metrics.with_derived(record)
    row = {key: record.get(key) for key in [*trial_columns(), *lengths]}
    row["changed"] = describe_changes(record.get("changed") or {}, record.get("tuned") or {})
    row["stage"] = record.get("stage") or "eval"  # tune-short, tune-full (choosing tuned values) or eval
    row["tuned"] = describe_changes(record.get("tuned") or {})
    row["concurrent"] = bool(record.get("concurrent", False))  # shared its machine with other trials
    # where `run --track` logged it: a tracker's link, or the path its run is kept at
    row["tracking"] = "; ".join(f"{name}: {where}" for name, where in (record.get("tracking") or {}).items())
    drift = record.get("drift") or {}  # none where the trial never trained, or its closing probe failed
    row.update({f"drift_{key}": drift.get(key) for key in ("before", "after", "change")})
    row["drift_flagged"] = bool(record.get("drift_flagged", False))
    if row["status"] == "running":
        row["error"] = row["error"] or "no final record: still running, or the sweep was killed"
    return row


def describe_changes(changed: dict[str, Any], tuned: dict[str, Any] | None = None) -> str:
    """`optimizer=adamw, lr=0.00375 (tuned)`: a trial's changes from the baseline with its tuned values in
    place of the variant's own (min_lr follows a tuned lr, so the variant's own min_lr is no change)."""
    tuned = tuned or {}
    kept = {k: v for k, v in changed.items() if k not in tuned and not (k == "min_lr" and "lr" in tuned)}
    texts = [f"{key}={value}" for key, value in kept.items()]
    return ", ".join([*texts, *(f"{key}={value:g} (tuned)" for key, value in tuned.items())])


def variant_order(trials: pd.DataFrame, sweep: dict[str, Any]) -> list[str]:
    """The sweep's order (as the user asked), then any other variant found; baseline first."""
    present = list(dict.fromkeys(trials["variant"]))
    names = list(dict.fromkeys([v for v in sweep.get("variants", []) if v in present] + present))
    return sorted(names, key=lambda name: name != BASELINE)


def summarize_variants(
    trials: pd.DataFrame, order: Sequence[str], speed: SpeedPhase | None = None, design: Design | None = None
) -> pd.DataFrame:
    """One row per variant and device: status counts, loss with 95% intervals, the difference from
    the baseline on the same device and its verdict (minigpt.decide, under `design`: the sweep's
    margins and looks), and the interleaved speed from `speed`."""
    design = design or Design()
    completed = trials[trials["status"] == "completed"]
    rows = []
    for device in dict.fromkeys(trials["device"]):
        baseline = completed[(completed["variant"] == BASELINE) & (completed["device"] == device)]
        groups = [trials[(trials["variant"] == variant) & (trials["device"] == device)] for variant in order]
        rows += _call_verdicts([_summary_row(group, baseline) for group in groups if not group.empty], design)
    columns = summary_columns()
    summary = pd.DataFrame(rows, columns=[c for c in columns if c not in SPEED_VALUES])
    measured = speed.frame if speed is not None else speed_frame([])
    return summary.merge(measured, on=["variant", "device"], how="left")[columns]


def _call_verdicts(rows: list[tuple[dict[str, Any], list[float]]], design: Design) -> list[dict[str, Any]]:
    """Each compared variant's verdict from its paired differences, its interval spending the error
    rate split over the variants compared on the device (and over the looks of --seeds auto)."""
    compared = sum(row["variant"] != BASELINE for row, _ in rows)  # as the runner counts them: every variant
    for row, differences in rows:
        decision = decide(differences, design.level(row["trials"], compared), design.margin, alpha=design.alpha)
        _fill_decision(row, decision if row["verdict"] is None else NO_DECISION)
    adjusted = holm([row["p_value"] for row, _ in rows])
    for (row, _), p_holm in zip(rows, adjusted, strict=True):
        row["p_holm"] = p_holm
    return [row for row, _ in rows]


def _fill_decision(row: dict[str, Any], decision: Decision) -> None:
    row.update(
        diff_vs_baseline=decision.mean, diff_low=decision.low, diff_high=decision.high, p_value=decision.p,
        p_adjusted=decision.p_adjusted, confidence=1 - decision.level, seeds=decision.n or row["completed"],
        detectable=decision.detectable, seeds_needed=decision.needed,
    )  # fmt: skip
    row["diff_pct"] = 100 * _ratio(decision.mean, row.pop("baseline_mean"))
    if row["verdict"] is None:
        row["verdict"] = decision.label(LOSS_LABELS)


def _summary_row(group: pd.DataFrame, baseline: pd.DataFrame) -> tuple[dict[str, Any], list[float]]:
    """The row (its verdict None where a test decides it) and the paired loss differences from the baseline."""
    done = group[group["status"] == "completed"]
    variant = group["variant"].iloc[0]
    is_baseline = variant == BASELINE
    differences = [] if is_baseline else paired_differences(by_seed(done), by_seed(baseline))
    counts = group["status"].value_counts()
    row = {
        "variant": variant,
        "device": group["device"].iloc[0],
        "trials": len(group),
        **{status: int(counts.get(status, 0)) for status in STATUSES},
        "precision": ", ".join(sorted(group["precision"].dropna().astype(str).unique())) or None,
        "baseline_mean": mean_interval(baseline["best_val_loss"]).mean,
        "verdict": _fixed_verdict(is_baseline, done, baseline),
        "changed": group["changed"].iloc[0],
        "description": group["description"].iloc[0],
    }
    for metric in metrics.TRIAL_METRICS:
        row.update(_aggregate(metric, group, done))
    return row, differences


def _aggregate(metric: metrics.Metric, group: pd.DataFrame, done: pd.DataFrame) -> dict[str, Any]:
    """A metric's summary.csv cells for one variant and device, as its declaration says."""
    if metric.aggregate == "max":
        return {metric.column: group[metric.name].max()}
    if metric.aggregate == "mean":
        return {metric.column: done[metric.name].mean()}
    if metric.aggregate != "interval":
        return {}
    interval = _nonnegative(mean_interval(done[metric.name]))
    cells = {metric.column: interval.mean, f"{metric.column}_low": interval.low, f"{metric.column}_high": interval.high}
    if metric.count_column:  # over the seeds that have a value, e.g. those that reached the target
        cells[metric.count_column] = f"{interval.n}/{len(done)}"
    return cells


def _nonnegative(interval: Interval) -> Interval:
    """Losses, rates and durations cannot be negative: a few noisy seeds can stretch a t interval
    below zero, and the part below zero says nothing, so it is cut there."""
    return replace(interval, low=max(interval.low, 0.0)) if math.isfinite(interval.low) else interval


def by_seed(trials: pd.DataFrame, column: str = "best_val_loss") -> dict[int, float]:
    """seed -> value of `column`, over the rows that have one."""
    kept = trials[trials[column].notna()]
    return dict(zip(kept["seed"].astype(int), kept[column].astype(float), strict=True))


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
    all_trials: pd.DataFrame | None = None  # every stage and size, where `trials` holds the evaluation of one size
    all_metrics: pd.DataFrame | None = None
    design: Design = Design()  # the margins and looks the verdicts were judged under
    floors: dict[str, Any] | None = None  # the corpus's unigram and bigram losses (minigpt.floors)
    floors_note: str | None = None  # why there are no floors, where they could not be had

    @property
    def devices(self) -> list[str]:
        return list(dict.fromkeys(self.trials["device"]))

    def shown_metrics(self, kind: metrics.Kind) -> list[metrics.Metric]:
        """The summary table's metric columns of `kind`, in declaration order."""
        return [m for m in metrics.summarized(kind) if m.in_report and m not in self.hidden_metrics()]

    def hidden_metrics(self) -> list[metrics.Metric]:
        """Report metrics left out because they equal the metric they are declared the same as, in every row."""
        hidden = []
        for metric in metrics.TRIAL_METRICS:
            if metric.in_report and metric.same_as:
                values, other = self.summary[metric.column], self.summary[metrics.find(metric.same_as).column]
                if not (values.notna() & (values != other)).any():
                    hidden.append(metric)
        return hidden

    def label(self, variant: str) -> str:
        return f"{variant} (reference)" if variant == BASELINE else variant

    def target_text(self) -> str:
        target = self.sweep.get("target_loss")
        return "(no target set)" if target is None else f"{target:g}"
