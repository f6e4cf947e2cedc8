"""Seaborn figures of a report: loss curves, throughput, best loss, speed vs quality, time to target."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from minigpt import atomic, metrics
from minigpt.report.frames import RunReport
from minigpt.stats import mean_interval
from minigpt.variants import BASELINE

BASELINE_COLOUR = (0.13, 0.13, 0.13)  # near-black: the reference line every colour is read against
DEVICE_LINESTYLES = ("-", "--", ":", "-.")
DEVICE_MARKERS = ("o", "s", "^", "D")
DPI = 100


def variant_palette(names: Sequence[str]) -> dict[str, Any]:
    """One colour per variant for every figure; the baseline is near-black, the reference."""
    import seaborn as sns

    others = [name for name in names if name != BASELINE]
    tab10 = [colour for index, colour in enumerate(sns.color_palette("tab10")) if index != 7]  # grey ~ baseline
    colours = tab10 if len(others) <= len(tab10) else sns.color_palette("husl", len(others))
    return {BASELINE: BASELINE_COLOUR, **dict(zip(others, colours, strict=False))}


def new_figure(panels: int, width: float, height: float) -> tuple[Any, list[Any]]:
    """A figure outside pyplot (no global state, rendered by Agg when saved) in seaborn's style."""
    import seaborn as sns
    from matplotlib.figure import Figure

    with sns.axes_style("whitegrid"):
        figure = Figure(figsize=(width, height), layout="constrained")
        axes = figure.subplots(1, panels, squeeze=False)[0]
    return figure, list(axes)


