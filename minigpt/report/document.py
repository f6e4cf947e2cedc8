"""The report as a list of blocks: overview, findings, tables and figure captions, ready to render."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from minigpt import metrics
from minigpt.decide import MOST_SEEDS_SUGGESTED, UNDECIDED
from minigpt.report.findings import DRIFT_EXPLAINED, findings, measurement_warnings, ratio_text
from minigpt.report.floors import floor_blocks
from minigpt.report.frames import RunReport
from minigpt.report.size_gaps import size_findings
from minigpt.variants import BASELINE


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


def variant_summary_table(report: RunReport) -> Table:
    """One row per variant and device; the metric columns are the schema's `in_report` metrics,
    placed by kind around the loss comparison and the interleaved speed."""
    shown = {kind: report.shown_metrics(kind) for kind in ("size", "quality", "cost")}
    columns = [
        "variant", "device", "changes", "precision", *map(_header, shown["size"]), "completed",
        *map(_header, shown["quality"]), "Δ vs baseline [adjusted]", "Δ %", "adjusted p", "verdict",
        "speed vs baseline [interval], interleaved", *map(_header, shown["cost"]),
    ]  # fmt: skip
    rows = [
        [
            report.label(row["variant"]), row["device"], _text(row["changed"]), _text(row["precision"]),
            *_cells(shown["size"], row), f"{row['completed']}/{row['trials']}", *_cells(shown["quality"], row),
            _with_interval(row["diff_vs_baseline"], row["diff_low"], row["diff_high"], "+.4f"),
            _number(row["diff_pct"], "+.2f"), _number(row["p_adjusted"], ".3g"), row["verdict"], _speed_cell(row),
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
        return f"max_flops={fair['max_flops']:g} (the steps that spend it in total FLOPs, per size and variant)"
    if fair.get("token_rule"):
        return (
            f"the size ladder's token rule ({fair['token_rule']:,} tokens at the preset's size, scaled by "
            "parameters, within a minimum number of steps and a cap)"
        )
    return ", ".join(f"{k}={v}" for k, v in budget.items() if v is not None) or "unknown"


def size_budgets(trials: pd.DataFrame) -> str:
    """Each size's parameters and what its baseline (else its first variant) trained, smallest first: "xs 804k
    parameters, 600k tokens (293 steps, 0.75 tokens per parameter)"; empty without a ladder."""
    evaluation = trials[(trials["stage"] == "eval") & trials["size"].notna() & (trials["status"] == "completed")]
    parts = []
    for size, rows in evaluation.sort_values("params", kind="stable").groupby("size", sort=False):  # smallest first
        chosen = rows[rows["variant"] == BASELINE] if (rows["variant"] == BASELINE).any() else rows
        params, tokens, steps = chosen["params"].max(), chosen["tokens"].max(), chosen["steps"].max()
        parts.append(
            f"{size} {metrics.si(params)} parameters, {metrics.si(tokens)} tokens ({steps:,.0f} steps, "
            f"{tokens / params:.2f} tokens per parameter)"
        )
    return "; ".join(parts)


def overview(report: RunReport) -> str:
    sweep = report.sweep
    trials = report.all_trials if report.all_trials is not None else report.trials
    budget = budget_text(sweep)
    ladder = size_budgets(trials)
    if ladder:
        budget += f"; per size: {ladder}"
    env = sweep.get("environment") or {}
    evaluated = trials[trials["stage"] == "eval"]
    seeds = ", ".join(str(s) for s in sorted(evaluated["seed"].dropna().astype(int).unique()))
    completed = int((trials["status"] == "completed").sum())
    tuning = int((trials["stage"] != "eval").sum())
    stages = f", {tuning} of them tuning trials" if tuning else ""
    return (
        f"{len(trials)} trials ({completed} completed{stages}): variants {', '.join(report.order)}; "
        f"devices {', '.join(report.devices)}; seeds {seeds}. Data: {sweep.get('data', 'unknown')}; "
        f"budget per trial: {budget}; target validation loss: {report.target_text()}. "
        f"Software: minigpt-bench {env.get('minigpt_bench', '?')}, torch {env.get('torch', '?')}, "
        f"CPU {env.get('cpu', '?')}."
    )


