"""The fair-comparison parts of a report, for sweeps run with --tune, --sizes or --max-flops:
how each variant was tuned, the difference from the baseline per size (with a figure against
parameter count and one sentence per variant), validation loss against FLOPs, and a Pareto
table per device. Loss is in nats per character with bits per character beside it.

The rest of the report reads the evaluation trials of one size (`main_frames`): tuning trials
only choose values, and the verdicts use the evaluation seeds alone.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from minigpt import metrics
from minigpt.report.document import Table
from minigpt.report.equal_time import cell_of, equal_time_blocks
from minigpt.report.frames import RunReport
from minigpt.report.size_gaps import evaluation_trials, per_size_summary, size_names, size_trends
from minigpt.variants import BASELINE

Block = tuple[str, Any]


def main_frames(trials: pd.DataFrame, points: pd.DataFrame, sweep: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The evaluation trials (of the ladder's last size, where there is a ladder) and their points."""
    chosen = trials[trials["stage"] == "eval"]
    sizes = size_names(sweep)
    if sizes:
        chosen = chosen[chosen["size"] == sizes[-1]]
    if chosen.empty:  # nothing evaluated yet: show what there is
        return trials, points
    return chosen, points[points["trial_id"].isin(chosen["trial_id"])]


def fair_blocks(report: RunReport, out_dir: Path) -> list[Block]:
    """The fair-comparison sections; none for a sweep without --tune, --sizes, --max-flops or --equal-time
    (--seeds auto alone)."""
    fair = report.sweep.get("fair")
    if not fair or not (fair.get("tune") or fair.get("sizes") or fair.get("max_flops") or fair.get("equal_time")):
        return []
    blocks: list[Block] = [("h2", "Fair comparison")]
    sizes = size_names(report.sweep)
    if sizes:
        blocks.append(("p", f"The tables and figures above show size {sizes[-1]}; every size follows."))
    if fair.get("tune"):
        blocks += tuning_blocks(report, fair, out_dir)
    per_size = per_size_summary(report)
    blocks += [("h2", "Difference from the baseline per size"), ("table", per_size_table(per_size))]
    blocks += [("p", sentence) for sentence in size_sentences(per_size)]
    trends = size_trends(evaluation_trials(report), report.order, report.design.alpha)
    from minigpt.report.fair_figures import DIFF_CAPTION, FLOPS_CAPTION, plot_difference_vs_params, plot_loss_vs_flops

    if plot_difference_vs_params(per_size, out_dir / "diff_vs_params.png", report, trends) is not None:
        blocks.append(("figure", ("diff_vs_params.png", DIFF_CAPTION)))
    if plot_loss_vs_flops(report, out_dir / "loss_vs_flops.png") is not None:
        blocks.append(("figure", ("loss_vs_flops.png", FLOPS_CAPTION)))
    blocks += equal_time_blocks(report)
    blocks += pareto_blocks(report)
    return blocks


def tuning_blocks(report: RunReport, fair: dict[str, Any], out_dir: Path) -> list[Block]:
    from minigpt.report.tuning import edge_text, sensitivity_text, tuning_figure_blocks

    tuning = report.sweep.get("tuning") or {}
    evaluation = sorted({int(s) for s in evaluation_trials(report)["seed"].dropna()})
    keys = " and ".join(axis.split(" ")[0].split("=")[0] for axis in fair["tune"])
    seeds = f"on seed(s) {', '.join(map(str, fair['tune_seeds']))}, apart from the evaluation seeds {', '.join(map(str, evaluation))}"
    if any("curve" in info for info in tuning.values()):
        method = (
            "every point at the full budget: the variant's own value and a step either side, stepping outward "
            "while the best lay at an edge (until it was interior, the next value diverged or failed, or the "
            "cap x1/64..x64 was reached), the choice the best of a quadratic fitted in log value through the "
            "best points, and never a value that scored worse than the variant's own on the tuning seeds"
        )
    else:  # a run made before tuning moved to the full budget
        method = (
            "every grid point at a quarter of the budget (the grid growing a step where the best lay at its edge, "
            "at most twice), the best half at the full budget, and the best of those chosen"
        )
    sentence = (
        f"Each variant's {keys} {'were' if ' and ' in keys else 'was'} tuned ({'; '.join(fair['tune'])}) {seeds}: {method}; the verdicts use only "
        "the evaluation seeds, so the choice cannot flatter them."
    )
    rows = [
        [info.get("size") or "–", *key.split("/")[-2:], str(len(info["grid"])),
         "none: every tuning trial failed" if info.get("untuned") else _point(info["chosen"]),
         edge_text(info), sensitivity_text(info)]
        for key, info in tuning.items()
    ]  # fmt: skip
    blocks: list[Block] = [("h2", "Tuning"), ("p", sentence)]
    columns = ["size", "variant", "device", "points trained", "chosen", "at an edge", "loss rise at /2 / x2"]
    blocks.append(("table", Table(columns, rows)))
    flagged = [key for key, info in tuning.items() if info["at_edge"] and not info.get("edge_reasons")]
    if flagged:
        blocks.append(
            ("p", f"Still at an edge of its grid after growing: {', '.join(flagged)}; its best value may lie beyond.")
        )
    blocks += tuning_figure_blocks(tuning, report.palette, out_dir)
    return blocks


