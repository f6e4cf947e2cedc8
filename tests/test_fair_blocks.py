"""The fair-comparison sections of a report (minigpt.report.fair) on a written ladder whose numbers
are known: the tuning table, the per-size table, summary.csv, the Pareto fronts (on wall or on
interleaved seconds) and which trials each of them reads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from minigpt.report.fair import (
    _front,
    _interval,
    fair_blocks,
    flops_kind,
    flops_per_token,
    interleaved_speeds,
    main_frames,
    pareto_blocks,
    per_size_table,
    size_sentences,
    summary_csv,
    tuning_blocks,
)
from minigpt.report.render import build
from tests.test_report import completed_fields

SIZES = ["xs (n_layer=4, n_embd=128)", "s (n_layer=5, n_embd=160)"]
# best val loss per size and seed: qk is 0.10 better at xs, 0.05 worse at s
LOSSES = {
    ("baseline", "xs"): [2.00, 2.02, 2.04],
    ("qk", "xs"): [1.90, 1.93, 1.93],
    ("baseline", "s"): [1.80, 1.82, 1.84],
    ("qk", "s"): [1.85, 1.86, 1.90],
}
PARAMS = {"xs": 1000, "s": 2000}
SCALE = {"xs": 1, "s": 2}  # the larger size costs twice the FLOPs and seconds
FLOPS_PER_TOKEN = {"baseline": 100.0, "qk": 120.0}
WALL = {"baseline": 3.0, "qk": 2.0}


def write(run: Path, trial_id: str, record: dict, losses: list[float]) -> None:
    directory = run / "trials" / trial_id
    directory.mkdir(parents=True)
    (directory / "trial.json").write_text(json.dumps({"trial_id": trial_id, **record}))
    points = [{"step": 10 * (i + 1), "tokens": 640 * (i + 1), "seconds": float(i), "train_loss": 3.0,
               "val_loss": loss, "lr": 1e-3, "tokens_per_sec": 900.0} for i, loss in enumerate(losses)]  # fmt: skip
    (directory / "metrics.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points))


def trial(variant: str, size: str, seed: int, best: float, stage: str = "eval", **extra: object) -> dict:
    return {
        **completed_fields(best, 1000.0), "variant": variant, "device": "cpu", "device_name": "test cpu",
        "seed": seed, "status": "completed", "changed": {} if variant == "baseline" else {"qk_norm": True},
        "description": variant, "error": None, "target_loss": 2.1, "stage": stage, "size": size,
        "params": PARAMS[size] + (10 if variant == "qk" else 0), "tokens": 1920,
        "total_flops_per_token": FLOPS_PER_TOKEN[variant] * SCALE[size], "flops_per_token": 90.0,
        "wall_seconds": WALL[variant] * SCALE[size], **extra,
    }  # fmt: skip


TUNING = {
    "xs/baseline/cpu": {"grid": [{"lr": 0.002}, {"lr": 0.004}, {"lr": 0.008}], "chosen": {"lr": 0.004},
                        "at_edge": [], "size": "xs", "own": {"lr": 0.004},
                        "curve": [{"lr": 0.002, "loss": 2.10}, {"lr": 0.004, "loss": 2.00}, {"lr": 0.008, "loss": 2.05}]},
    "xs/qk/cpu": {"grid": [{"lr": 0.004}, {"lr": 0.008}], "chosen": {"lr": 0.008}, "at_edge": ["lr"],
                  "size": "xs", "own": {"lr": 0.004}, "edge_reasons": {"lr": "the cap x64 was reached"}},
    "s/baseline/cpu": {"grid": [{"lr": 0.004}], "chosen": {}, "at_edge": [], "size": "s",
                       "untuned": "every tune-full trial failed"},
    "s/qk/cpu": {"grid": [{"lr": 0.002}, {"lr": 0.004}], "chosen": {"lr": 0.002}, "at_edge": ["lr"], "size": "s"},
}  # fmt: skip


@pytest.fixture
def ladder(tmp_path: Path) -> Path:
    """A tuned two-size ladder of baseline and qk on three seeds, with tuning trials far better than
    any evaluation trial."""
    run = tmp_path / "run"
    run.mkdir()
    fair = {"tune": ["lr"], "tune_seeds": [1000], "sizes": SIZES, "max_flops": None, "token_rule": 600_000}
    sweep = {"variants": ["baseline", "qk"], "devices": ["cpu"], "seeds": [0, 1, 2], "target_loss": 2.1,
             "fair": fair, "tuning": TUNING}  # fmt: skip
    (run / "sweep.json").write_text(json.dumps(sweep))
    for (variant, size), losses in LOSSES.items():
        for seed, best in enumerate(losses):
            write(run, f"{variant}--cpu--s{seed}--{size}", trial(variant, size, seed, best), [best + 0.5, best])
        tuning = trial(variant, size, 1000, 0.5, stage="tune-full", wall_seconds=0.1)
        write(run, f"{variant}--cpu--s1000--{size}--lr0.004", tuning, [0.6, 0.5])
    return run


def test_the_main_frames_hold_the_last_sizes_evaluation_trials_only(ladder: Path) -> None:
    report = build(ladder)
    assert set(report.trials["size"]) == {"s"} and set(report.trials["stage"]) == {"eval"}
    assert len(report.trials) == 6 and set(report.metrics["trial_id"]) == set(report.trials["trial_id"])
    nothing_evaluated = report.all_trials.assign(stage="tune-full")
    trials, points = main_frames(nothing_evaluated, report.all_metrics, report.sweep)
    assert len(trials) == len(nothing_evaluated) and len(points) == len(report.all_metrics)
    three = {**report.sweep, "fair": {**report.sweep["fair"], "sizes": ["xxs (n_embd=64)", *SIZES]}}
    trials, points = main_frames(report.all_trials, report.all_metrics, three)
    assert set(trials["size"]) == {"s"} and len(trials) == 6 and set(points["trial_id"]) == set(trials["trial_id"])


def test_the_tuning_table_gives_each_group_its_points_choice_and_edge(ladder: Path, tmp_path: Path) -> None:
    report = build(ladder)
    blocks = tuning_blocks(report, report.sweep["fair"], tmp_path)
    table = next(value for kind, value in blocks if kind == "table")
    assert table.columns == ["size", "variant", "device", "points trained", "chosen", "at an edge",
                             "loss rise at /2 / x2"]  # fmt: skip
    assert [row[:6] for row in table.rows] == [
        ["xs", "baseline", "cpu", "3", "lr=0.004", "no"],
        ["xs", "qk", "cpu", "2", "lr=0.008", "lr: the cap x64 was reached"],
        ["s", "baseline", "cpu", "1", "none: every tuning trial failed", "no"],
        ["s", "qk", "cpu", "2", "lr=0.002", "lr"],
    ]
    assert table.rows[0][6] == "+0.100 / +0.050" and table.rows[1][6] == "–"
    sentence = blocks[1][1]
    assert "Each variant's lr was tuned (lr) on seed(s) 1000, apart from the evaluation seeds 0, 1, 2" in sentence
    assert "at the full budget" in sentence and "cannot flatter them" in sentence
    flagged = [value for kind, value in blocks if kind == "p" and value.startswith("Still at an edge")]
    assert flagged == ["Still at an edge of its grid after growing: s/qk/cpu; its best value may lie beyond."]


def test_a_run_tuned_at_a_quarter_budget_says_so(ladder: Path, tmp_path: Path) -> None:
    report = build(ladder)
    report.sweep["tuning"] = {key: {k: v for k, v in info.items() if k != "curve"} for key, info in TUNING.items()}
    sentence = tuning_blocks(report, report.sweep["fair"], tmp_path)[1][1]
    assert "at a quarter of the budget" in sentence


def test_the_per_size_table_pairs_each_size_with_its_own_baseline(ladder: Path) -> None:
    from minigpt.report.size_gaps import per_size_summary

    table = per_size_table(per_size_summary(build(ladder)))
    rows = {(row[0], row[1]): row for row in table.rows}
    assert set(rows) == {("xs", "baseline"), ("xs", "qk"), ("s", "baseline"), ("s", "qk")}
    assert rows[("xs", "qk")][3] == "1,010" and rows[("s", "baseline")][3] == "2,000"
    assert rows[("xs", "qk")][4].startswith("1.9200 [") and rows[("s", "qk")][4].startswith("1.8700 [")
    assert rows[("xs", "qk")][6].startswith("-0.1000 [") and rows[("s", "qk")][6].startswith("+0.0500 [")
    assert rows[("xs", "baseline")][6] == "–" and rows[("xs", "baseline")][8] == "reference"
    assert rows[("xs", "qk")][8] == "better" and rows[("s", "qk")][8] == "worse"


def test_summary_csv_has_a_row_per_variant_and_size_in_ladder_order(ladder: Path) -> None:
    summary = summary_csv(build(ladder))
    assert list(zip(summary["size"], summary["variant"], strict=True)) == [
        ("xs", "baseline"), ("xs", "qk"), ("s", "baseline"), ("s", "qk")
    ]  # fmt: skip
    assert summary.set_index(["size", "variant"]).loc[("xs", "qk"), "best_val_loss"] == pytest.approx(1.92)
    assert "size" in summary.columns and summary["trials"].tolist() == [3, 3, 3, 3]


def test_summary_csv_of_a_ladder_of_three_sizes_has_every_size(ladder: Path) -> None:
    for variant, losses in (("baseline", [2.2, 2.3, 2.4]), ("qk", [2.1, 2.2, 2.3])):
        for seed, best in enumerate(losses):
            record = {**trial(variant, "xs", seed, best), "size": "xxs", "params": 500}
            write(ladder, f"{variant}--cpu--s{seed}--xxs", record, [best + 0.5, best])
    sweep = json.loads((ladder / "sweep.json").read_text())
    sweep["fair"]["sizes"] = ["xxs (n_embd=64)", *SIZES]
    (ladder / "sweep.json").write_text(json.dumps(sweep))
    report = build(ladder)
    summary = summary_csv(report)
    assert list(summary.columns) == list(report.summary.columns) and list(summary.index) == list(range(6))
    assert list(zip(summary["size"], summary["variant"], strict=True)) == [
        ("xxs", "baseline"), ("xxs", "qk"), ("xs", "baseline"), ("xs", "qk"), ("s", "baseline"), ("s", "qk")
    ]  # fmt: skip
    assert summary["best_val_loss"].tolist() == pytest.approx([2.3, 2.2, 2.02, 1.92, 1.82, 1.87])


def test_summary_csv_of_a_ladder_of_one_size_or_none_is_the_reports_summary_with_its_size(ladder: Path) -> None:
    report = build(ladder)  # the report's summary: the last size's, s
    report.sweep["fair"]["sizes"] = SIZES[1:]
    one = summary_csv(report)
    assert list(zip(one["size"], one["variant"], strict=True)) == [("s", "baseline"), ("s", "qk")]
    assert one["best_val_loss"].tolist() == pytest.approx([1.82, 1.87])
    report.sweep["fair"]["sizes"] = []
    assert summary_csv(report)["size"].isna().all()


def pareto(blocks: list) -> tuple[list[list[str]], list[str], list[str]]:
    table = next(value for kind, value in blocks if kind == "table")
    return table.rows, table.columns, [value for kind, value in blocks if kind in ("p", "h2")]


def test_the_pareto_fronts_read_total_flops_and_wall_seconds_of_the_evaluation_trials(ladder: Path) -> None:
    rows, columns, texts = pareto(pareto_blocks(build(ladder)))
    assert columns[5] == "wall s" and columns[-2:] == ["FLOPs front", "time front"]
    assert sorted(row[1] for row in rows) == ["baseline s", "baseline xs", "qk s", "qk xs"]
    by_name = {row[1]: row for row in rows}
    assert by_name["qk xs"][2] == "1.9200" and by_name["baseline s"][2] == "1.8200"
    assert by_name["baseline s"][4] == "384k" and by_name["qk xs"][4] == "230k"  # per token x 1920 tokens
    assert by_name["qk xs"][5] == "2.0" and by_name["baseline xs"][5] == "3.0"  # not the tuning trials' 0.1
    # qk s is beaten on FLOPs by the baseline s (better and cheaper), the baseline xs on time by qk xs
    assert [by_name[n][6] for n in ("baseline xs", "qk xs", "baseline s", "qk s")] == ["yes", "yes", "yes", ""]
    assert [by_name[n][7] for n in ("baseline xs", "qk xs", "baseline s", "qk s")] == ["", "yes", "yes", "yes"]
    front = next(text for text in texts if text.startswith("On cpu"))
    flops_front, time_front = front.removeprefix("On cpu, the front against FLOPs: ").split("; against wall seconds: ")
    assert sorted(flops_front.split(", ")) == ["baseline s", "baseline xs", "qk xs"]
    assert sorted(time_front.rstrip(".").split(", ")) == ["baseline s", "qk s", "qk xs"]
    assert texts[0] == "Pareto fronts: best loss against compute and against wall seconds"
    assert texts[-1].startswith("Wall seconds are each trial's own")


def test_the_pareto_table_lists_sizes_in_ladder_order_and_variants_in_the_reports_order_every_cell_written(
    ladder: Path,
) -> None:
    blocks = pareto_blocks(build(ladder))
    rows, columns, texts = pareto(blocks)
    assert columns == ["device", "variant", "best val loss", "bits/char", "FLOPs", "wall s", "FLOPs front",
                       "time front"]  # fmt: skip
    assert rows == [
        ["cpu", "baseline xs", "2.0200", "2.9142", "192k", "3.0", "yes", ""],
        ["cpu", "qk xs", "1.9200", "2.7700", "230k", "2.0", "yes", "yes"],
        ["cpu", "baseline s", "1.8200", "2.6257", "384k", "6.0", "yes", "yes"],
        ["cpu", "qk s", "1.8700", "2.6978", "461k", "4.0", "", "yes"],
    ]  # bits/char: nats / ln 2
    assert [kind for kind, _ in blocks] == ["h2", "table", "p", "p"]
    report = build(ladder)
    report.all_trials = report.all_trials.iloc[::-1]  # the order comes from the ladder and the report, not the trials
    assert pareto(pareto_blocks(report))[0] == rows
    assert texts[1] == (
        "On cpu, the front against FLOPs: baseline xs, qk xs, baseline s; against wall seconds: qk xs, baseline s, qk s."
    )


def test_equal_time_timing_of_a_run_of_one_size_gives_the_pareto_fronts_interleaved_seconds(ladder: Path) -> None:
    report = build(ladder)
    report.sweep["fair"]["sizes"] = []
    report.all_trials = report.all_trials.assign(size=None)
    timed = {"baseline": {"tokens_per_sec": 960.0}, "qk": {"tokens_per_sec": 1920.0}, "gone": {"error": "oom"}}
    report.sweep["equal_time"] = {"seconds": 2, "rounds": 3, "cells": {"cpu": {"variants": timed}}}
    rows, columns, _ = pareto(pareto_blocks(report))
    assert columns[5] == "interleaved s"
    assert {row[1]: row[5] for row in rows} == {"baseline": "2.0", "qk": "1.0"}  # 1920 tokens at each speed


def test_the_pareto_fronts_use_interleaved_seconds_wherever_every_variant_was_timed(ladder: Path) -> None:
    report = build(ladder)
    timed = {"baseline": {"tokens_per_sec": 960.0}, "qk": {"tokens_per_sec": 480.0}}  # qk half as fast
    report.sweep["equal_time"] = {"seconds": 2, "rounds": 3, "cells": {"xs/cpu": {"variants": timed},
                                                                       "s/cpu": {"variants": timed}}}  # fmt: skip
    rows, columns, texts = pareto(pareto_blocks(report))
    by_name = {row[1]: row for row in rows}
    assert columns[5] == "interleaved s"
    assert by_name["baseline xs"][5] == "2.0" and by_name["qk xs"][5] == "4.0"  # 1920 tokens at each speed
    assert texts[0].endswith("against interleaved seconds") and texts[-1].startswith("Seconds are each trial's tokens")
    del report.sweep["equal_time"]["cells"]["s/cpu"]["variants"]["qk"]  # one variant untimed: wall seconds
    assert pareto(pareto_blocks(report))[1][5] == "wall s"


def test_the_speed_phase_times_the_pareto_fronts_of_a_run_of_one_size(ladder: Path) -> None:
    from minigpt.report.speed_results import SpeedPhase

    report = build(ladder)
    frame = pd.DataFrame(
        {"variant": ["baseline", "qk"], "device": "cpu", "interleaved_tokens_per_sec": [1920.0, 960.0]}
    )
    report.speed = SpeedPhase(frame, rounds=10)
    assert pareto(pareto_blocks(report))[1][5] == "wall s"  # a ladder: the phase timed one size only
    report.sweep["fair"]["sizes"] = []
    report.all_trials = report.all_trials.assign(size=None)
    rows = pareto(pareto_blocks(report))[0]
    assert {row[1]: row[5] for row in rows} == {"baseline": "1.0", "qk": "2.0"}


def test_the_fair_sections_come_in_order_and_only_for_a_fair_sweep(ladder: Path, tmp_path: Path) -> None:
    report = build(ladder)
    blocks = fair_blocks(report, tmp_path)
    headings = [value for kind, value in blocks if kind == "h2"]
    assert headings == ["Fair comparison", "Tuning", "Difference from the baseline per size",
                        "Pareto fronts: best loss against compute and against wall seconds"]  # fmt: skip
    assert blocks[1] == ("p", "The tables and figures above show size s; every size follows.")
    assert {value[0] for kind, value in blocks if kind == "figure"} >= {"diff_vs_params.png", "loss_vs_flops.png"}
    report.sweep["fair"] = {"tune": [], "tune_seeds": [], "sizes": [], "max_flops": None}  # --seeds auto alone
    assert fair_blocks(report, tmp_path) == []


FULL_BUDGET_METHOD = (
    "every point at the full budget: the variant's own value and a step either side, stepping outward while the "
    "best lay at an edge (until it was interior, the next value diverged or failed, or the cap x1/64..x64 was "
    "reached), the choice the best of a quadratic fitted in log value through the best points, and never a value "
    "that scored worse than the variant's own on the tuning seeds"
)
QUARTER_BUDGET_METHOD = (
    "every grid point at a quarter of the budget (the grid growing a step where the best lay at its edge, at most "
    "twice), the best half at the full budget, and the best of those chosen"
)


@pytest.mark.parametrize(
    ("curves", "method"), [(True, FULL_BUDGET_METHOD), (False, QUARTER_BUDGET_METHOD)], ids=["full", "quarter"]
)
def test_the_tuning_sentence_names_every_key_its_axes_its_seeds_and_the_method(
    ladder: Path, tmp_path: Path, curves: bool, method: str
) -> None:
    """Two axes (a relative grid and given values) on two tuning seeds: each key once, by name only, the
    axes as given, both seed lists, and the rule the choice followed, in one sentence under the heading."""
    report = build(ladder)
    if not curves:
        report.sweep["tuning"] = {key: {k: v for k, v in info.items() if k != "curve"} for key, info in TUNING.items()}
    fair = {**report.sweep["fair"], "tune": ["lr x 0.5,1,2", "warmup_steps=10,20"], "tune_seeds": [1000, 1001]}
    blocks = tuning_blocks(report, fair, tmp_path)
    assert blocks[:2] == [
        ("h2", "Tuning"),
        ("p", "Each variant's lr and warmup_steps were tuned (lr x 0.5,1,2; warmup_steps=10,20) on seed(s) 1000, "
              f"1001, apart from the evaluation seeds 0, 1, 2: {method}; the verdicts use only the evaluation seeds, "
              "so the choice cannot flatter them."),
    ]  # fmt: skip


def test_a_tuning_table_of_one_size_shows_no_size_every_chosen_key_and_every_group_left_at_an_edge(
    ladder: Path, tmp_path: Path
) -> None:
    """A run without --sizes records no size: the size cell is a dash. A choice of two keys names both;
    an empty choice is a dash like every empty cell; every group still at an edge is named."""
    report = build(ladder)
    report.sweep["tuning"] = {
        "baseline/cpu": {"grid": [{"lr": 0.002, "warmup_steps": 10}, {"lr": 0.004, "warmup_steps": 20}],
                         "chosen": {"lr": 0.004, "warmup_steps": 20}, "at_edge": ["lr"], "size": None},
        "qk/cpu": {"grid": [{"lr": 0.004, "warmup_steps": 10}], "chosen": {}, "at_edge": ["warmup_steps"],
                   "size": None},
    }  # fmt: skip
    blocks = tuning_blocks(report, {**report.sweep["fair"], "tune": ["lr", "warmup_steps"]}, tmp_path)
    table = next(value for kind, value in blocks if kind == "table")
    assert table.rows == [
        ["–", "baseline", "cpu", "2", "lr=0.004, warmup_steps=20", "lr", "–"],
        ["–", "qk", "cpu", "1", "–", "warmup_steps", "–"],
    ]
    assert blocks[-1] == (
        "p",
        "Still at an edge of its grid after growing: baseline/cpu, qk/cpu; its best value may lie beyond.",
    )


def size_row(size: str, variant: str, verdict: str, **values: float) -> dict:
    """One row of the per-size summary: a variant's loss, bits and difference with their intervals."""
    return {"size": size, "variant": variant, "device": "cpu", "params": 12_345.0, "best_val_loss": 1.5,
            "best_val_loss_low": 1.25, "best_val_loss_high": 1.75, "best_val_bpc": 2.0,
            "diff_vs_baseline": -0.125, "diff_low": -0.25, "diff_high": 0.0625, "p_adjusted": 1.2e-5,
            "verdict": verdict, **values}  # fmt: skip