def method_text(report: RunReport) -> list[str]:
    """How the verdicts were reached, for the end of the report: the design, the margins, the error rate."""
    design = report.design
    alpha = f"{100 * design.alpha:g}%"
    if design.looks is None:
        seeds = (
            "The seeds were fixed in advance and judged once. Each variant's interval spends "
            f"{alpha} split evenly over the variants compared on its device (Bonferroni), so the chance of "
            f"any wrong verdict on a device is at most {alpha}."
        )
    else:
        looks = ", ".join(str(n) for n in design.looks)
        seeds = (
            f"Seeds ran in rounds (--seeds auto): after {looks} seeds every variant not yet decided was judged "
            "again, and only those still undecided (with the baseline, for pairing) got the next round. Each look "
            "spends a share of the error rate proportional to the seeds its round added (linear alpha spending), "
            "split evenly over the variants compared on the device (Bonferroni); each interval is a Student's t "
            "interval at one minus that share. By the union bound the chance that any interval, at any look, of "
            f"any variant misses its true difference is at most {alpha}, whenever a variant stops; so is the "
            "chance of any wrong verdict on a device, looking after every round."
        )
    return [
        "Δ is the variant's best validation loss minus the baseline's on the same device and seed, averaged over "
        "the seeds both completed (negative: lower loss); Δ % is Δ over the baseline's mean loss. A variant reads "
        f"equivalent when the interval of Δ lies within ±{design.margin:g} nats (--margin: a difference that "
        "small does not matter), better or worse when it excludes zero and does not, and undecided otherwise; "
        "the interval shown is the one the verdict reads. Adjusted p is the p-value of the verdict's own test "
        "(a t test of no difference; for equivalent, the two one-sided tests against the margin) scaled by the "
        f"share of the error rate its interval spent: a verdict is reached when it is below {design.alpha:g}. "
        "Smallest detectable is the half-width of that interval: the smallest |Δ| these seeds, with this spread, "
        "call better or worse. An undecided variant's seeds needed is the fewest seeds at which an interval "
        "with the same mean and spread, at the same level, would decide: a guide, not a promise.",
        seeds,
        "Speed vs baseline is the variant's tokens/s over the baseline's, paired within each round of the "
        "interleaved speed phase (> 1 is faster), judged the same way on the logarithms of the per-round ratios: "
        f"equivalent within ±{100 * design.speed_margin:g}% (--speed-margin), faster or slower when the "
        f"interval excludes 1, the error rate {alpha} split over the device's variants. Tokens/s and step times "
        "in results.csv were measured during training: trials ran minutes apart on a machine whose speed "
        "drifts, so they are not comparable across trials. MFU is model FLOPs per second during training over "
        "the matmul peak measured on this device in the trial's precision. Model FLOPs (flops_per_token, "
        "model_flops in results.csv) count the matmuls and the attention a query needs; total FLOPs "
        "(total_flops_per_token, total_flops_per_step, total_flops) count what a step computes: the whole attention square the kernel "
        "computes, normalizations and the optimizer's own arithmetic (Muon's Newton-Schulz iterations, AdamW's "
        "elementwise update), which is what --max-flops budgets.",
    ]


def loss_verdict_table(report: RunReport, device: str) -> Table:
    """The answer on one device: each variant's Δ, interval, verdict and seeds, sorted by Δ (best first)."""
    rows = report.summary[(report.summary["device"] == device) & (report.summary["variant"] != BASELINE)]
    rows = rows.sort_values("diff_vs_baseline", na_position="last")
    columns = ["variant", "Δ nats", "Δ %", "interval", "verdict", "adjusted p", "seeds", "smallest detectable"]
    return Table(columns, [_loss_verdict_cells(row) for row in rows.to_dict("records")])


def _loss_verdict_cells(row: dict[str, Any]) -> list[str]:
    interval = "–" if not math.isfinite(row["diff_low"]) else f"[{row['diff_low']:+.4f}, {row['diff_high']:+.4f}]"
    return [
        row["variant"], _number(row["diff_vs_baseline"], "+.4f"), _number(row["diff_pct"], "+.2f"), interval,
        verdict_text(row["verdict"], row.get("seeds_needed")), _number(row["p_adjusted"], ".3g"),
        str(int(row["seeds"])) if _finite(row["seeds"]) else "–", _number(row["detectable"], ".4f"),
    ]  # fmt: skip


def verdict_text(verdict: str, needed: Any) -> str:
    """A verdict; an undecided one with the seeds its spread suggests a decision needs."""
    if verdict != UNDECIDED:
        return verdict
    if _finite(needed):
        return f"undecided (~{int(needed)} seeds)"
    return f"undecided (over {MOST_SEEDS_SUGGESTED:,} seeds)"


def _finite(value: Any) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def speed_verdict_table(report: RunReport, device: str) -> Table | None:
    """Speed on one device sorted by ratio, highest first; None where it was not measured."""
    if report.speed is None:
        return None
    rows = report.speed.measured(device)
    rows = rows[rows["variant"] != BASELINE].sort_values("speed_ratio", ascending=False)
    if rows.empty:
        return None
    columns = ["variant", "speed", "Δ %", "interval", "verdict", "adjusted p"]
    return Table(columns, [
        [row["variant"], _number(row["speed_ratio"], ".3f") + "x", _number(100 * (row["speed_ratio"] - 1), "+.1f"),
         _ratio_interval(row), row["speed_verdict"], _number(row["speed_p_adjusted"], ".3g")]
        for row in rows.to_dict("records")
    ])  # fmt: skip


def _ratio_interval(row: dict[str, Any]) -> str:
    low, high = row["speed_ratio_low"], row["speed_ratio_high"]
    return f"[{low:.3f}, {high:.3f}]" if _finite(low) and _finite(high) else "–"


def findings_blocks(report: RunReport) -> list[Block]:
    """Per device the loss verdict table and its sentence, then speed the same way."""
    sentences = findings(report)
    blocks: list[Block] = []
    for index, device in enumerate(report.devices):
        loss = loss_verdict_table(report, device)
        if loss.rows:
            blocks += [("p", f"Loss on {device}, against the baseline, best first:"), ("table", loss)]
        blocks.append(("p", sentences[index]))
    for device in report.devices:
        speed = speed_verdict_table(report, device)
        if speed is not None:
            blocks += [
                ("p", f"Speed on {device}, measured interleaved, against the baseline, highest ratio first:"),
                ("table", speed),
            ]
    blocks += [("p", sentence) for sentence in sentences[len(report.devices) :]]
    return blocks


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
    blocks += [("h2", "Findings"), *floor_blocks(report), *findings_blocks(report), *size_findings(report)]
    blocks += warnings_blocks(report)
    blocks += [("h2", "Summary per variant and device"), ("table", variant_summary_table(report))]
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
    blocks += [("h2", "Method"), *[("p", paragraph) for paragraph in method_text(report)]]
    return blocks
