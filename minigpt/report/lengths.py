"""The length-generalization part of a report, for sweeps run with --eval-lengths: per device,
protocol and length, each variant's loss and its difference from the baseline, paired by seed,
with the verdict the main comparison uses (Holm over the variants at that length); the loss
against evaluation length; and the loss against position out to the longest length.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from minigpt import metrics
from minigpt.decide import LOSS_LABELS, Design, decide, paired_differences
from minigpt.report.document import Table
from minigpt.report.figures import new_figure, save_figure
from minigpt.report.frames import RunReport, by_seed
from minigpt.stats import mean_interval
from minigpt.store import RunStore, is_evaluation
from minigpt.variants import BASELINE

Block = tuple[str, Any]
PROTOCOLS = {False: "non-overlapping windows", True: "sliding windows"}
SMOOTHING = 8  # positions averaged in the per-position figure, so its lines are not only noise


def length_blocks(report: RunReport, run_dir: Path, out_dir: Path) -> list[Block]:
    """The section, and its figures written to out_dir; nothing for a sweep without --eval-lengths."""
    multiples = report.sweep.get("eval_lengths") or []
    if not multiples:
        for name in CAPTIONS:
            (out_dir / name).unlink(missing_ok=True)
        return []
    records = [r for r in RunStore(run_dir).trials() if r.get("status") == "completed" and is_evaluation(r)]
    losses = length_frame(records, multiples)
    comparisons = compare(losses, report.order, report.design)
    blocks: list[Block] = [("h2", "Length generalization"), ("p", method_text(records)),
                           *[("p", sentence) for sentence in length_sentences(comparisons, report)]]  # fmt: skip
    for device in report.devices:
        for sliding, protocol in PROTOCOLS.items():
            table = length_table(comparisons, device, sliding, multiples, report.order)
            blocks += [("p", f"Loss at each length on {device}, {protocol}:"), ("table", table)]
    reasons = not_applicable_reasons(records)
    blocks += [("p", f"Not applicable: {reason}") for reason in reasons]
    drawn = (plot_loss_by_length(losses, report, out_dir / "loss_by_length.png"),
             plot_loss_by_position(records, report, out_dir / "loss_by_position.png"))  # fmt: skip
    blocks += [("figure", (path.name, CAPTIONS[path.name])) for path in drawn if path is not None]
    return blocks


def length_frame(records: list[dict[str, Any]], multiples: list[int]) -> pd.DataFrame:
    """One row per trial, length and protocol: its loss, or None and why not."""
    rows = []
    for record in records:
        reasons = (record.get("length_eval") or {}).get("not_applicable", {})
        for multiple in multiples:
            for sliding in PROTOCOLS:
                rows.append({
                    "variant": record["variant"], "device": record["device"], "seed": record["seed"],
                    "multiple": multiple, "sliding": sliding,
                    "loss": record.get(metrics.length_metric_name(multiple, sliding)),
                    "not_applicable": reasons.get(str(multiple)),
                })  # fmt: skip
    return pd.DataFrame(rows, columns=["variant", "device", "seed", "multiple", "sliding", "loss", "not_applicable"])


def compare(losses: pd.DataFrame, order: list[str], design: Design) -> pd.DataFrame:
    """Per device, length and protocol: each variant's mean loss and its verdict against the baseline
    from the paired differences, judged as the main comparison judges them (minigpt.decide, the
    error rate split over the variants compared there, the sweep's loss margin)."""
    rows = []
    for (device, multiple, sliding), group in losses.groupby(["device", "multiple", "sliding"], sort=False):
        baseline = by_seed(group[group["variant"] == BASELINE], "loss")
        present = [v for v in order if v in set(group["variant"])]
        compared = sum(v != BASELINE for v in present)
        for variant in present:
            own = group[group["variant"] == variant]
            own_losses = by_seed(own, "loss")
            reasons = own["not_applicable"].dropna()
            row = {"device": device, "multiple": multiple, "sliding": sliding, "variant": variant,
                   "loss": mean_interval(own_losses.values()).mean if own_losses else math.nan,
                   "not_applicable": reasons.iloc[0] if not reasons.empty else None}  # fmt: skip
            if variant == BASELINE:
                row["verdict"] = "reference"
            elif not own_losses or not baseline:
                row["verdict"] = "not applicable" if not own_losses else "no baseline to compare"
            else:
                differences = paired_differences(own_losses, baseline)
                decision = decide(differences, design.level(len(differences), compared), design.margin,
                                  alpha=design.alpha)  # fmt: skip
                row.update(diff=decision.mean, low=decision.low, high=decision.high, p_adjusted=decision.p_adjusted,
                           verdict=decision.label(LOSS_LABELS))  # fmt: skip
            rows.append(row)
    return pd.DataFrame(rows)


def length_table(
    comparisons: pd.DataFrame, device: str, sliding: bool, multiples: list[int], order: list[str]
) -> Table:
    columns = ["variant"] + [f"{m}x: loss, Δ vs baseline [interval], verdict" for m in multiples]
    rows = []
    here = comparisons[(comparisons["device"] == device) & (comparisons["sliding"] == sliding)]
    for variant in order:
        cells = [variant]
        for multiple in multiples:
            found = here[(here["variant"] == variant) & (here["multiple"] == multiple)]
            cells.append(_cell(found.iloc[0]) if not found.empty else "–")
        rows.append(cells)
    return Table(columns, rows)


def _cell(row: pd.Series) -> str:
    if isinstance(row.get("not_applicable"), str):
        return "not applicable"
    if row["verdict"] == "reference":
        return f"{row['loss']:.4f} (reference)"
    if not isinstance(row.get("diff"), float) or math.isnan(row["diff"]):
        return f"{row['loss']:.4f}" if math.isfinite(row["loss"]) else "–"
    if not math.isfinite(row["low"]):  # one seed: a difference, no interval
        return f"{row['loss']:.4f}, {row['diff']:+.4f}, {row['verdict']}"
    return f"{row['loss']:.4f}, {row['diff']:+.4f} [{row['low']:+.4f}, {row['high']:+.4f}], {row['verdict']}"


def method_text(records: list[dict[str, Any]]) -> str:
    details = next((r["length_eval"] for r in records if r.get("length_eval")), {})
    block, stride, scored = details.get("block_size"), details.get("stride"), details.get("scored_tokens")
    return (
        f"After training, each trial's best checkpoint was scored at multiples of its training length "
        f"(block_size = {block}) on the same validation text for every variant and seed. Non-overlapping "
        f"windows score every token once, so a window's first tokens see little context; sliding windows end "
        f"every {stride} tokens and score only their last {stride}, so every scored token sees at least the "
        f"length minus {stride} tokens before it ({scored:,} tokens scored, the same at every length). "
        "Differences are paired by seed and judged as the main comparison is (see the method at the end), "
        "the error rate split over the variants at each length and protocol."
    )


def length_sentences(comparisons: pd.DataFrame, report: RunReport) -> list[str]:
    """One sentence per device: at the longest length (sliding windows), who is better or worse."""
    sentences = []
    for device in report.devices:
        here = comparisons[(comparisons["device"] == device) & comparisons["sliding"]]
        if here.empty:
            continue
        longest = here["multiple"].max()
        at = here[here["multiple"] == longest]
        parts = []
        for verdict_name, said in (("better", "better than the baseline"), ("worse", "worse than the baseline"),
                                   ("equivalent", "equivalent to it"), ("undecided", "undecided")):  # fmt: skip
            chosen = at[at["verdict"] == verdict_name].sort_values("diff")
            if not chosen.empty:
                named = ", ".join(f"{r.variant} ({r.diff:+.3f} nats)" for r in chosen.itertuples())
                parts.append(f"{said}: {named}")
        unable = at[at["not_applicable"].notna()]["variant"].tolist()
        if unable:
            parts.append(f"not applicable: {', '.join(unable)}")
        summary = "; ".join(parts) or "no variant was compared"
        sentences.append(f"On {device} at {longest}x the training length (sliding windows), {summary}.")
    return sentences


def not_applicable_reasons(records: list[dict[str, Any]]) -> list[str]:
    """Per variant that cannot score some length: from which length, and why."""
    reasons: dict[str, str] = {}
    for record in records:
        missing = (record.get("length_eval") or {}).get("not_applicable") or {}
        if missing:
            first = min(missing, key=int)
            reasons.setdefault(record["variant"], f"{record['variant']} from {first}x on: {missing[first]}.")
    return list(reasons.values())


def plot_loss_by_length(losses: pd.DataFrame, report: RunReport, path: Path) -> Path | None:
    scored = losses[losses["loss"].notna()]
    if scored.empty:
        return None
    figure, axes = new_figure(2, 10, 4)
    for ax, (sliding, protocol) in zip(axes, PROTOCOLS.items(), strict=True):
        for variant in report.order:
            own = scored[(scored["variant"] == variant) & (scored["sliding"] == sliding)]
            if own.empty:
                continue
            means = own.groupby("multiple")["loss"].mean()
            ax.plot(means.index, means.values, marker="o", label=variant, color=report.palette.get(variant))
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(scored["multiple"].unique()), [f"{m}x" for m in sorted(scored["multiple"].unique())])
        ax.set_xlabel("evaluation length (multiples of block_size)")
        ax.set_ylabel("validation loss (nats/char)")
        ax.set_title(protocol)
    axes[-1].legend(fontsize=7, loc="best")
    return save_figure(figure, path)


