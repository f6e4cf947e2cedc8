"""Whether a variant's difference from the baseline grows or shrinks with model size: the trend of
the paired differences across a ladder's sizes, with an interval, and one sentence per variant.

The trend is the least-squares slope of every paired difference (variant minus baseline, same
seed and size) against log2 of the variant's parameters at that size: how much Δ moves per
doubling of parameters. Its interval is Student's t with n - 2 degrees of freedom on the
residual spread (the seeds' scatter about the line, pooled over sizes), at the confidence the
verdicts use: the error rate split evenly over the variants compared on the device (Bonferroni).
The gap (|Δ|) grows with size when the slope's interval excludes zero on the side of the mean
difference (Δ moves away from zero as the model grows: an advantage or a deficit widens), shrinks
when it excludes zero on the other side (Δ moves toward zero, and may cross it), and is steady
when the interval holds zero (no trend these seeds can tell).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from minigpt.decide import ALPHA, t_quantile
from minigpt.report.frames import RunReport, by_seed, summarize_variants
from minigpt.variants import BASELINE

GROWS, SHRINKS, STEADY = "grows", "shrinks", "steady"  # the gap |Δ| between variant and baseline, with size


@dataclass(frozen=True)
class Trend:
    slope: float  # nats of Δ per doubling of parameters
    low: float
    high: float
    intercept: float  # Δ at 1 parameter (log2 = 0): with the slope, the fitted line
    mean: float  # the mean of the paired differences fitted
    points: int  # paired differences fitted
    sizes: int
    confidence: float

    @property
    def gap(self) -> str:
        """GROWS, SHRINKS or STEADY: where the slope's interval lies against the mean difference's sign."""
        if self.low <= 0 <= self.high or self.mean == 0:
            return STEADY
        return GROWS if (self.slope > 0) == (self.mean > 0) else SHRINKS

    def at(self, params: float) -> float:
        return self.intercept + self.slope * math.log2(params)


def fit_trend(log2_params: list[float], differences: list[float], level: float) -> Trend | None:
    """The slope of `differences` against `log2_params` and its interval at confidence 1 - level;
    None without at least two sizes and one degree of freedom."""
    x, y = np.asarray(log2_params, dtype=float), np.asarray(differences, dtype=float)
    sizes = len(np.unique(x))
    if sizes < 2 or len(x) < 3:
        return None
    centred = x - x.mean()
    sxx = float(centred @ centred)
    slope = float(centred @ (y - y.mean())) / sxx
    intercept = float(y.mean() - slope * x.mean())
    residuals = y - (intercept + slope * x)
    spread = math.sqrt(float(residuals @ residuals) / (len(x) - 2))
    half = float(t_quantile(level, len(x) - 2)) * spread / math.sqrt(sxx)
    return Trend(slope, slope - half, slope + half, intercept, float(y.mean()), len(x), sizes, 1 - level)


def paired_points(evaluation: pd.DataFrame, variant: str, device: str) -> tuple[list[float], list[float]]:
    """(log2 of the variant's parameters, paired difference) for every size and seed both completed."""
    done = evaluation[(evaluation["status"] == "completed") & (evaluation["device"] == device)]
    xs, ys = [], []
    for _size, rows in done.groupby("size", sort=False):
        ours, theirs = rows[rows["variant"] == variant], rows[rows["variant"] == BASELINE]
        mine, base = by_seed(ours), by_seed(theirs)
        params = ours["params"].max()
        if not (pd.notna(params) and params > 0):
            continue
        for seed in sorted(mine.keys() & base.keys()):
            xs.append(math.log2(float(params)))
            ys.append(mine[seed] - base[seed])
    return xs, ys


def size_trends(evaluation: pd.DataFrame, order: list[str], alpha: float = ALPHA) -> dict[tuple[str, str], Trend]:
    """(variant, device) -> its trend, for every variant but the baseline with one."""
    trends = {}
    if "size" not in evaluation or evaluation["size"].dropna().nunique() < 2:
        return trends
    for device in dict.fromkeys(evaluation["device"]):
        variants = [v for v in order if v != BASELINE and (evaluation[evaluation["device"] == device]["variant"] == v).any()]  # fmt: skip
        for variant in variants:
            trend = fit_trend(*paired_points(evaluation, variant, device), alpha / max(1, len(variants)))
            if trend is not None:
                trends[(variant, device)] = trend
    return trends


def _signed(value: float) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:+.3f}"


