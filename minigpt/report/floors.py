"""The floors in a report's Findings: the corpus's unigram and bigram losses beside the baseline's,
and warnings where a trial's budget, or tuning's quarter budget, left too little room above them
to read a verdict or rank a grid (minigpt.floors says what "clearly" means)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from minigpt import metrics
from minigpt.floors import CLEAR_FRACTION, clear_margin
from minigpt.report.frames import RunReport
from minigpt.variants import BASELINE

Block = tuple[str, Any]


def floor_blocks(report: RunReport) -> list[Block]:
    """The floors sentence and any warnings; one sentence saying why where the floors are unknown."""
    if report.floors is None:
        return [("p", f"The corpus's floors are not stated: {report.floors_note}.")] if report.floors_note else []
    trials = report.all_trials if report.all_trials is not None else report.trials
    done = trials[(trials["status"] == "completed") & trials["best_val_loss"].notna()]
    done = done.sort_values("params", kind="stable")  # sizes smallest first
    evaluation = done[done["stage"] == "eval"]
    sentences = [floors_sentence(report.floors, evaluation)]
    sentences += budget_warning(report.floors, evaluation)
    sentences += tuning_warning(report.floors, done[done["stage"] == "tune-short"])
    return [("p", sentence) for sentence in sentences if sentence]


def _nats(value: float) -> str:
    return f"{value:.3f} nats/char ({metrics.bits(value):.3f} bits)"


def _where(size: Any, device: str, devices: int) -> str:
    parts = [f"at {size}" if isinstance(size, str) and size else "", f"on {device}" if devices > 1 else ""]
    return " ".join(p for p in parts if p)


def floors_sentence(floors: dict[str, Any], evaluation: pd.DataFrame) -> str:
    text = (
        f"Floors of this corpus, counted on the training split with {floors.get('smoothing', 'add-one')} "
        f"smoothing and scored on the validation split: a unigram predictor scores {_nats(floors['unigram'])}, "
        f"a bigram {_nats(floors['bigram'])}."
    )
    baseline = evaluation[evaluation["variant"] == BASELINE]
    if baseline.empty:
        return text
    devices = baseline["device"].nunique()
    parts = [
        f"{rows['best_val_loss'].mean():.3f} {_where(size, device, devices)}".rstrip()
        + f" ({_from_bigram(rows['best_val_loss'].mean(), floors)})"
        for (size, device), rows in baseline.groupby(["size", "device"], sort=False, dropna=False)
    ]
    return text + f" The baseline's best validation loss (mean over seeds): {'; '.join(parts)}."


def _from_bigram(loss: float, floors: dict[str, Any]) -> str:
    gap = floors["bigram"] - loss
    return f"{gap:.3f} below the bigram" if gap >= 0 else f"{-gap:.3f} above the bigram"


def budget_warning(floors: dict[str, Any], evaluation: pd.DataFrame) -> list[str]:
    """A warning naming each variant and size whose evaluation trials ended not clearly past the bigram."""
    margin = clear_margin(floors)
    short = evaluation[evaluation["best_val_loss"] > floors["bigram"] - margin]
    if short.empty:
        return []
    devices = evaluation["device"].nunique()
    named = [
        f"{variant} {_where(size, device, devices)}".rstrip() + f" ({rows['best_val_loss'].mean():.3f})"
        for (variant, size, device), rows in short.groupby(["variant", "size", "device"], sort=False, dropna=False)
    ]
    return [
        f"Budget too short: {len(short)} of {len(evaluation)} evaluation trials ended above "
        f"{floors['bigram'] - margin:.3f} nats/char, not {margin:.3f} nats below the bigram ({CLEAR_FRACTION:g} of "
        f"the bigram's gain over the unigram, the margin this report calls clearly past the floors): "
        f"{', '.join(named)}. Their verdicts compare models that have barely left "
        "pair statistics behind; a longer budget (more tokens per parameter) would say more."
    ]


def tuning_warning(floors: dict[str, Any], tuning: pd.DataFrame) -> list[str]:
    """A warning where even the best quarter-budget tuning trial of a variant (and size) is not clearly
    past the bigram: the grid was then ranked on how fast each value leaves it, not on where it ends."""
    if tuning.empty:
        return []
    margin = clear_margin(floors)
    best = tuning.groupby(["variant", "size", "device"], sort=False, dropna=False)["best_val_loss"].min()
    short = best[best > floors["bigram"] - margin]
    if short.empty:
        return []
    devices = tuning["device"].nunique()
    named = [f"{variant} {_where(size, device, devices)}".rstrip() + f" ({loss:.3f})"
             for (variant, size, device), loss in short.items()]  # fmt: skip
    return [
        f"Tuning trials too short to rank values: the best quarter-budget tuning trial of {', '.join(named)} "
        f"ended above {floors['bigram'] - margin:.3f} nats/char, not {margin:.3f} nats below the bigram, so its grid was ranked on how fast each value "
        "leaves the floors rather than on where it ends; a longer tuning budget would rank them better."
    ]
