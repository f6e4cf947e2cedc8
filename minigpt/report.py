"""The report of a run: pandas frames from the store -> summary tables -> seaborn figures ->
report.md, a self-contained report.html, results.csv (one row per trial) and summary.csv
(one row per variant and device).

    from minigpt.report import write_report
    write_report("runs/default", "reports/default")  # returns reports/default/report.html

Every mean over seeds comes with a 95% Student's t interval. A variant is called better or
worse than the baseline only when the interval of its difference from the baseline (on the
same device) excludes zero; otherwise it reads "no clear difference".
"""

from __future__ import annotations

import base64
import html
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from minigpt import atomic
from minigpt.errors import UserError
from minigpt.store import RunStore
from minigpt.variants import BASELINE

STATUSES = ("completed", "failed", "diverged", "skipped", "interrupted", "running")
TRIAL_NUMBERS = (
    "seed", "params", "best_val_loss", "best_step", "final_val_loss", "steps", "tokens", "wall_seconds",
    "train_seconds", "eval_seconds", "tokens_per_sec", "step_ms_p50", "step_ms_p90", "peak_memory_mb",
    "flops_per_token", "mfu", "time_to_target_s", "target_loss",
)  # fmt: skip
TRIAL_COLUMNS = (
    "trial_id", "variant", "device", "device_name", "status", *TRIAL_NUMBERS, "stop_reason", "concurrent", "changed",
    "description", "error",
)  # fmt: skip
METRIC_NUMBERS = ("seed", "step", "tokens", "seconds", "train_loss", "val_loss", "lr", "tokens_per_sec")
METRIC_COLUMNS = ("trial_id", "variant", "device", *METRIC_NUMBERS)
SUMMARY_COLUMNS = (
    "variant", "device", "trials", *STATUSES, "params",
    "best_val_loss", "best_val_loss_low", "best_val_loss_high",
    "diff_vs_baseline", "diff_low", "diff_high", "diff_pct", "verdict",
    "tokens_per_sec", "tokens_per_sec_low", "tokens_per_sec_high", "speed_ratio", "step_ms_p50", "mfu",
    "time_to_target_s", "time_to_target_s_low", "time_to_target_s_high", "reached_target",
    "changed", "description",
)  # fmt: skip
BENCH_COLUMNS = ("variant", "device", "case", "median_ms", "mean_ms", "ratio")
NO_CLEAR_DIFFERENCE = "no clear difference"
BASELINE_COLOUR = (0.13, 0.13, 0.13)  # near-black: the reference line every colour is read against
DEVICE_LINESTYLES = ("-", "--", ":", "-.")
DEVICE_MARKERS = ("o", "s", "^", "D")
DPI = 100


class ReportError(UserError):
    """A run directory that cannot be reported on."""


# --- interval arithmetic -------------------------------------------------------------------

# t_{0.975} of Student's t for 1..30 degrees of freedom (the two-sided 95% quantile).
T_975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
Z_975 = 1.959963984540054


def t_quantile_975(df: float) -> float:
    """t_{0.975} with df degrees of freedom. A fractional df (Welch's) is rounded down, which
    widens the interval a little: the conservative side."""
    if df < 1:
        raise ValueError(f"Student's t needs at least 1 degree of freedom, got {df}")
    whole = int(df)
    if whole <= len(T_975):
        return T_975[whole - 1]
    # Cornish-Fisher expansion around the normal quantile: within 1e-5 of the exact value past 30.
    z = Z_975
    return (
        z
        + (z**3 + z) / (4 * whole)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * whole**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * whole**3)
    )


@dataclass(frozen=True)
class Interval:
    """A mean over n values and its 95% interval; low and high are NaN when n < 2."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0  # False for NaN bounds: no interval, no claim


NO_VALUES = Interval(math.nan, math.nan, math.nan, 0)


def _finite(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def mean_interval(values: Iterable[Any]) -> Interval:
    """Mean and 95% Student's t interval; None/NaN values are left out; one value, no interval."""
    data = _finite(values)
    if not data:
        return NO_VALUES
    mean = statistics.fmean(data)
    if len(data) < 2:
        return Interval(mean, math.nan, math.nan, 1)
    half = t_quantile_975(len(data) - 1) * statistics.stdev(data) / math.sqrt(len(data))
    return Interval(mean, mean - half, mean + half, len(data))