def _point(point: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in point.items()) or "–"


def summary_csv(report: RunReport) -> pd.DataFrame:
    """summary.csv: the report's summary with a `size` column; on a ladder one row per variant, device and
    size, the main size's rows (the only ones the interleaved speed phase measured) as the report has them."""
    sizes = size_names(report.sweep)
    main = report.summary.assign(size=sizes[-1] if sizes else None)
    if len(sizes) > 1:
        others = per_size_summary(report)  # in ladder order: the main size is the last
        others = others[others["size"].isin(sizes[:-1])]
        main = pd.concat([others, main], ignore_index=True)
    return main[list(report.summary.columns)].reset_index(drop=True)


def _cell(value: float, spec: str = ".4f") -> str:
    return "–" if value is None or not math.isfinite(value) else format(value, spec)


def _interval(mean: float, low: float, high: float, spec: str) -> str:
    if not math.isfinite(low):
        return _cell(mean, spec)
    return f"{_cell(mean, spec)} [{_cell(low, spec)}, {_cell(high, spec)}]"


def per_size_table(summary: pd.DataFrame) -> Table:
    rows = [
        [row["size"], row["variant"], row["device"], _cell(row["params"], ",.0f"),
         _interval(row["best_val_loss"], row["best_val_loss_low"], row["best_val_loss_high"], ".4f"),
         _cell(row["best_val_bpc"]),
         _interval(row["diff_vs_baseline"], row["diff_low"], row["diff_high"], "+.4f"),
         _cell(row["p_adjusted"], ".3g"), row["verdict"]]
        for row in summary.to_dict("records")
    ]  # fmt: skip
    columns = ["size", "variant", "device", "params", "best val loss [95%]", "bits/char",
               "Δ vs baseline [adjusted interval]", "adjusted p", "verdict"]  # fmt: skip
    return Table(columns, rows)


def size_sentences(summary: pd.DataFrame) -> list[str]:
    """One sentence per variant and device: helps at every size, only at some, or at none."""
    sentences = []
    for (variant, device), rows in summary.groupby(["variant", "device"], sort=False):
        if variant == BASELINE:
            continue
        helps = list(rows.loc[rows["verdict"] == "better", "size"])
        hurts = list(rows.loc[rows["verdict"] == "worse", "size"])
        where = f"{variant} on {device}"
        if helps and len(helps) == len(rows):
            text = f"{where} helps at every size ({', '.join(helps)})."
        elif helps:
            text = f"{where} helps only at some sizes ({', '.join(helps)} of {', '.join(rows['size'])})."
        else:
            text = f"{where} helps at no size."
        if hurts:
            text += f" It is worse at {', '.join(hurts)}."
        sentences.append(text)
    return sentences


def _has_total(trials: pd.DataFrame) -> bool:
    return "total_flops_per_token" in trials and bool(trials["total_flops_per_token"].notna().all())


def flops_per_token(trials: pd.DataFrame) -> pd.Series:
    """Total FLOPs per token (minigpt.flops: what --max-flops budgets) where every trial recorded them; model
    FLOPs per token for runs from before."""
    return trials["total_flops_per_token" if _has_total(trials) else "flops_per_token"]


def flops_kind(trials: pd.DataFrame) -> str:
    return "total: model, attention as computed, norms, optimizer" if _has_total(trials) else "model FLOPs"


WALL_CAVEAT = (
    "Wall seconds are each trial's own, measured minutes apart on a machine whose speed may drift, so the front "
    "against them is a rough guide; the interleaved speed phase is the speed comparison to trust."
)
INTERLEAVED_NOTE = (
    "Seconds are each trial's tokens at its variant's interleaved speed (every variant timed in alternating rounds "
    "on one device, so the machine's drift cancels), not the trial's own wall clock."
)


