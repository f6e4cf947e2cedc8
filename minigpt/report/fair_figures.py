"""The figures of the fair-comparison sections (minigpt.report.fair): each variant's difference from
the baseline against parameters, and validation loss against training FLOPs, every size its own
line style."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from minigpt import metrics
from minigpt.report.fair import flops_kind, flops_per_token
from minigpt.report.figures import add_bits_axis, new_figure, save_figure
from minigpt.report.frames import RunReport
from minigpt.report.size_gaps import Trend, evaluation_trials, size_names
from minigpt.variants import BASELINE

SIZE_LINESTYLES = ("-", "--", "-.", ":")
SIZE_MARKERS = ("o", "s", "^", "D", "v", "P")

DIFF_CAPTION = (
    "Best validation loss minus the baseline's at the same size, against the variant's parameter count "
    "(mean over evaluation seeds and the interval its verdict reads; below zero is better; bits per character on the right). "
    "Dashed: each variant's trend, the least-squares line through its paired differences against log2 parameters."
)
FLOPS_CAPTION = (
    "Validation loss against training FLOPs (total FLOPs per token x tokens: the model's, the attention square "
    "as computed, normalizations and the optimizer's step; model FLOPs for runs recorded before), the mean over "
    "evaluation seeds at each evaluation (marked) per variant and size, each size its own line style and marker: "
    "at equal compute, the lower curve is better (bits per character on the right)."
)


def plot_difference_vs_params(
    summary: pd.DataFrame, path: Path, report: RunReport, trends: dict[tuple[str, str], Trend] | None = None
) -> Path | None:
    shown = summary[(summary["variant"] != BASELINE) & summary["diff_vs_baseline"].notna()]
    if shown.empty:
        return None
    figure, (ax,) = new_figure(1, 7.5, 4.2)
    for (variant, _device), rows in shown.groupby(["variant", "device"], sort=False):
        rows = rows.sort_values("params")
        errors = [list((rows["diff_vs_baseline"] - rows["diff_low"]).fillna(0)), list((rows["diff_high"] - rows["diff_vs_baseline"]).fillna(0))]  # fmt: skip
        ax.errorbar(rows["params"], rows["diff_vs_baseline"], yerr=errors, marker="o", capsize=3,
                    color=report.palette.get(variant), label=variant)  # fmt: skip
        trend = (trends or {}).get((variant, _device))
        if trend is not None:
            ends = [rows["params"].min(), rows["params"].max()]
            ax.plot(ends, [trend.at(p) for p in ends], linestyle="--", color=report.palette.get(variant), linewidth=1)
    ax.axhline(0, color="black", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("Δ best val loss vs baseline (nats/char)")
    ax.secondary_yaxis("right", functions=(metrics.bits, metrics.nats)).set_ylabel("Δ bits per character")
    ax.legend(fontsize="small")
    return save_figure(figure, path)


def plot_loss_vs_flops(report: RunReport, path: Path) -> Path | None:
    points = report.all_metrics if report.all_metrics is not None else report.metrics
    evaluation = evaluation_trials(report)
    curves = points[points["val_loss"].notna() & points["trial_id"].isin(evaluation["trial_id"])]
    if curves.empty:
        return None
    per_trial = evaluation.set_index("trial_id")[["size"]].assign(per_token=flops_per_token(evaluation).values)
    curves = curves.join(per_trial, on="trial_id")
    curves = curves.assign(flops=curves["tokens"] * curves["per_token"])
    sizes = size_names(report.sweep) or list(dict.fromkeys(s for s in evaluation["size"] if isinstance(s, str)))
    figure, (ax,) = new_figure(1, 7.5, 4.2)
    for (variant, size), rows in curves.groupby(["variant", "size"], sort=False, dropna=False):
        mean = rows.groupby("flops")["val_loss"].mean()
        label = variant if not isinstance(size, str) else f"{variant} {size}"
        rung = sizes.index(size) if size in sizes else 0  # each size its own line style and marker
        ax.plot(mean.index, mean.values, color=report.palette.get(variant), label=label, linewidth=1.2,
                linestyle=SIZE_LINESTYLES[rung % len(SIZE_LINESTYLES)], marker=SIZE_MARKERS[rung % len(SIZE_MARKERS)],
                markersize=4)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel(f"training FLOPs ({flops_kind(evaluation)})")
    ax.set_ylabel("validation loss (nats/char)")
    add_bits_axis(ax, "y")
    ax.legend(fontsize="x-small", ncol=2)
    return save_figure(figure, path)