def _size_cell(row: dict[str, Any]) -> str:
    interval = f" [{_signed(row['diff_low'])}, {_signed(row['diff_high'])}]" if math.isfinite(row["diff_low"]) else ""
    return f"{_signed(row['diff_vs_baseline'])}{interval} at {row['size']}"


def meaning(trend: Trend) -> str:
    """The trend in words, e.g. "the gap shrinks with size (Δ falls as the model grows: its deficit narrows)"."""
    if trend.gap == STEADY:
        return "the gap is steady: no trend with size that these seeds can tell"
    moves = "falls" if trend.slope < 0 else "rises"
    side = "advantage" if trend.mean < 0 else "deficit"
    change = "widens" if trend.gap == GROWS else "narrows"
    return f"the gap {trend.gap} with size (Δ {moves} as the model grows: its {side} {change})"


def trend_sentences(per_size: pd.DataFrame, trends: dict[tuple[str, str], Trend]) -> list[str]:
    """One sentence per variant and device: Δ at each size with its interval, then its trend."""
    sentences = []
    shown = per_size[per_size["variant"] != BASELINE]
    for (variant, device), rows in shown.groupby(["variant", "device"], sort=False):
        rows = rows.sort_values("params")
        text = f"{variant} on {device}, Δ vs the baseline: {'; '.join(_size_cell(r) for r in rows.to_dict('records'))}"
        trend = trends.get((variant, device))
        if trend is None:
            text += "; too few sizes or seeds for a trend."
        else:
            text += (
                f"; per doubling of parameters Δ moves {_signed(trend.slope)} nats [{_signed(trend.low)}, "
                f"{_signed(trend.high)}] ({100 * trend.confidence:.1f}% interval over {trend.points} paired "
                f"differences at {trend.sizes} sizes): {meaning(trend)}."
            )
        sentences.append(text)
    return sentences


def size_names(sweep: dict[str, Any]) -> list[str]:
    """The ladder's sizes in order, as sweep.json records them ("xs (n_layer=4, n_embd=128)" -> "xs")."""
    return [text.split(" ")[0] for text in (sweep.get("fair") or {}).get("sizes", [])]


def evaluation_trials(report: RunReport) -> pd.DataFrame:
    trials = report.all_trials if report.all_trials is not None else report.trials
    return trials[trials["stage"] == "eval"]


def per_size_summary(report: RunReport) -> pd.DataFrame:
    """summarize_variants() per size (the error rate split within each size and device), with the size and its parameters."""
    evaluation = evaluation_trials(report)
    frames = []
    ladder = size_names(report.sweep)
    sizes = sorted(evaluation["size"].dropna().unique(), key=lambda s: ladder.index(s) if s in ladder else len(ladder))
    for size in sizes or [None]:
        trials = evaluation if size is None else evaluation[evaluation["size"] == size]
        summary = summarize_variants(
            trials, [v for v in report.order if v in set(trials["variant"])], design=report.design
        )
        frames.append(summary.assign(size=size if isinstance(size, str) else "–"))
    return pd.concat(frames, ignore_index=True)


def size_findings(report: RunReport) -> list[tuple[str, Any]]:
    """The Findings' sentences on a size ladder (nothing for one size): every variant's Δ at each size
    and the trend of Δ with parameters."""
    evaluation = evaluation_trials(report)
    if evaluation["size"].dropna().nunique() < 2:
        return []
    trends = size_trends(evaluation, report.order, report.design.alpha)
    sentences = trend_sentences(per_size_summary(report), trends)
    if not sentences:
        return []
    intro = (
        f"Across the {evaluation['size'].dropna().nunique()} sizes, each variant's difference from the baseline "
        "(Δ, best validation loss, with the interval its verdict reads) and the slope of Δ against log2 "
        "parameters, fitted to the paired differences of every seed and size:"
    )
    return [("p", intro), *[("p", sentence) for sentence in sentences]]