def test_the_per_size_table_writes_every_cell_of_a_row_and_a_dash_for_what_is_missing() -> None:
    summary = pd.DataFrame([size_row("xs", "qk", "better"),
                            size_row("xs", "baseline", "reference", diff_vs_baseline=math.nan, diff_low=math.nan,
                                     diff_high=math.nan, p_adjusted=math.nan, best_val_loss_low=math.nan,
                                     best_val_loss_high=math.nan)])  # fmt: skip
    table = per_size_table(summary)
    assert table.columns == ["size", "variant", "device", "params", "best val loss [95%]", "bits/char",
                             "Δ vs baseline [adjusted interval]", "adjusted p", "verdict"]  # fmt: skip
    assert table.rows == [
        ["xs", "qk", "cpu", "12,345", "1.5000 [1.2500, 1.7500]", "2.0000", "-0.1250 [-0.2500, +0.0625]", "1.2e-05",
         "better"],
        ["xs", "baseline", "cpu", "12,345", "1.5000", "2.0000", "–", "–", "reference"],
    ]  # fmt: skip


def test_an_interval_without_bounds_is_its_mean_in_the_given_format() -> None:
    assert _interval(0.125, math.nan, math.nan, "+.4f") == "+0.1250"
    assert _interval(0.125, -0.5, 0.75, "+.2f") == "+0.12 [-0.50, +0.75]"