def difference_interval(variant: dict[int, float], baseline: dict[int, float]) -> Interval:
    """variant - baseline from values keyed by seed. When both ran the same seeds (two or more)
    the differences are paired by seed: a seed fixes the data order, so pairing removes the share
    of the spread both trials have in common. Otherwise Welch's interval for two means."""
    if not variant or not baseline:
        return NO_VALUES
    if variant.keys() == baseline.keys() and len(variant) >= 2:
        return mean_interval(variant[seed] - baseline[seed] for seed in variant)
    ours, theirs = list(variant.values()), list(baseline.values())
    mean = statistics.fmean(ours) - statistics.fmean(theirs)
    n = min(len(ours), len(theirs))
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    var_ours, var_theirs = statistics.variance(ours) / len(ours), statistics.variance(theirs) / len(theirs)
    spread = var_ours + var_theirs
    if spread == 0:
        return Interval(mean, mean, mean, n)
    df = spread**2 / (var_ours**2 / (len(ours) - 1) + var_theirs**2 / (len(theirs) - 1))
    half = t_quantile_975(df) * math.sqrt(spread)
    return Interval(mean, mean - half, mean + half, n)


def verdict(difference: Interval) -> str:
    """For a loss difference (lower is better): better or worse only when the interval excludes zero."""
    if not difference.excludes_zero:
        return NO_CLEAR_DIFFERENCE
    return "better" if difference.high < 0 else "worse"


# --- frames --------------------------------------------------------------------------------


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