def interleaved_speeds(report: RunReport) -> dict[tuple[Any, str, str], float]:
    """Interleaved tokens/s by (size, device, variant): --equal-time's timing of every size, or the
    speed phase's where the run has one size (the phase times one configuration per variant)."""
    cells = (report.sweep.get("equal_time") or {}).get("cells", {})
    if cells:
        speeds = {}
        for key, measured in cells.items():
            size, device = cell_of(key)
            for name, row in measured.get("variants", {}).items():
                if "tokens_per_sec" in row:
                    speeds[(size, device, name)] = row["tokens_per_sec"]
        return speeds
    if report.speed is None or size_names(report.sweep):
        return {}
    frame = report.speed.frame.dropna(subset=["interleaved_tokens_per_sec"])
    return {(None, r.device, r.variant): r.interleaved_tokens_per_sec for r in frame.itertuples()}


def _seconds(done: pd.DataFrame, speeds: dict[tuple[Any, str, str], float]) -> pd.Series:
    """Each trial's tokens over its variant's interleaved tokens/s (NaN where it was not timed)."""
    keys = zip(done["size"].where(done["size"].notna(), None), done["device"], done["variant"], strict=True)
    return done["tokens"] / pd.Series([speeds.get(key, math.nan) for key in keys], index=done.index)


def pareto_blocks(report: RunReport) -> list[Block]:
    """Per device: each variant (and size) with its best loss, total FLOPs and seconds (at the
    interleaved speeds where every variant was timed, else wall seconds), and whether it is on the
    front (no other is both better and cheaper)."""
    evaluation = evaluation_trials(report)
    done = evaluation[evaluation["status"] == "completed"]
    if done.empty:
        return []
    interleaved = _seconds(done, interleaved_speeds(report))
    timed = bool(interleaved.notna().all())
    done = done.assign(total_flops=flops_per_token(done) * done["tokens"],
                       seconds=interleaved if timed else done["wall_seconds"])  # fmt: skip
    groups = done.groupby(["device", "variant", "size"], sort=False, dropna=False)
    table = groups[["best_val_loss", "best_val_bpc", "total_flops", "seconds"]].mean().reset_index()
    table = table.sort_values(["size", "variant"], key=_ranked(report), kind="stable")
    clock = "interleaved seconds" if timed else "wall seconds"
    blocks: list[Block] = [("h2", f"Pareto fronts: best loss against compute and against {clock}")]
    rows = []
    for device, frame in table.groupby("device", sort=False):
        on_flops = _front(frame, "total_flops")
        on_time = _front(frame, "seconds")
        for index, row in frame.iterrows():
            name = row["variant"] if not isinstance(row["size"], str) else f"{row['variant']} {row['size']}"
            rows.append([device, name, _cell(row["best_val_loss"]), _cell(row["best_val_bpc"]),
                         metrics.si(row["total_flops"]), _cell(row["seconds"], ".1f"),
                         "yes" if index in on_flops else "", "yes" if index in on_time else ""])  # fmt: skip
        names = [r[1] for r in rows if r[0] == device]
        flops_front = [n for n, i in zip(names, frame.index, strict=True) if i in on_flops]
        time_front = [n for n, i in zip(names, frame.index, strict=True) if i in on_time]
        blocks.append(("p", f"On {device}, the front against FLOPs: {', '.join(flops_front)}; against {clock}: "
                            f"{', '.join(time_front)}."))  # fmt: skip
    blocks.append(("p", INTERLEAVED_NOTE if timed else WALL_CAVEAT))
    short = "interleaved s" if timed else "wall s"
    columns = ["device", "variant", "best val loss", "bits/char", "FLOPs", short, "FLOPs front", "time front"]
    return [*blocks[:1], ("table", Table(columns, rows)), *blocks[1:]]


def _ranked(report: RunReport) -> Any:
    """A sort key: sizes in ladder order, variants in the report's order."""
    ladder = size_names(report.sweep)

    def rank(column: pd.Series) -> pd.Series:
        order = ladder if column.name == "size" else report.order
        return column.map(lambda value: order.index(value) if value in order else len(order))

    return rank


def _front(frame: pd.DataFrame, cost: str) -> set[Any]:
    """Rows no other row beats on both loss and cost (at least as good on both, better on one)."""
    front = set()
    for index, row in frame.iterrows():
        others = frame.drop(index)
        dominated = (
            (others["best_val_loss"] <= row["best_val_loss"])
            & (others[cost] <= row[cost])
            & ((others["best_val_loss"] < row["best_val_loss"]) | (others[cost] < row[cost]))
        ).any()
        if not dominated:
            front.add(index)
    return front
