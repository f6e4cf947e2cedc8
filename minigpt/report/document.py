"""The report as a list of blocks: overview, findings, tables and figure captions, ready to render."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from minigpt.report.findings import DRIFT_EXPLAINED, findings, measurement_warnings, ratio_text
from minigpt.report.frames import RunReport


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[str]]


Block = tuple[str, Any]  # ("h1" | "h2" | "p", text), ("table", Table), ("figure", (file name, caption))


def _number(value: Any, spec: str) -> str:
    return "–" if value is None or not math.isfinite(value) else format(value, spec)


def _text(value: Any) -> str:
    """A text cell; pandas holds a missing text as None or NaN."""
    return value if isinstance(value, str) and value else "–"


def _with_interval(mean: float, low: float, high: float, spec: str) -> str:
    if not math.isfinite(low):
        return _number(mean, spec)
    return f"{_number(mean, spec)} [{_number(low, spec)}, {_number(high, spec)}]"


def summary_table(report: RunReport) -> Table:
    columns = [
        "variant", "device", "changes", "precision", "params", "completed", "best val loss [95%]",
        "Δ vs baseline [95%]", "Δ %", "Holm p", "verdict", "speed vs baseline [95%], interleaved", "MFU",
        "time to target s (seeds)",
    ]  # fmt: skip
    rows = [
        [
            report.label(row.variant), row.device, row.changed or "–", _text(row.precision),
            _number(row.params, ",.0f"), f"{row.completed}/{row.trials}",
            _with_interval(row.best_val_loss, row.best_val_loss_low, row.best_val_loss_high, ".4f"),
            _with_interval(row.diff_vs_baseline, row.diff_low, row.diff_high, "+.4f"), _number(row.diff_pct, "+.2f"),
            _number(row.p_holm, ".3g"), row.verdict, _speed_cell(row), _number(row.mfu, ".2%"),
            f"{_number(row.time_to_target_s, '.1f')} ({row.reached_target})",
        ]
        for row in report.summary.itertuples()
    ]  # fmt: skip
    return Table(columns, rows)


def _speed_cell(row: Any) -> str:
    if row.speed_verdict == "baseline":
        return "1x (reference)"
    ratio = ratio_text(row)
    return ratio if ratio == "–" else f"{ratio} {row.speed_verdict}"


def bench_table(bench: pd.DataFrame) -> Table:
    cases = list(dict.fromkeys(bench["case"]))
    rows = []
    for (variant, device), group in bench.groupby(["variant", "device"], sort=False):
        by_case = group.set_index("case")
        cells = [_bench_cell(by_case.loc[case]) if case in by_case.index else "–" for case in cases]
        rows.append([variant, device, *cells])
    return Table(["variant", "device", *cases], rows)


def _bench_cell(row: pd.Series) -> str:
    """Median ms per call, then the speed relative to the baseline (> 1 is faster) and its interval."""
    speed = f"{_number(row['speed_ratio'], '.2f')}x"
    if math.isfinite(row["speed_ratio_low"]):
        speed += f" [{row['speed_ratio_low']:.2f}, {row['speed_ratio_high']:.2f}]"
    return f"{row['median_ms']:.3f} ms, {speed}"


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
        f"budget per trial: {budget}; target validation loss: {report.target_text()}. "
        f"Software: minigpt-bench {env.get('minigpt_bench', '?')}, torch {env.get('torch', '?')}, "
        f"CPU {env.get('cpu', '?')}."
    )


READING = (
    "Δ is the variant's best validation loss minus the baseline's on the same device (negative: lower "
    "loss). Intervals are 95% Student's t over seeds; Δ pairs trials by seed when both ran the same seeds "
    "(two or more), and uses Welch's interval otherwise. A variant is called better or worse only when the "
    "interval of Δ excludes zero and its t-test p-value, adjusted by Holm's step-down method over the "
    "variants compared on that device (Holm p), is below 0.05: however many variants run, the chance of any "
    "false call per device stays at 5%; the intervals shown are not adjusted. Speed vs baseline is the "
    "variant's tokens/s over the baseline's, paired within each round of the interleaved speed phase "
    "(> 1 is faster), called faster or slower only when its 95% interval over rounds excludes 1. Tokens/s and "
    "step times in results.csv were measured during training: trials ran minutes apart on a machine whose "
    "speed drifts, so they are not comparable across trials. MFU is model FLOPs per second during training "
    "over the matmul peak measured on this device in the trial's precision."
)


def warnings_blocks(report: RunReport) -> list[Block]:
    """A "Measurement warnings" part when a measurement drifted or shared its machine; nothing otherwise."""
    drifted, sentences = measurement_warnings(report)
    if not drifted and not sentences:
        return []
    blocks: list[Block] = [("h2", "Measurement warnings"), *[("p", sentence) for sentence in sentences]]
    if drifted:
        columns = ["measurement", "matmul speed before → after", "change"]
        blocks += [("p", DRIFT_EXPLAINED), ("table", Table(columns, drifted))]
    return blocks


def document(report: RunReport, figures: list[tuple[str, str]]) -> list[Block]:
    blocks: list[Block] = [("h1", f"minigpt-bench report: {report.name}"), ("p", overview(report))]
    blocks += [("h2", "Findings"), *[("p", sentence) for sentence in findings(report)]]
    blocks += warnings_blocks(report)
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