def summarize(trials: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """One row per variant and device: status counts, loss and speed with 95% intervals, the
    difference from the baseline on the same device and its verdict."""
    completed = trials[trials["status"] == "completed"]
    rows = []
    for device in dict.fromkeys(trials["device"]):
        baseline = completed[(completed["variant"] == BASELINE) & (completed["device"] == device)]
        for variant in order:
            group = trials[(trials["variant"] == variant) & (trials["device"] == device)]
            if not group.empty:
                rows.append(_summary_row(group, baseline))
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def _summary_row(group: pd.DataFrame, baseline: pd.DataFrame) -> dict[str, Any]:
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
    return {
        "variant": variant,
        "device": group["device"].iloc[0],
        "trials": len(group),
        **{status: int(counts.get(status, 0)) for status in STATUSES},
        "params": group["params"].max(),
        "best_val_loss": loss.mean,
        "best_val_loss_low": loss.low,
        "best_val_loss_high": loss.high,
        "diff_vs_baseline": diff.mean,
        "diff_low": diff.low,
        "diff_high": diff.high,
        "diff_pct": 100 * _ratio(diff.mean, mean_interval(baseline["best_val_loss"]).mean),
        "verdict": _verdict_label(is_baseline, done, baseline, diff),
        "tokens_per_sec": speed.mean,
        "tokens_per_sec_low": speed.low,
        "tokens_per_sec_high": speed.high,
        "speed_ratio": _ratio(speed.mean, mean_interval(baseline["tokens_per_sec"]).mean),
        "step_ms_p50": done["step_ms_p50"].mean(),
        "mfu": done["mfu"].mean(),
        "time_to_target_s": reached.mean,  # over the seeds that reached the target
        "time_to_target_s_low": reached.low,
        "time_to_target_s_high": reached.high,
        "reached_target": f"{reached.n}/{len(done)}",
        "changed": group["changed"].iloc[0],
        "description": group["description"].iloc[0],
    }


def _positive(interval: Interval) -> Interval:
    """Rates and durations cannot be negative: a few noisy seeds can stretch a t interval below
    zero, and the part below zero says nothing, so it is cut there."""
    return replace(interval, low=max(interval.low, 0.0)) if math.isfinite(interval.low) else interval


def _by_seed(trials: pd.DataFrame) -> dict[int, float]:
    kept = trials[trials["best_val_loss"].notna()]
    return dict(zip(kept["seed"].astype(int), kept["best_val_loss"].astype(float), strict=True))


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator and math.isfinite(denominator) else math.nan


def _verdict_label(is_baseline: bool, done: pd.DataFrame, baseline: pd.DataFrame, diff: Interval) -> str:
    if is_baseline:
        return "reference"
    if done.empty:
        return "no completed trials"
    if baseline.empty:
        return "no baseline to compare"
    return verdict(diff)


def load_bench(run_dir: str | Path) -> tuple[pd.DataFrame | None, str | None]:
    """Micro-benchmarks from RUN_DIR/bench.json (pytest-benchmark's JSON), as (frame, note):
    median and mean ms per variant, device and case, and the ratio to the baseline's median."""
    path = Path(run_dir) / "bench.json"
    if not path.is_file():
        return None, None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return None, f"{path.name} could not be read ({error}); micro-benchmarks are left out"
    rows = [_bench_row(entry) for entry in raw.get("benchmarks", []) if isinstance(entry, dict)]
    frame = pd.DataFrame([row for row in rows if row], columns=list(BENCH_COLUMNS))
    if frame.empty:
        return None, f"{path.name} holds no benchmark tagged with a variant; micro-benchmarks are left out"
    frame = frame.drop_duplicates(["variant", "device", "case"], keep="last").reset_index(drop=True)
    base = frame[frame["variant"] == BASELINE].set_index(["device", "case"])["median_ms"]
    frame["ratio"] = [
        _ratio(ms, base.get((d, c), math.nan)) for ms, d, c in frame[["median_ms", "device", "case"]].values
    ]
    return frame, None


def _bench_row(entry: dict[str, Any]) -> dict[str, Any] | None:
    info = {**(entry.get("params") or {}), **(entry.get("extra_info") or {})}
    stats = entry.get("stats") or {}
    if info.get("variant") is None or stats.get("median") is None:
        return None
    return {
        "variant": str(info["variant"]),
        "device": str(info.get("device", "?")),
        "case": str(info.get("case") or entry.get("group") or entry.get("name")),
        "median_ms": 1000 * float(stats["median"]),  # pytest-benchmark records seconds
        "mean_ms": 1000 * float(stats.get("mean", math.nan)),
    }


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

    @property
    def devices(self) -> list[str]:
        return list(dict.fromkeys(self.trials["device"]))

    def label(self, variant: str) -> str:
        return f"{variant} (reference)" if variant == BASELINE else variant


def build(run_dir: str | Path) -> RunReport:
    trials, metrics = load_frames(run_dir)
    sweep = RunStore(run_dir).read_sweep()
    bench, bench_note = load_bench(run_dir)
    order = variant_order(trials, sweep)
    bench_names = [] if bench is None else [v for v in dict.fromkeys(bench["variant"]) if v not in order]
    name = Path(run_dir).resolve().name
    summary = summarize(trials, order)
    return RunReport(
        name, sweep, trials, metrics, summary, bench, bench_note, order, variant_palette(order + bench_names)
    )


# --- figures -------------------------------------------------------------------------------


def variant_palette(names: Sequence[str]) -> dict[str, Any]:
    """One colour per variant for every figure; the baseline is near-black, the reference."""
    import seaborn as sns

    others = [name for name in names if name != BASELINE]
    tab10 = [colour for index, colour in enumerate(sns.color_palette("tab10")) if index != 7]  # grey ~ baseline
    colours = tab10 if len(others) <= len(tab10) else sns.color_palette("husl", len(others))
    return {BASELINE: BASELINE_COLOUR, **dict(zip(others, colours, strict=False))}


def _figure(panels: int, width: float, height: float) -> tuple[Any, list[Any]]:
    """A figure outside pyplot (no global state, rendered by Agg when saved) in seaborn's style."""
    import seaborn as sns
    from matplotlib.figure import Figure

    with sns.axes_style("whitegrid"):
        figure = Figure(figsize=(width, height), layout="constrained")
        axes = figure.subplots(1, panels, squeeze=False)[0]
    return figure, list(axes)


def _save(figure: Any, path: Path) -> Path:
    with atomic.atomic_target(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    return path


def _errors(frame: pd.DataFrame, column: str) -> list[list[float]]:
    """Asymmetric error bar lengths for matplotlib; NaN (one seed) draws no bar."""
    mean = frame[column]
    return [list(mean - frame[f"{column}_low"]), list(frame[f"{column}_high"] - mean)]


def _band(values: Sequence[float]) -> tuple[float, float]:
    interval = mean_interval(values)
    return interval.low, interval.high


def plot_loss_curves(report: RunReport, path: Path) -> Path | None:
    import seaborn as sns

    completed = report.trials.loc[report.trials["status"] == "completed", "trial_id"]
    curves = report.metrics[report.metrics["val_loss"].notna() & report.metrics["trial_id"].isin(completed)].copy()
    if curves.empty:
        return None
    # Seeds share eval steps but not clocks: place each step at its mean time over seeds.
    curves["mean_seconds"] = curves.groupby(["variant", "device", "step"])["seconds"].transform("mean")
    figure, (by_step, by_time) = _figure(2, 12, 4.8)
    for (variant, device), curve in _in_order(curves, report):
        style = DEVICE_LINESTYLES[report.devices.index(device) % len(DEVICE_LINESTYLES)]
        label = report.label(variant) + (f" on {device}" if len(report.devices) > 1 else "")
        for ax, x in ((by_step, "step"), (by_time, "mean_seconds")):
            sns.lineplot(
                curve, x=x, y="val_loss", ax=ax, color=report.palette[variant], linestyle=style,
                linewidth=3.0 if variant == BASELINE else 1.6, errorbar=_band, label=label, legend=False,
            )  # fmt: skip
    by_step.set(title="Validation loss vs optimizer step", xlabel="optimizer step")
    by_time.set(title="Validation loss vs wall-clock time", xlabel="seconds since training started (mean over seeds)")
    for ax in (by_step, by_time):
        ax.set_ylabel("validation loss (nats per character)")
    by_time.legend(*by_step.get_legend_handles_labels(), fontsize="small")
    figure.suptitle(f"Validation loss: mean over seeds ({_seeds_text(report)}), band = 95% interval")
    return _save(figure, path)


def _in_order(frame: pd.DataFrame, report: RunReport) -> list[tuple[tuple[str, str], pd.DataFrame]]:
    groups = dict(list(frame.groupby(["variant", "device"], sort=False)))
    return [((v, d), groups[(v, d)]) for d in report.devices for v in report.order if (v, d) in groups]


def _seeds_text(report: RunReport) -> str:
    seeds = sorted(report.trials["seed"].dropna().astype(int).unique())
    return f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}"


def _device_panels(report: RunReport, column: str, height_per_row: float = 0.42) -> tuple[Any, list[Any], list]:
    """One panel per device holding variants with a value in `column`."""
    rows = report.summary[report.summary[column].notna()]
    devices = [d for d in report.devices if (rows["device"] == d).any()]
    if not devices:
        return None, [], []
    height = 1.8 + height_per_row * rows.groupby("device").size().max()
    figure, axes = _figure(len(devices), max(10.0, 5.5 * len(devices) + 1.5), height)
    return figure, axes, [(d, rows[rows["device"] == d].reset_index(drop=True)) for d in devices]


def _variant_axis(ax: Any, frame: pd.DataFrame, report: RunReport) -> None:
    ax.set_yticks(range(len(frame)), [report.label(v) for v in frame["variant"]])
    ax.set_ylim(len(frame) - 0.5, -0.5)  # first variant (the baseline) on top
    ax.set_ylabel("")


def _hbars(ax: Any, frame: pd.DataFrame, column: str, report: RunReport) -> None:
    """Horizontal bars in variant colours with 95% whiskers; the baseline hatched and drawn as a line."""
    bars = ax.barh(range(len(frame)), frame[column], color=[report.palette[v] for v in frame["variant"]], alpha=0.9)
    ax.errorbar(frame[column], range(len(frame)), xerr=_errors(frame, column), fmt="none", ecolor="black", capsize=4)
    for bar, variant in zip(bars, frame["variant"], strict=True):
        if variant == BASELINE:
            bar.set_hatch("//")
            bar.set_edgecolor("white")
            ax.axvline(bar.get_width(), color=BASELINE_COLOUR, linestyle="--", linewidth=1.2)
    _variant_axis(ax, frame, report)


def _notes(ax: Any, frame: pd.DataFrame, column: str, texts: list[str]) -> None:
    """A note right of each bar, past its whisker."""
    ends = frame[[column, f"{column}_high"]].max(axis=1).fillna(0)
    for index, (end, text) in enumerate(zip(ends, texts, strict=True)):
        ax.annotate(text, (end, index), xytext=(5, 0), textcoords="offset points", va="center", fontsize="small")


def plot_throughput(report: RunReport, path: Path) -> Path | None:
    figure, axes, panels = _device_panels(report, "tokens_per_sec")
    if figure is None:
        return None
    for ax, (device, frame) in zip(axes, panels, strict=True):
        _hbars(ax, frame, "tokens_per_sec", report)
        _notes(ax, frame, "tokens_per_sec", [f"x{r:.2f}" if math.isfinite(r) else "" for r in frame["speed_ratio"]])
        ax.set(title=f"on {device}", xlabel="training tokens per second (median step)")
        ax.margins(x=0.15)
    figure.suptitle("Throughput per variant: mean over seeds, 95% interval; x = ratio to the baseline")
    return _save(figure, path)


def plot_best_loss(report: RunReport, path: Path) -> Path | None:
    import seaborn as sns

    figure, axes, panels = _device_panels(report, "best_val_loss")
    if figure is None:
        return None
    done = report.trials[report.trials["status"] == "completed"]
    for ax, (device, frame) in zip(axes, panels, strict=True):
        seeds = done[(done["device"] == device) & done["variant"].isin(frame["variant"])]
        sns.stripplot(
            seeds.assign(label=seeds["variant"].map(report.label)), x="best_val_loss", y="label", hue="variant",
            order=[report.label(v) for v in frame["variant"]], palette=report.palette, ax=ax, legend=False,
            size=5, alpha=0.55, jitter=0.12,
        )  # fmt: skip
        for index, row in frame.iterrows():
            colour = report.palette[row["variant"]]
            xerr = [
                [row["best_val_loss"] - row["best_val_loss_low"]],
                [row["best_val_loss_high"] - row["best_val_loss"]],
            ]
            ax.errorbar(row["best_val_loss"], index, xerr=xerr, fmt="D", color=colour, ms=8, capsize=5, lw=2)
            ax.annotate(f"  {row['verdict']}", (row["best_val_loss"], index), xytext=(0, 9), textcoords="offset points", fontsize="small", color=colour)  # fmt: skip
            if row["variant"] == BASELINE:
                ax.axvline(row["best_val_loss"], color=BASELINE_COLOUR, linestyle="--", linewidth=1.2)
        _variant_axis(ax, frame, report)
        ax.set(title=f"on {device}", xlabel="best validation loss (lower is better)")
    figure.suptitle("Best validation loss: seeds as dots, mean and 95% interval as diamond and whiskers")
    return _save(figure, path)


def plot_speed_quality(report: RunReport, path: Path) -> Path | None:
    rows = report.summary[report.summary["tokens_per_sec"].notna() & report.summary["best_val_loss"].notna()]
    if rows.empty:
        return None
    figure, (ax,) = _figure(1, 9, 6)
    for _, row in rows.iterrows():
        variant, colour = row["variant"], report.palette[row["variant"]]
        marker = DEVICE_MARKERS[report.devices.index(row["device"]) % len(DEVICE_MARKERS)]
        ax.errorbar(
            row["tokens_per_sec"], row["best_val_loss"],
            xerr=[[row["tokens_per_sec"] - row["tokens_per_sec_low"]], [row["tokens_per_sec_high"] - row["tokens_per_sec"]]],
            yerr=[[row["best_val_loss"] - row["best_val_loss_low"]], [row["best_val_loss_high"] - row["best_val_loss"]]],
            fmt=marker, color=colour, ms=14 if variant == BASELINE else 9, mec="white" if variant == BASELINE else colour,
            elinewidth=1, capsize=3, alpha=0.9,
        )  # fmt: skip
        label = report.label(variant) + (f" on {row['device']}" if len(report.devices) > 1 else "")
        ax.annotate(label, (row["tokens_per_sec"], row["best_val_loss"]), xytext=(7, 5), textcoords="offset points", color=colour, fontsize="small")  # fmt: skip
    ax.set(
        title="Speed vs quality: one point per variant and device (better: right and lower)",
        xlabel="training tokens per second (mean over seeds)",
        ylabel="best validation loss (mean over seeds)",
    )
    ax.margins(0.12)
    return _save(figure, path)


def plot_time_to_target(report: RunReport, path: Path) -> Path | None:
    if report.summary["time_to_target_s"].notna().sum() == 0:
        return None
    figure, axes, panels = _device_panels(report, "best_val_loss")
    for ax, (device, frame) in zip(axes, panels, strict=True):
        _hbars(ax, frame, "time_to_target_s", report)
        reached = zip(frame["time_to_target_s"], frame["reached_target"], strict=True)
        _notes(ax, frame, "time_to_target_s", [f"{n} seeds" if math.isfinite(s) else "not reached" for s, n in reached])
        ax.set(title=f"on {device}", xlabel="seconds to reach the target (lower is better)")
        ax.margins(x=0.2)
    figure.suptitle(
        f"Time to validation loss {_target_text(report)}: mean over the seeds that reached it, 95% interval"
    )
    return _save(figure, path)


def _target_text(report: RunReport) -> str:
    target = report.sweep.get("target_loss", report.trials["target_loss"].max())
    return "(no target set)" if target is None or not math.isfinite(target) else f"{target:g}"


def plot_microbench(report: RunReport, path: Path) -> Path | None:
    import seaborn as sns

    if report.bench is None:
        return None
    devices = list(dict.fromkeys(report.bench["device"]))
    figure, axes = _figure(2 * len(devices), 7 * len(devices) + 5, 4.8)
    hue_order = [v for v in report.palette if (report.bench["variant"] == v).any()]
    for index, device in enumerate(devices):
        frame = report.bench[report.bench["device"] == device]
        for ax, column, label in (
            (axes[2 * index], "median_ms", "median ms per call"),
            (axes[2 * index + 1], "ratio", "ratio to the baseline (1 = same)"),
        ):
            sns.barplot(frame, x="case", y=column, hue="variant", hue_order=hue_order, palette=report.palette, saturation=1, ax=ax, legend=ax is axes[0])  # fmt: skip
            _hatch_baseline(ax)
            ax.set(title=f"{label} on {device}", xlabel="", ylabel=label)
        axes[2 * index + 1].axhline(1.0, color=BASELINE_COLOUR, linestyle="--", linewidth=1.2)
    figure.suptitle("Micro-benchmarks (pytest-benchmark): median time per case")
    return _save(figure, path)


def _hatch_baseline(ax: Any) -> None:
    """seaborn's bars carry no variant label, but the baseline's colour is its own."""
    for bar in ax.patches:
        if all(abs(a - b) < 0.01 for a, b in zip(bar.get_facecolor()[:3], BASELINE_COLOUR, strict=True)):
            bar.set_hatch("//")
            bar.set_edgecolor("white")


PLOTS = {
    "loss_curves.png": (
        plot_loss_curves,
        "Validation loss against optimizer steps and wall-clock seconds: the mean over seeds as a line, its 95% interval as a band.",
    ),
    "throughput.png": (
        plot_throughput,
        "Training throughput per variant on each device (bars: mean over seeds; whiskers: 95% interval; hatched bar and dashed line: the baseline).",
    ),
    "best_val_loss.png": (
        plot_best_loss,
        "Best validation loss per variant: each seed as a dot, the mean and its 95% interval, and the verdict against the baseline (dashed line).",
    ),
    "speed_vs_quality.png": (
        plot_speed_quality,
        "Speed against quality: tokens per second and best validation loss, one point per variant and device; right and lower is better.",
    ),
    "time_to_target.png": (
        plot_time_to_target,
        "Wall-clock seconds until the validation loss first reached the target, over the seeds that reached it.",
    ),
    "microbench.png": (
        plot_microbench,
        "Micro-benchmarks: median milliseconds per case and variant, and the ratio to the baseline.",
    ),
}


def write_figures(report: RunReport, out_dir: Path) -> list[tuple[str, str]]:
    """Write every figure the data allows as (file name, caption); stale ones from an earlier report go."""
    written = []
    for name, (plot, caption) in PLOTS.items():
        if plot(report, out_dir / name) is not None:
            written.append((name, caption))
        else:
            (out_dir / name).unlink(missing_ok=True)
    return written


# --- documents -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[str]]


Block = tuple[str, Any]  # ("h1" | "h2" | "p", text), ("table", Table), ("figure", (file name, caption))


def _number(value: Any, spec: str) -> str:
    return "–" if value is None or not math.isfinite(value) else format(value, spec)


def _with_interval(mean: float, low: float, high: float, spec: str) -> str:
    if not math.isfinite(low):
        return _number(mean, spec)
    return f"{_number(mean, spec)} [{_number(low, spec)}, {_number(high, spec)}]"


def summary_table(report: RunReport) -> Table:
    columns = [
        "variant", "device", "changes", "params", "completed", "best val loss [95%]", "Δ vs baseline [95%]",
        "Δ %", "verdict", "tokens/s [95%]", "speed vs baseline", "time to target s (seeds)",
    ]  # fmt: skip
    rows = [
        [
            report.label(row.variant), row.device, row.changed or "–", _number(row.params, ",.0f"),
            f"{row.completed}/{row.trials}",
            _with_interval(row.best_val_loss, row.best_val_loss_low, row.best_val_loss_high, ".4f"),
            _with_interval(row.diff_vs_baseline, row.diff_low, row.diff_high, "+.4f"), _number(row.diff_pct, "+.2f"),
            row.verdict,
            _with_interval(row.tokens_per_sec, row.tokens_per_sec_low, row.tokens_per_sec_high, ",.0f"),
            _number(row.speed_ratio, ".2f") + ("x" if math.isfinite(row.speed_ratio) else ""),
            f"{_number(row.time_to_target_s, '.1f')} ({row.reached_target})",
        ]
        for row in report.summary.itertuples()
    ]  # fmt: skip
    return Table(columns, rows)


def bench_table(bench: pd.DataFrame) -> Table:
    cases = list(dict.fromkeys(bench["case"]))
    rows = []
    for (variant, device), group in bench.groupby(["variant", "device"], sort=False):
        by_case = group.set_index("case")
        cells = [
            f"{by_case.at[case, 'median_ms']:.3f} ms (x{_number(by_case.at[case, 'ratio'], '.2f')})"
            if case in by_case.index
            else "–"
            for case in cases
        ]
        rows.append([variant, device, *cells])
    return Table(["variant", "device", *cases], rows)


def failures_table(trials: pd.DataFrame) -> Table:
    unfinished = trials[trials["status"] != "completed"]
    rows = [[row.trial_id, row.status, row.error or "no reason recorded"] for row in unfinished.itertuples()]
    return Table(["trial", "status", "reason"], rows)


def variants_table(report: RunReport) -> Table:
    first = report.trials.drop_duplicates("variant").set_index("variant")
    rows = [[v, first.at[v, "changed"] or "–", first.at[v, "description"] or ""] for v in report.order]
    return Table(["variant", "changes from the baseline", "description"], rows)


def overview(report: RunReport) -> str:
    sweep, trials = report.sweep, report.trials
    budget = ", ".join(f"{k}={v}" for k, v in (sweep.get("budget") or {}).items() if v is not None) or "unknown"
    env = sweep.get("environment") or {}
    seeds = ", ".join(str(s) for s in sorted(trials["seed"].dropna().astype(int).unique()))
    completed = int((trials["status"] == "completed").sum())
    return (
        f"{len(trials)} trials ({completed} completed): variants {', '.join(report.order)}; "
        f"devices {', '.join(report.devices)}; seeds {seeds}. Data: {sweep.get('data', 'unknown')}; "
        f"budget per trial: {budget}; target validation loss: {_target_text(report)}. "
        f"Software: minigpt-bench {env.get('minigpt_bench', '?')}, torch {env.get('torch', '?')}, "
        f"CPU {env.get('cpu', '?')}."
    )


def findings(report: RunReport) -> list[str]:
    """One sentence per device: which variants are better, worse or not clearly different."""
    sentences = []
    for device in report.devices:
        rows = report.summary[report.summary["device"] == device]
        scored = rows[rows["best_val_loss"].notna()]
        if scored.empty:
            sentences.append(f"On {device}: no trial completed, so there is nothing to compare.")
            continue
        parts = [
            f"{label}: {', '.join(rows.loc[rows['verdict'] == label, 'variant'])}"
            for label in ("better", "worse", NO_CLEAR_DIFFERENCE)
            if (rows["verdict"] == label).any()
        ]
        best = scored.loc[scored["best_val_loss"].idxmin()]
        fastest = scored.loc[scored["tokens_per_sec"].idxmax()]
        compared = "; ".join(parts) if parts else "no variant to compare with a completed baseline"
        sentences.append(
            f"On {device}, against the baseline: {compared}. Lowest best validation loss: {best['variant']} "
            f"({best['best_val_loss']:.4f}); fastest: {fastest['variant']} ({fastest['tokens_per_sec']:,.0f} tokens/s)."
        )
    shared = int(report.trials["concurrent"].sum())
    if shared:
        sentences.append(
            f"{shared} trial(s) ran beside other trials on one machine: their speed figures (tokens/s, "
            "step ms, MFU) are not comparable with the others'."
        )
    if report.summary["completed"].max() < 2:
        sentences.append(
            "With one seed per variant there are no intervals, so no difference is called; "
            "run several seeds (e.g. --seeds 0,1,2) to get them."
        )
    return sentences


READING = (
    "Δ is the variant's best validation loss minus the baseline's on the same device (negative: lower "
    "loss). A variant is called better or worse only when the 95% interval of Δ excludes zero; otherwise "
    "it reads 'no clear difference'. Intervals are Student's t over seeds; Δ pairs trials by seed when "
    "both ran the same seeds (two or more), and uses Welch's interval otherwise. Speed is tokens per "
    "second from the median step time, as a ratio to the baseline's."
)


def document(report: RunReport, figures: list[tuple[str, str]]) -> list[Block]:
    blocks: list[Block] = [("h1", f"minigpt-bench report: {report.name}"), ("p", overview(report))]
    blocks += [("h2", "Findings"), *[("p", sentence) for sentence in findings(report)]]
    blocks += [("h2", "Summary per variant and device"), ("table", summary_table(report)), ("p", READING)]
    if figures:
        blocks += [("h2", "Figures"), *[("figure", figure) for figure in figures]]
    if report.bench is not None:
        blocks += [("h2", "Micro-benchmarks"), ("table", bench_table(report.bench))]
    if report.bench_note:
        blocks.append(("p", report.bench_note))
    failures = failures_table(report.trials)
    blocks.append(("h2", "Trials that did not complete"))
    blocks.append(("table", failures) if failures.rows else ("p", f"All {len(report.trials)} trials completed."))
    blocks += [("h2", "Variants"), ("table", variants_table(report))]
    blocks.append(("p", "Every trial's numbers: results.csv. Per variant and device: summary.csv."))
    return blocks


MARKDOWN_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]|"})


