"""The report as a list of blocks: overview, findings, tables and figure captions, ready to render."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from minigpt import metrics
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


def _with_interval(mean: float, low: float, high: float, spec: str | metrics.Metric) -> str:
    def text(value: float) -> str:
        return spec.format(value) if isinstance(spec, metrics.Metric) else _number(value, spec)

    if not math.isfinite(low):
        return text(mean)
    return f"{text(mean)} [{text(low)}, {text(high)}]"


def summary_table(report: RunReport) -> Table:
    """One row per variant and device; the metric columns are the schema's `in_report` metrics,
    placed by kind around the loss comparison and the interleaved speed."""
    shown = {kind: report.shown_metrics(kind) for kind in ("size", "quality", "cost")}
    columns = [
        "variant", "device", "changes", "precision", *map(_header, shown["size"]), "completed",
        *map(_header, shown["quality"]), "Δ vs baseline [95%]", "Δ %", "Holm p", "verdict",
        "speed vs baseline [95%], interleaved", *map(_header, shown["cost"]),
    ]  # fmt: skip
    rows = [
        [
            report.label(row["variant"]), row["device"], _text(row["changed"]), _text(row["precision"]),
            *_cells(shown["size"], row), f"{row['completed']}/{row['trials']}", *_cells(shown["quality"], row),
            _with_interval(row["diff_vs_baseline"], row["diff_low"], row["diff_high"], "+.4f"),
            _number(row["diff_pct"], "+.2f"), _number(row["p_holm"], ".3g"), row["verdict"], _speed_cell(row),
            *_cells(shown["cost"], row),
        ]
        for row in report.summary.to_dict("records")
    ]  # fmt: skip
    return Table(columns, rows)


def _header(metric: metrics.Metric) -> str:
    interval = " [95%]" if metric.aggregate == "interval" else ""
    return f"{metric.label}{interval}{' (seeds)' if metric.count_column else ''}"


def _cells(shown: list[metrics.Metric], row: dict[str, Any]) -> list[str]:
    cells = []
    for metric in shown:
        column = metric.column
        if metric.aggregate == "interval":
            cell = _with_interval(row[column], row[f"{column}_low"], row[f"{column}_high"], metric)
        else:
            cell = metric.format(row[column])
        cells.append(f"{cell} ({row[metric.count_column]})" if metric.count_column else cell)
    return cells


def metrics_table(report: RunReport) -> Table:
    """What each metric column of the summary means, its unit and which way is better."""
    shown = [m for kind in ("size", "quality", "cost") for m in report.shown_metrics(kind)]
    rows = [[_header(m), m.unit, BETTER[m.lower_is_better], m.description] for m in shown]
    return Table(["column", "unit", "better", "meaning"], rows)


BETTER = {True: "lower", False: "higher", None: "–"}


def _speed_cell(row: dict[str, Any]) -> str:
    if row["speed_verdict"] == "baseline":
        return "1x (reference)"
    ratio = ratio_text(row["speed_ratio"], row["speed_ratio_low"], row["speed_ratio_high"])
    return ratio if ratio == "–" else f"{ratio} {row['speed_verdict']}"


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


def tracking_table(trials: pd.DataFrame) -> Table:
    """Each trial's runs in the experiment trackers it was logged to (`run --track`)."""
    return Table(
        ["trial", "tracker runs"], [[row.trial_id, row.tracking] for row in trials.itertuples() if row.tracking]
    )


def variants_table(report: RunReport) -> Table:
    first = report.trials.drop_duplicates("variant").set_index("variant")
    rows = [[v, first.at[v, "changed"] or "–", first.at[v, "description"] or ""] for v in report.order]
    return Table(["variant", "changes from the baseline", "description"], rows)


def budget_text(sweep: dict[str, Any]) -> str:
    """The budget each trial trained for, as the sweep set it: a FLOPs budget or the size ladder's token
    rule replaces the preset's budget that sweep.json's `budget` keeps."""
    fair = sweep.get("fair") or {}
    budget = sweep.get("budget") or {}
    if fair.get("max_flops"):
        return f"max_flops={fair['max_flops']:g} (the steps that spend it, per size and variant)"
    if fair.get("token_rule"):
        return (
            f"the size ladder's token rule ({fair['token_rule']:,} tokens at the preset's size, scaled by parameters)"
        )
    return ", ".join(f"{k}={v}" for k, v in budget.items() if v is not None) or "unknown"


def overview(report: RunReport) -> str:
    sweep, trials = report.sweep, report.trials
    budget = budget_text(sweep)
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


def hidden_sentences(report: RunReport) -> list[str]:
    """Why each metric declared the same as another is not in the table."""
    sentences = []
    for metric in report.hidden_metrics():
        if metric.same_as is None:
            continue
        other = metrics.find(metric.same_as)
        known = report.summary[other.column].notna()
        values = report.summary.loc[known, metric.column]
        if not known.any():
            continue
        if values.isna().all():
            reason = "it is not known for any variant here"
        else:
            where = "where it is known" if values.isna().any() else "here"
            reason = f"it equals {other.label} for every variant {where}"
        sentences.append(f"{metric.label.capitalize()} is left out of the table: {reason} ({metric.description}).")
    return sentences


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
    blocks += [("table", metrics_table(report)), *[("p", sentence) for sentence in hidden_sentences(report)]]
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
    tracked = tracking_table(report.trials)
    if tracked.rows:
        blocks += [("h2", "Tracker runs"), ("table", tracked)]
    blocks.append(("p", "Every trial's numbers: results.csv. Per variant and device: summary.csv."))
    return blocks
