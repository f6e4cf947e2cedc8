"""The report's tuning parts: the curve per variant, the loss rise at half and twice the choice,
the seeds' spread, the reason an edge choice gives, and the changes column's tuned values."""

from __future__ import annotations

from pathlib import Path

import pytest

from minigpt import tune
from minigpt.config import Config
from minigpt.report.frames import describe_changes
from minigpt.report.tuning import (
    curves,
    edge_text,
    seed_spread,
    sensitivity,
    sensitivity_text,
    tuning_figure_blocks,
)


def searched(own_lr: float, seeds: list[int], loss) -> dict:  # noqa: ANN001
    """sweep.json's "tuning" entry of one group, as the tuning stage writes it."""
    config = Config(lr=own_lr, min_lr=own_lr / 10)
    search = tune.Search(tune.parse_tune(["lr"], config), config, seeds)
    while points := search.wanted():
        for point in points:
            for seed in seeds:
                search.record(point, seed, loss(point["lr"], seed))
    choice = search.choose()
    return {"grid": search.points, "chosen": choice.point, "at_edge": list(choice.at_edge)} | tune.describe_search(
        search
    )


def bowl(lr: float, _seed: int) -> float:
    return 2.0 + {0.0025: 0.3, 0.005: 0.1, 0.01: 0.0, 0.02: 0.04, 0.04: 0.2}[lr]


def test_the_curve_runs_along_the_tuned_value_and_the_rises_are_read_at_half_and_twice_the_choice() -> None:
    info = searched(0.005, [1000], bowl)
    assert info["chosen"] == {"lr": 0.01}
    ((key, line, chosen),) = curves({"half-lr/cpu": info}).values()
    assert key == "lr" and chosen == 0.01
    assert [value for value, _ in line] == [0.0025, 0.005, 0.01, 0.02]
    assert sensitivity(line, chosen) == (pytest.approx(0.1), pytest.approx(0.04))
    assert sensitivity_text(info) == "+0.100 / +0.040"
    assert sensitivity(line, 0.0025) == (None, pytest.approx(0.1 - 0.3))  # nothing trained at half


def test_two_tuning_seeds_choices_are_reported_with_their_ratio() -> None:
    def loss(lr: float, seed: int) -> float:
        return bowl(lr, seed) if seed == 1000 else 2.0 + {0.0025: 0.5, 0.005: 0.3, 0.01: 0.1, 0.02: 0.0, 0.04: 0.05}[lr]

    info = searched(0.01, [1000, 1001], loss)
    assert info["per_seed"] == {"1000": {"lr": 0.01}, "1001": {"lr": 0.02}}
    assert seed_spread({"baseline/cpu": info}) == [
        "baseline/cpu: tuned on each seed alone, lr would be seed 1000: 0.01, seed 1001: 0.02 (x2 apart)."
    ]
    assert seed_spread({"baseline/cpu": searched(0.01, [1000], bowl)}) == []


def test_an_edge_choice_says_why_and_an_old_run_names_the_key_alone() -> None:
    info = searched(0.01, [1000], lambda lr, _seed: None if lr > 0.02 else 3.0 - lr)
    assert info["chosen"] == {"lr": 0.02}
    assert edge_text(info) == "lr: higher edge: the next value (lr=0.04) diverged or failed"
    assert edge_text({"at_edge": ["lr"]}) == "lr" and edge_text({"at_edge": []}) == "no"


def test_the_changes_column_shows_tuned_values_in_place_of_the_variants_own() -> None:
    changed = {"optimizer": "adamw", "lr": 0.0075, "min_lr": 0.00075}
    assert describe_changes(changed, {"lr": 0.00375}) == "optimizer=adamw, lr=0.00375 (tuned)"
    assert describe_changes({}, {"lr": 0.015}) == "lr=0.015 (tuned)"
    assert describe_changes(changed) == "optimizer=adamw, lr=0.0075, min_lr=0.00075"


def test_the_figures_are_drawn_for_recorded_curves_and_skipped_for_runs_without_them(tmp_path: Path) -> None:
    tuning = {"baseline/cpu": searched(0.01, [1000], bowl), "half-lr/cpu": searched(0.005, [1000], bowl)}
    blocks = tuning_figure_blocks(tuning, {}, tmp_path)
    assert [b[1][0] for b in blocks if b[0] == "figure"] == ["tuning_curves.png", "tuning_sensitivity.png"]
    assert (tmp_path / "tuning_curves.png").stat().st_size > 0
    old = {"baseline/cpu": {"grid": [{"lr": 0.01}], "chosen": {"lr": 0.01}, "at_edge": []}}
    assert tuning_figure_blocks(old, {}, tmp_path / "old") == []