def plot_loss_by_position(records: list[dict[str, Any]], report: RunReport, path: Path) -> Path | None:
    curves = [
        (r["variant"], r["length_eval"]["per_position"])
        for r in records
        if (r.get("length_eval") or {}).get("per_position")
    ]
    if not curves:
        return None
    block = next(r["length_eval"]["block_size"] for r in records if r.get("length_eval"))
    figure, axes = new_figure(1, 10, 4.5)
    ax = axes[0]
    for variant in report.order:
        own = [curve for name, curve in curves if name == variant]
        if not own:
            continue
        longest = max(len(curve) for curve in own)
        mean = pd.DataFrame([c for c in own if len(c) == longest]).mean()
        ax.plot(mean.rolling(SMOOTHING, min_periods=1).mean().values, label=f"{variant} (to {longest // block}x)",
                color=report.palette.get(variant), linewidth=1.2)  # fmt: skip
    ax.axvline(block, color="black", linestyle="--", linewidth=1)
    ax.text(block, ax.get_ylim()[1], " training length", va="top", fontsize=8)
    ax.set_xlabel("position in the window")
    ax.set_ylabel("validation loss (nats/char)")
    ax.legend(fontsize=7, loc="best")
    return save_figure(figure, path)


CAPTIONS = {
    "loss_by_length.png": "Validation loss against evaluation length, the mean over seeds per variant: non-overlapping "
    "windows on the left, sliding windows on the right. A variant missing at a length cannot place positions there.",
    "loss_by_position.png": f"Validation loss at each position of non-overlapping windows of the longest length each "
    f"variant can score, averaged over windows and seeds (and over {SMOOTHING} neighbouring positions); the dashed "
    "line is the training length.",
}
