"""The report's equal wall-clock view of a `run --equal-time` sweep (minigpt.equal_time): each
variant's timed speed ratio and tokens, and its difference from the baseline at equal time (the
evaluation trials, what the verdicts read), beside the same seeds trained again at the baseline's
tokens and at its total FLOPs (the `equal-tokens` and `equal-flops` trials)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from minigpt.report.document import Table
from minigpt.report.frames import RunReport
from minigpt.variants import BASELINE

Block = tuple[str, Any]

COMPARISON_NOTE = (
    "Each cell is the variant's mean best validation loss and, in brackets, its mean difference from the "
    "baseline's evaluation trial on the same seed. At equal tokens the variant trained the baseline's tokens; "
    "at equal FLOPs the tokens the baseline's total FLOPs buy at the variant's own FLOPs per token. Those trials "
    "stay outside the verdicts (results.csv marks their stage)."
)


def equal_time_blocks(report: RunReport) -> list[Block]:
    """The equal wall-clock section; none for a sweep without --equal-time."""
    equal = report.sweep.get("equal_time")
    if not equal:
        return []
    trials = report.all_trials if report.all_trials is not None else report.trials
    trials = trials[trials["status"] == "completed"]
    rows = []
    for key, measured in equal["cells"].items():
        if "skipped" in measured:
            continue
        size, device = cell_of(key)
        cell = trials[(trials["device"] == device) & ((trials["size"] == size) if size else trials["size"].isna())]
        rows += cell_rows(cell, measured, size)
    sentence = (
        f"Every variant trained the tokens the baseline trains in {equal['seconds']:g} s, times its speed ratio to "
        f"the baseline, timed in {equal['rounds']} interleaved rounds on its device before training (the budgets are "
        "tokens, so no trial was cut short by the clock). The verdicts above compare the variants at equal time."
    )
    columns = ["size", "device", "variant", "speed ratio", "tokens at equal time", "equal time", "equal tokens",
               "equal FLOPs"]  # fmt: skip
    return [("h2", "Equal wall-clock"), ("p", sentence), ("table", Table(columns, rows)), ("p", COMPARISON_NOTE)]


def cell_of(key: str) -> tuple[str | None, str]:
    """(size, device) of sweep.json's `equal_time` cell key (minigpt.equal_time.cell_key): `xs/cpu`, or `cpu`."""
    size, _, device = key.rpartition("/")
    return size or None, device


def cell_rows(cell: pd.DataFrame, measured: dict[str, Any], size: str | None) -> list[list[str]]:
    """One row per timed variant of one size and device."""
    base = cell[(cell["variant"] == BASELINE) & (cell["stage"] == "eval")].set_index("seed")["best_val_loss"]
    rows = []
    for name, row in measured["variants"].items():
        where = [size or "–", cell_device(cell), name]
        if "speed_ratio" not in row:
            rows.append([*where, f"not timed: {row.get('error', '')}", "", "", "", ""])
            continue
        ratio = f"{row['speed_ratio']:.3f} [{row['speed_ratio_low']:.3f}, {row['speed_ratio_high']:.3f}]"
        mine = cell[cell["variant"] == name]
        evaluation = mine[mine["stage"] == "eval"]
        tokens = f"{int(evaluation['tokens'].mean()):,}" if len(evaluation) else "–"
        losses = [stage_cell(mine, stage, base, name == BASELINE) for stage in ("eval", "equal-tokens", "equal-flops")]
        rows.append([*where, ratio, tokens, *losses])
    return rows


def stage_cell(trials: pd.DataFrame, stage: str, baseline: pd.Series, is_baseline: bool) -> str:
    """`1.9357 (+0.0180)`: the mean best loss of a variant's trials of one stage, and its mean
    paired difference from the baseline's evaluation trials; the baseline's own loss as the reference."""
    losses = trials[trials["stage"] == stage].set_index("seed")["best_val_loss"]
    if is_baseline:
        return f"{losses.mean():.4f} (reference)" if stage == "eval" and len(losses) else ""
    paired = [seed for seed in losses.index if seed in baseline.index]
    if not paired:
        return "–"
    return f"{losses.mean():.4f} ({np.mean([losses[s] - baseline[s] for s in paired]):+.4f})"


def cell_device(cell: pd.DataFrame) -> str:
    return str(cell["device"].iloc[0]) if len(cell) else "–"