def save_figure(figure: Any, path: Path) -> Path:
    """`figure` as a PNG at `path`, written atomically; returns `path`."""
    with atomic.atomic_target(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    return path


def _errors(frame: pd.DataFrame, column: str) -> list[list[float]]:
    """Asymmetric error bar lengths for matplotlib; NaN (one seed) draws no bar."""
    mean = frame[column]
    return [list(mean - frame[f"{column}_low"]), list(frame[f"{column}_high"] - mean)]


def add_bits_axis(ax: Any, which: str) -> None:
    """A second scale beside an axis of validation loss (nats per character): bits per character."""
    if which == "y":
        ax.secondary_yaxis("right", functions=(metrics.bits, metrics.nats)).set_ylabel("bits per character")
    else:
        ax.secondary_xaxis("top", functions=(metrics.bits, metrics.nats)).set_xlabel("bits per character")


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
    figure, (by_step, by_time) = new_figure(2, 12, 4.8)
    for (variant, device), curve in _in_order(curves, report):
        style = DEVICE_LINESTYLES[report.devices.index(device) % len(DEVICE_LINESTYLES)]
        label = report.label(variant) + (f" on {device}" if len(report.devices) > 1 else "")
        for ax, x in ((by_step, "step"), (by_time, "mean_seconds")):
            sns.lineplot(
                curve, x=x, y="val_loss", ax=ax, color=report.palette[variant], linestyle=style,
                linewidth=3.0 if variant == BASELINE else 1.6, errorbar=_band, label=label, legend=False,
                marker="o", markersize=3,  # each evaluation marked: a curve of one point still shows
            )  # fmt: skip
    by_step.set(title="Validation loss vs optimizer step", xlabel="optimizer step")
    by_time.set(title="Validation loss vs wall-clock time", xlabel="seconds since training started (mean over seeds)")
    for ax in (by_step, by_time):
        ax.set_ylabel("validation loss (nats per character)")
        add_bits_axis(ax, "y")
    by_time.legend(*by_step.get_legend_handles_labels(), fontsize="small")
    figure.suptitle(f"Validation loss: mean over seeds ({_seeds_text(report)}), band = 95% interval")
    return save_figure(figure, path)


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
    figure, axes = new_figure(len(devices), max(10.0, 5.5 * len(devices) + 1.5), height)
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
    """The interleaved speed ratios: only they compare variants (training-time tokens/s come from
    trials minutes apart on a drifting machine)."""
    figure, axes, panels = _device_panels(report, "speed_ratio")
    if figure is None:
        return None
    for ax, (device, frame) in zip(axes, panels, strict=True):
        for index, row in frame.iterrows():
            colour = report.palette[row["variant"]]
            ax.errorbar(row["speed_ratio"], index, xerr=_errors(frame.loc[[index]], "speed_ratio"), fmt="D", color=colour, ms=8, capsize=5, lw=2)  # fmt: skip
            if row["variant"] != BASELINE:
                ax.annotate(f"  {row['speed_ratio']:.2f}x {row['speed_verdict']}", (row["speed_ratio"], index), xytext=(0, 9), textcoords="offset points", fontsize="small", color=colour)  # fmt: skip
        ax.axvline(1.0, color=BASELINE_COLOUR, linestyle="--", linewidth=1.2)
        _variant_axis(ax, frame, report)
        ax.set(title=f"on {device}", xlabel="tokens/s relative to the baseline (> 1 is faster)")
        ax.margins(x=0.25)
    figure.suptitle(f"Speed vs the baseline, measured interleaved{_rounds_text(report)}: ratio and 95% interval")
    return save_figure(figure, path)


def _rounds_text(report: RunReport) -> str:
    rounds = report.speed.rounds if report.speed is not None else None
    return f" in {rounds} rounds" if rounds else ""


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
            if row["variant"] == BASELINE:
                ax.axvline(row["best_val_loss"], color=BASELINE_COLOUR, linestyle="--", linewidth=1.2)
        _variant_axis(ax, frame, report)
        ax.set(title=f"on {device}", xlabel="best validation loss, nats per character (lower is better)")
        add_bits_axis(ax, "x")
    figure.suptitle("Best validation loss: seeds as dots, mean and 95% interval as diamond and whiskers")
    return save_figure(figure, path)


VERDICT_COLOURS = {"better": "#1a7f37", "worse": "#c62828", "equivalent": "#1f5fa8", "undecided": "#b26b00"}


def plot_loss_difference(report: RunReport, path: Path) -> Path | None:
    """A forest plot: each variant's mean paired difference from the baseline with the interval its
    verdict reads, the equivalence band of the margin shaded, the verdict written beside it."""
    rows = report.summary[(report.summary["variant"] != BASELINE) & report.summary["diff_vs_baseline"].notna()]
    devices = [d for d in report.devices if (rows["device"] == d).any()]
    if not devices:
        return None
    height = 1.8 + 0.42 * rows.groupby("device").size().max()
    figure, axes = new_figure(len(devices), max(10.0, 5.5 * len(devices) + 1.5), height)
    margin = report.design.margin
    for ax, device in zip(axes, devices, strict=True):
        frame = rows[rows["device"] == device].sort_values("diff_vs_baseline").reset_index(drop=True)
        ax.axvspan(-margin, margin, color=VERDICT_COLOURS["equivalent"], alpha=0.12, lw=0)
        ax.axvline(0.0, color=BASELINE_COLOUR, linestyle="--", linewidth=1.2)
        for index, row in frame.iterrows():
            colour = report.palette[row["variant"]]
            xerr = [[row["diff_vs_baseline"] - row["diff_low"]], [row["diff_high"] - row["diff_vs_baseline"]]]
            ax.errorbar(row["diff_vs_baseline"], index, xerr=xerr, fmt="D", color=colour, ms=7, capsize=5, lw=2)
            end = row["diff_high"] if math.isfinite(row["diff_high"]) else row["diff_vs_baseline"]
            ax.annotate(f"  {row['verdict']} ({int(row['seeds'])} seeds)", (end, index), va="center",
                        fontsize="small", color=VERDICT_COLOURS.get(row["verdict"], BASELINE_COLOUR))  # fmt: skip
        _variant_axis(ax, frame, report)
        ax.set(title=f"on {device}", xlabel="best validation loss minus the baseline's, nats per character")
        ax.margins(x=0.3)
        add_bits_axis(ax, "x")
    figure.suptitle(
        f"Loss vs the baseline, paired by seed: mean and the interval each verdict reads; "
        f"shaded: equivalent within ±{margin:g} nats"
    )
    return save_figure(figure, path)


def plot_speed_quality(report: RunReport, path: Path) -> Path | None:
    rows = report.summary[report.summary["speed_ratio"].notna() & report.summary["best_val_loss"].notna()]
    if rows.empty:
        return None
    figure, (ax,) = new_figure(1, 9, 6)
    for _, row in rows.iterrows():
        variant, colour = row["variant"], report.palette[row["variant"]]
        marker = DEVICE_MARKERS[report.devices.index(row["device"]) % len(DEVICE_MARKERS)]
        ax.errorbar(
            row["speed_ratio"], row["best_val_loss"],
            xerr=[[row["speed_ratio"] - row["speed_ratio_low"]], [row["speed_ratio_high"] - row["speed_ratio"]]],
            yerr=[[row["best_val_loss"] - row["best_val_loss_low"]], [row["best_val_loss_high"] - row["best_val_loss"]]],
            fmt=marker, color=colour, ms=14 if variant == BASELINE else 9, mec="white" if variant == BASELINE else colour,
            elinewidth=1, capsize=3, alpha=0.9,
        )  # fmt: skip
        label = report.label(variant) + (f" on {row['device']}" if len(report.devices) > 1 else "")
        ax.annotate(label, (row["speed_ratio"], row["best_val_loss"]), xytext=(7, 5), textcoords="offset points", color=colour, fontsize="small")  # fmt: skip
    ax.set(
        title="Speed vs quality: one point per variant and device (better: right and lower)",
        xlabel="tokens/s relative to the baseline, measured interleaved (> 1 is faster)",
        ylabel="best validation loss, nats per character (mean over seeds)",
    )
    add_bits_axis(ax, "y")
    ax.axvline(1.0, color=BASELINE_COLOUR, linestyle="--", linewidth=1.2)
    ax.margins(0.12)
    return save_figure(figure, path)


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
        f"Time to validation loss {report.target_text()}: mean over the seeds that reached it, 95% interval"
    )
    return save_figure(figure, path)