def test_one_sentence_per_variant_in_the_summarys_order_naming_the_sizes_it_helps_and_hurts_at() -> None:
    rows = [("zeta", ["better", "better", "worse"]), ("alpha", ["worse", "same", "worse"]),
            ("baseline", ["reference"] * 3), ("mid", ["better"] * 3)]  # fmt: skip
    summary = pd.DataFrame(
        [size_row(size, variant, verdict) for variant, verdicts in rows for size, verdict in
         zip(["xs", "s", "m"], verdicts, strict=True)]
    )  # fmt: skip
    assert size_sentences(summary) == [
        "zeta on cpu helps only at some sizes (xs, s of xs, s, m). It is worse at m.",
        "alpha on cpu helps at no size. It is worse at xs, m.",
        "mid on cpu helps at every size (xs, s, m).",
    ]


def test_the_flops_kind_is_the_total_only_where_every_trial_recorded_it() -> None:
    total = "total: model, attention as computed, norms, optimizer"
    assert flops_kind(pd.DataFrame({"total_flops_per_token": [1.0, 2.0], "flops_per_token": [1.0, 1.0]})) == total
    assert flops_kind(pd.DataFrame({"total_flops_per_token": [1.0, None], "flops_per_token": [1.0, 1.0]})) == (
        "model FLOPs"
    )
    assert flops_kind(pd.DataFrame({"flops_per_token": [1.0]})) == "model FLOPs"


