"""What a report says in words: per-device findings on loss and speed, and measurement warnings."""

from __future__ import annotations

import math

import pandas as pd

from minigpt import metrics
from minigpt.decide import BETTER, EQUIVALENT, UNDECIDED, WORSE
from minigpt.report.frames import RunReport
from minigpt.report.speed_results import SpeedPhase
from minigpt.stats import NO_CLEAR_DIFFERENCE
from minigpt.variants import BASELINE

VERDICT_ORDER = (BETTER, WORSE, EQUIVALENT, UNDECIDED, NO_CLEAR_DIFFERENCE)

DRIFT_EXPLAINED = (
    "Each trial and the speed phase probe this machine's matmul speed before and after they run; a change "
    "of more than 10% is flagged. A flagged trial's training-time speed figures (tokens/s, step ms, MFU) "
    "describe a machine that changed under it. A flagged speed phase is less affected, since its ratios pair "
    "the variants within each round, but re-measure before trusting a close call."
)


def findings(report: RunReport) -> list[str]:
    """Per device: which variants have a lower or higher loss than the baseline, which are faster or slower."""
    sentences = []
    for device in report.devices:
        rows = report.summary[report.summary["device"] == device]
        sentences.append(loss_finding(rows, device, report.shown_metrics("quality")))
    if report.speed is None:
        sentences.append(report.speed_note or "")
    else:
        devices = [*report.devices, *report.speed.frame["device"], *report.speed.skipped]
        sentences += [speed_finding(report.speed, report.order, device) for device in dict.fromkeys(devices)]
    if report.summary["completed"].max() < 2:
        sentences.append(
            "With one seed per variant there are no intervals, so no difference is called; "
            "run several seeds (e.g. --seeds 0,1,2) to get them."
        )
    return sentences


def loss_finding(rows: pd.DataFrame, device: str, quality: list[metrics.Metric]) -> str:
    """The verdicts against the baseline, and the lowest loss in every `quality` metric shown."""
    scored = rows[rows["best_val_loss"].notna()]
    if scored.empty:
        return f"On {device}: no trial completed, so there is nothing to compare."
    parts = [
        f"{label}: {', '.join(rows.loc[rows['verdict'] == label, 'variant'])}"
        for label in VERDICT_ORDER
        if (rows["verdict"] == label).any()
    ]
    tested = int(rows["p_value"].notna().sum())
    holm = f" ({tested} variant{'s' if tested != 1 else ''} compared)" if tested else ""
    best = scored.loc[scored["best_val_loss"].idxmin()]
    compared = "; ".join(parts) if parts else "no variant to compare with a completed baseline"
    values = ", ".join(f"{m.format(best[m.column])} {m.unit}" for m in quality)
    return (
        f"On {device}, loss against the baseline{holm}: {compared}. Lowest best validation loss: "
        f"{best['variant']} ({values})."
    )


def speed_finding(speed: SpeedPhase, order: list[str], device: str) -> str:
    """e.g. "On cpu, speed against the baseline (...): swiglu 0.93x [0.91, 0.95], slower; ..."."""
    if device in speed.skipped:
        return f"On {device}, speed was not measured: {speed.skipped[device]}."
    rows = speed.measured(device)
    rows = rows[rows["variant"] != BASELINE]
    failed = "".join(
        f" {variant}'s speed could not be measured ({error})." for (where, variant), error in speed.unmeasured.items()
        if where == device
    )  # fmt: skip
    if rows.empty:
        return f"On {device}, speed was not measured (speed.json has no variant besides the baseline there).{failed}"
    ranked = sorted(rows.itertuples(), key=lambda row: _rank(order, row.variant))
    rounds = f" over {speed.rounds} rounds" if speed.rounds else ""
    listed = "; ".join(
        f"{row.variant} {ratio_text(row.speed_ratio, row.speed_ratio_low, row.speed_ratio_high)}, {row.speed_verdict}"
        for row in ranked
    )
    return (
        f"On {device}, speed against the baseline (tokens/s ratio measured interleaved{rounds}; > 1 is faster): "
        f"{listed}.{failed}"
    )


def _rank(order: list[str], variant: str) -> int:
    return order.index(variant) if variant in order else len(order)


def ratio_text(ratio: float, low: float, high: float) -> str:
    """A speed ratio and its interval, e.g. "0.93x [0.91, 0.95]"."""
    if not math.isfinite(ratio):
        return "–"
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{ratio:.2f}x"
    return f"{ratio:.2f}x [{low:.2f}, {high:.2f}]"


def measurement_warnings(report: RunReport) -> tuple[list[list[str]], list[str]]:
    """(drift rows: what was measured, matmul speed before -> after, change; sentences on shared machines)."""
    drifted = report.trials[report.trials["drift_flagged"]]
    rows = [[row.trial_id, *_drift_cells(row.drift_before, row.drift_after, row.drift_change)] for row in drifted.itertuples()]  # fmt: skip
    if report.speed is not None:
        rows += [
            [f"speed phase on {device}", *_drift_cells(drift.before, drift.after, drift.change)]
            for device, drift in report.speed.drift.items()
            if drift.flagged
        ]
    sentences = []
    shared = int(report.trials["concurrent"].sum())
    if shared:
        sentences.append(
            f"{shared} trial(s) ran beside other trials on one machine: their speed figures (tokens/s, "
            "step ms, MFU) are not comparable with the others'."
        )
    return rows, sentences


def _drift_cells(before: float, after: float, change: float) -> list[str]:
    def flops(value: float) -> str:
        return f"{value / 1e9:,.1f} GFLOP/s" if math.isfinite(value) else "–"

    return [f"{flops(before)} → {flops(after)}", f"{100 * change:+.1f}%" if math.isfinite(change) else "–"]