def plot_microbench(report: RunReport, path: Path) -> Path | None:
    import seaborn as sns

    if report.bench is None:
        return None
    devices = list(dict.fromkeys(report.bench["device"]))
    figure, axes = new_figure(2 * len(devices), 7 * len(devices) + 5, 4.8)
    hue_order = [v for v in report.palette if (report.bench["variant"] == v).any()]
    for index, device in enumerate(devices):
        frame = report.bench[report.bench["device"] == device]
        for ax, column, label in (
            (axes[2 * index], "median_ms", "median ms per call"),
            (axes[2 * index + 1], "speed_ratio", "speed relative to the baseline (> 1 is faster)"),
        ):
            sns.barplot(frame, x="case", y=column, hue="variant", hue_order=hue_order, palette=report.palette, saturation=1, ax=ax, legend=ax is axes[0])  # fmt: skip
            _hatch_baseline(ax)
            ax.set(title=f"{label} on {device}", xlabel="", ylabel=label)
        axes[2 * index + 1].axhline(1.0, color=BASELINE_COLOUR, linestyle="--", linewidth=1.2)
    figure.suptitle("Micro-benchmarks (pytest-benchmark, interleaved rounds): median time and paired speed per case")
    return save_figure(figure, path)


def _hatch_baseline(ax: Any) -> None:
    """seaborn's bars carry no variant label, but the baseline's colour is its own."""
    for bar in ax.patches:
        if all(abs(a - b) < 0.01 for a, b in zip(bar.get_facecolor()[:3], BASELINE_COLOUR, strict=True)):
            bar.set_hatch("//")
            bar.set_edgecolor("white")


PLOTS = {
    "loss_curves.png": (
        plot_loss_curves,
        "Validation loss against optimizer steps and wall-clock seconds: the mean over seeds as a line, its 95% interval as a band (nats per character on the left axis, bits per character on the right).",
    ),
    "throughput.png": (
        plot_throughput,
        "Speed per variant on each device: its tokens/s over the baseline's, paired within each round of the interleaved speed phase (diamond: ratio; whiskers: 95% interval over rounds; dashed line: the baseline).",
    ),
    "loss_difference.png": (
        plot_loss_difference,
        "The verdicts: each variant's best validation loss minus the baseline's, paired by seed (diamond: mean; whiskers: the interval the verdict reads, adjusted for the variants and looks; shaded: the equivalence margin; dashed: no difference), sorted best first.",
    ),
    "best_val_loss.png": (
        plot_best_loss,
        "Best validation loss per variant: each seed as a dot, the mean and its own 95% interval (the baseline dashed). Seeds share data order, so the verdicts come from the paired differences above, not from these intervals overlapping; nats per character below, bits per character above.",
    ),
    "speed_vs_quality.png": (
        plot_speed_quality,
        "Speed against quality: the interleaved speed ratio to the baseline and the best validation loss (bits per character on the right axis), one point per variant and device; right and lower is better.",
    ),
    "time_to_target.png": (
        plot_time_to_target,
        "Wall-clock seconds until the validation loss first reached the target, over the seeds that reached it.",
    ),
    "microbench.png": (
        plot_microbench,
        "Micro-benchmarks: median milliseconds per case and variant, and the speed relative to the baseline "
        "(> 1 is faster), paired within interleaved rounds.",
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