def test_flops_per_token_are_the_total_where_every_trial_recorded_it_else_the_models() -> None:
    both = pd.DataFrame({"total_flops_per_token": [3.0, 4.0], "flops_per_token": [1.0, 2.0]})
    assert flops_per_token(both).tolist() == [3.0, 4.0]
    assert flops_per_token(both.assign(total_flops_per_token=[3.0, None])).tolist() == [1.0, 2.0]
    assert flops_per_token(both.drop(columns="total_flops_per_token")).tolist() == [1.0, 2.0]  # a run from before


def test_interleaved_speeds_skip_a_device_the_timing_skipped_and_need_a_timed_speed(ladder: Path) -> None:
    from minigpt.report.speed_results import SpeedPhase

    report = build(ladder)
    report.sweep["fair"]["sizes"] = []
    assert report.speed is None and interleaved_speeds(report) == {}  # one size, nothing timed
    cells = {"cpu": {"variants": {"baseline": {"tokens_per_sec": 960.0}, "qk": {"error": "oom"}}},
             "cuda": {"skipped": "no such device"}}  # fmt: skip
    report.sweep["equal_time"] = {"seconds": 2, "rounds": 3, "cells": cells}
    assert interleaved_speeds(report) == {(None, "cpu", "baseline"): 960.0}
    del report.sweep["equal_time"]
    frame = pd.DataFrame({"variant": ["baseline", "qk", "gqa"], "device": "cpu",
                          "interleaved_tokens_per_sec": [1920.0, 960.0, math.nan],
                          "speed_ratio_low": [math.nan, 0.45, math.nan]})  # fmt: skip
    report.speed = SpeedPhase(frame, rounds=10)
    assert interleaved_speeds(report) == {(None, "cpu", "baseline"): 1920.0, (None, "cpu", "qk"): 960.0}