def _md(text: str) -> str:
    """Plain text for Markdown: HTML-escaped (a code host renders entities) and markup escaped."""
    return html.escape(str(text), quote=False).translate(MARKDOWN_SPECIAL).replace("\n", " ")


def render_markdown(blocks: list[Block]) -> str:
    lines = []
    for kind, value in blocks:
        if kind == "h1":
            lines.append(f"# {_md(value)}")
        elif kind == "h2":
            lines.append(f"## {_md(value)}")
        elif kind == "p":
            lines.append(_md(value))
        elif kind == "figure":
            name, caption = value
            lines.append(f"![{_md(caption)}]({name})\n\n*{_md(caption)}*")
        else:
            rows = [value.columns, ["---"] * len(value.columns), *value.rows]
            lines.append("\n".join("| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows))
    return "\n\n".join(lines) + "\n"


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.55rem; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1.5rem 0; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9rem; }
"""
# The page may load nothing from anywhere: no scripts, no fonts, images only as data: URIs.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def render_html(blocks: list[Block], out_dir: Path) -> str:
    esc = html.escape
    body = []
    for kind, value in blocks:
        if kind in ("h1", "h2", "p"):
            body.append(f"<{kind}>{esc(value)}</{kind}>")
        elif kind == "figure":
            name, caption = value
            data = base64.b64encode((out_dir / name).read_bytes()).decode("ascii")
            body.append(
                f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{esc(caption)}</figcaption></figure>"
            )
        else:
            head = "".join(f"<th>{esc(c)}</th>" for c in value.columns)
            rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in value.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    title = esc(blocks[0][1])
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic.atomic_target(path) as tmp:
        frame.to_csv(tmp, index=False)


def default_report_dir(run_dir: str | Path) -> Path:
    """reports/NAME for runs/NAME."""
    return Path("reports") / Path(run_dir).resolve().name


def write_report(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write report.html, report.md, results.csv, summary.csv and the figures into out_dir;
    returns the path of report.html."""
    report = build(run_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(report.trials, out_dir / "results.csv")
    _write_csv(report.summary, out_dir / "summary.csv")
    blocks = document(report, write_figures(report, out_dir))
    atomic.write_text(out_dir / "report.md", render_markdown(blocks))
    atomic.write_text(out_dir / "report.html", render_html(blocks, out_dir))
    return out_dir / "report.html"
