"""The report as a list of blocks: overview, findings, tables and figure captions, ready to render."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from minigpt.report.frames import RunReport
from minigpt.report.stats import NO_CLEAR_DIFFERENCE


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
        f"budget per trial: {budget}; target validation loss: {report.target_text()}. "
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