def test_the_pareto_flops_of_a_run_from_before_total_flops_are_model_flops(ladder: Path) -> None:
    report = build(ladder)
    report.all_trials = report.all_trials.assign(total_flops_per_token=math.nan, total_flops=math.nan)
    rows = pareto(pareto_blocks(report))[0]
    assert [row[4] for row in rows] == ["173k"] * 4  # 90 model FLOPs per token x 1920 tokens


def test_the_pareto_devices_come_in_the_order_their_trials_do(ladder: Path) -> None:
    report = build(ladder)
    report.all_trials = pd.concat([report.all_trials.assign(device="mps"), report.all_trials], ignore_index=True)
    rows, _, texts = pareto(pareto_blocks(report))
    assert [row[0] for row in rows] == ["mps"] * 4 + ["cpu"] * 4
    assert [text[:7] for text in texts if text.startswith("On ")] == ["On mps,", "On cpu,"]


def test_a_row_is_off_the_front_where_another_is_as_cheap_and_better_or_as_good_and_cheaper() -> None:
    frame = pd.DataFrame({"best_val_loss": [1.0, 1.1, 0.9, 1.0, 1.0], "flops": [10.0, 10.0, 20.0, 10.0, 12.0]},
                         index=["a", "b", "c", "same as a", "dearer than a"])  # fmt: skip
    assert _front(frame, "flops") == {"a", "c", "same as a"}


