"""The report's equal wall-clock view of a `run --equal-time` sweep (minigpt.equal_time): each
variant's timed speed ratio and tokens, and its difference from the baseline at equal time (what
its trials trained for), beside the same pairs read at equal tokens and at equal total FLOPs from
the validation curves."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from minigpt.report.document import Table
from minigpt.report.frames import RunReport
from minigpt.variants import BASELINE

Block = tuple[str, Any]

CURVE_CAVEAT = (
    "Equal tokens and equal FLOPs pair each seed's two trials at the shorter one's end: the longer trial's "
    "validation curve is read there (its best so far, interpolated between evaluations), in the middle of its "
    "learning-rate schedule, which favours the shorter trial; equal time is the comparison the trials trained for."
)


def equal_time_blocks(report: RunReport) -> list[Block]:
    """The equal wall-clock section; none for a sweep without --equal-time."""
    equal = report.sweep.get("equal_time")
    if not equal:
        return []
    trials = report.all_trials if report.all_trials is not None else report.trials
    trials = trials[(trials["stage"] == "eval") & (trials["status"] == "completed")]
    points = report.all_metrics if report.all_metrics is not None else report.metrics
    rows = []
    for key, measured in equal["cells"].items():
        if "skipped" in measured:
            continue
        size, device = key.split("/") if "/" in key else (None, key)
        cell = trials[(trials["device"] == device) & ((trials["size"] == size) if size else trials["size"].isna())]
        rows += cell_rows(cell, points, measured, size)
    sentence = (
        f"Every variant trained the tokens the baseline trains in {equal['seconds']:g} s, times its speed ratio to "
        f"the baseline, timed in {equal['rounds']} interleaved rounds on its device before training (the budgets are "
        "tokens, so no trial was cut short by the clock). The verdicts above compare the variants at equal time; "
        "Δ is the mean over seeds of the variant's loss minus the baseline's on the same seed."
    )
    columns = ["size", "device", "variant", "speed ratio", "tokens", "Δ at equal time", "Δ at equal tokens",
               "Δ at equal FLOPs"]  # fmt: skip
    return [("h2", "Equal wall-clock"), ("p", sentence), ("table", Table(columns, rows)), ("p", CURVE_CAVEAT)]


def cell_rows(cell: pd.DataFrame, points: pd.DataFrame, measured: dict[str, Any], size: str | None) -> list[list[str]]:
    """One row per timed variant of one size and device."""
    base = cell[cell["variant"] == BASELINE].set_index("seed")
    rows = []
    for name, row in measured["variants"].items():
        if "speed_ratio" not in row:
            rows.append([size or "–", cell_device(cell), name, f"not timed: {row.get('error', '')}", "", "", "", ""])
            continue
        mine = cell[cell["variant"] == name].set_index("seed")
        seeds = [seed for seed in mine.index if seed in base.index]
        ratio = f"{row['speed_ratio']:.3f} [{row['speed_ratio_low']:.3f}, {row['speed_ratio_high']:.3f}]"
        tokens = f"{int(mine['tokens'].mean()):,}" if len(mine) else "–"
        if name == BASELINE or not seeds:
            rows.append([size or "–", cell_device(cell), name, ratio, tokens, "reference" if seeds else "–", "", ""])
            continue
        pairs = [(mine.loc[seed], base.loc[seed]) for seed in seeds]
        rows.append([
            size or "–", cell_device(cell), name, ratio, tokens,
            _mean([v["best_val_loss"] - b["best_val_loss"] for v, b in pairs]),
            _mean([paired_at(v, b, points, "tokens") for v, b in pairs]),
            _mean([paired_at(v, b, points, "total_flops") for v, b in pairs]),
        ])  # fmt: skip
    return rows


def cell_device(cell: pd.DataFrame) -> str:
    return str(cell["device"].iloc[0]) if len(cell) else "–"


def paired_at(variant: pd.Series, baseline: pd.Series, points: pd.DataFrame, cost: str) -> float:
    """The variant's best validation loss minus the baseline's, both read at the smaller of the two
    trials' totals of `cost` (tokens, or total FLOPs: tokens times total FLOPs per token)."""

    def per_token(trial: pd.Series) -> float:
        return 1.0 if cost == "tokens" else float(trial["total_flops_per_token"])

    reach = min(variant["tokens"] * per_token(variant), baseline["tokens"] * per_token(baseline))
    return best_at(points, variant, reach / per_token(variant)) - best_at(points, baseline, reach / per_token(baseline))


def best_at(points: pd.DataFrame, trial: pd.Series, tokens: float) -> float:
    """A trial's best validation loss after `tokens`, interpolated between its evaluations."""
    curve = points[(points["trial_id"] == trial["trial_id"]) & points["val_loss"].notna()].sort_values("tokens")
    best = np.minimum.accumulate(curve["val_loss"].to_numpy())
    return float(np.interp(tokens, curve["tokens"].to_numpy(), best))


def _mean(values: list[float]) -> str:
    return f"{np.mean(values):+.4f}" if values else "–"