@pytest.mark.parametrize(
    "option",
    [{"tune": ["lr"], "tune_seeds": [1000]}, {"sizes": SIZES}, {"max_flops": 1e9}, {"equal_time": 2.0}],
    ids=["tune", "sizes", "max_flops", "equal_time"],
)
def test_any_one_fair_option_alone_gives_the_fair_sections(ladder: Path, tmp_path: Path, option: dict) -> None:
    report = build(ladder)
    report.sweep["fair"] = {"tune": [], "tune_seeds": [], "sizes": [], "max_flops": None, **option}
    blocks = fair_blocks(report, tmp_path)
    assert blocks[0] == ("h2", "Fair comparison") and ("h2", "Difference from the baseline per size") in blocks


def test_the_fair_sections_give_the_figures_what_they_draw_and_say_what_each_size_shows(
    ladder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-size table and one sentence per variant under their heading; the figure of the difference
    against parameters gets the per-size summary and the size trends at the report's error rate; a figure
    that could not be drawn (None) is left out."""
    from dataclasses import replace

    from minigpt.report import fair_figures
    from minigpt.report.size_gaps import evaluation_trials, per_size_summary, size_trends

    drawn: list = []
    monkeypatch.setattr(fair_figures, "plot_difference_vs_params", lambda *args: drawn.append(args) or args[1])
    flops_paths: list = []
    monkeypatch.setattr(fair_figures, "plot_loss_vs_flops", lambda report, path: flops_paths.append(path))  # None
    report = build(ladder)
    report.design = replace(report.design, alpha=0.01)
    blocks = fair_blocks(report, tmp_path)
    start = blocks.index(("h2", "Difference from the baseline per size"))
    assert (
        blocks[start + 1][0] == "table" and blocks[start + 1][1].rows == per_size_table(per_size_summary(report)).rows
    )
    assert blocks[start + 2 : start + 4] == [
        ("p", "qk on cpu helps only at some sizes (xs of xs, s)."),  # at alpha 0.01 its +0.05 at s is undecided
        ("figure", ("diff_vs_params.png", fair_figures.DIFF_CAPTION)),
    ]
    assert "loss_vs_flops.png" not in [value[0] for kind, value in blocks if kind == "figure"]  # not drawn
    ((summary, path, given, trends),) = drawn
    assert path == tmp_path / "diff_vs_params.png" and given is report
    assert flops_paths == [tmp_path / "loss_vs_flops.png"]
    assert summary.equals(per_size_summary(report))
    assert trends == size_trends(evaluation_trials(report), report.order, 0.01)
    assert trends[("qk", "cpu")].confidence == pytest.approx(0.99)


def test_the_fair_sections_name_the_last_size_of_a_ladder_as_the_one_shown_above(ladder: Path, tmp_path: Path) -> None:
    report = build(ladder)
    report.sweep["fair"]["sizes"] = ["xxs (n_embd=64)", *SIZES]  # a first size with no trial yet
    assert fair_blocks(report, tmp_path)[1] == ("p", "The tables and figures above show size s; every size follows.")
