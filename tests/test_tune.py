"""The tuning grid, its growth at the edges and the seeds it runs on (pure: no training)."""

from __future__ import annotations

import pytest

from minigpt import tune
from minigpt.config import Config


def test_a_relative_lr_grid_spans_a_quarter_to_four_times_with_min_lr_following() -> None:
    config = Config(lr=0.004, min_lr=0.0004)
    grid = tune.initial_grid(tune.parse_tune(["lr"], config), config)
    assert [p["lr"] for p in grid] == pytest.approx([0.001, 0.002, 0.004, 0.008, 0.016])
    assert tune.apply_point(config, {"lr": 0.016}).min_lr == pytest.approx(0.0016)


def test_two_axes_make_a_product_grid_of_absolute_values() -> None:
    axes = tune.parse_tune(["lr=1e-3,3e-3", "weight_decay=0,0.1"], Config())
    grid = tune.initial_grid(axes, Config())
    assert len(grid) == 4 and {"lr": 3e-3, "weight_decay": 0.1} in grid


def test_the_best_at_the_top_edge_grows_one_geometric_step_and_a_middle_best_does_not() -> None:
    grid = [{"lr": v} for v in (1e-3, 2e-3, 4e-3)]
    assert tune.grow({"lr": 4e-3}, grid, Config()) == [{"lr": pytest.approx(8e-3)}]
    assert tune.grow({"lr": 1e-3}, grid, Config()) == [{"lr": pytest.approx(5e-4)}]
    assert tune.grow({"lr": 2e-3}, grid, Config()) == []


def test_a_grid_with_zero_grows_arithmetically_and_never_below_zero() -> None:
    grid = [{"weight_decay": v} for v in (0.0, 0.05, 0.1)]
    assert tune.grow({"weight_decay": 0.1}, grid, Config()) == [{"weight_decay": pytest.approx(0.15)}]
    assert tune.grow({"weight_decay": 0.0}, grid, Config()) == []


def test_points_that_never_finished_rank_last_and_ties_keep_grid_order() -> None:
    grid = [{"lr": 1}, {"lr": 2}, {"lr": 3}]
    scores = [tune.score([2.0, None]), tune.score([1.5]), tune.score([1.5])]
    assert tune.ranked(grid, scores) == [{"lr": 2}, {"lr": 3}, {"lr": 1}]
    assert tune.promoted_count(5) == 2 and tune.promoted_count(9) == 4 and tune.promoted_count(1) == 1


def test_the_default_tuning_seed_is_never_an_evaluation_seed() -> None:
    assert tune.parse_tune_seeds(None, [0, 1, 2]) == [1000]
    assert tune.parse_tune_seeds(None, [1000, 1001]) == [1002]
    with pytest.raises(tune.TuneError, match="also an evaluation seed"):
        tune.parse_tune_seeds("7,1", [0, 1, 2])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bogus", "not a numeric configuration key"),
        ("optimizer", "not a numeric configuration key"),
        ("lr=", "has no values"),
        ("lr=a,b", "expects numbers"),
        ("lr=-1", "not negative"),
        ("lr=0", "lr must be > 0"),
        ("n_layer=1.5", "whole numbers"),
    ],
)
def test_bad_tune_specs_are_refused_with_a_reason(spec: str, message: str) -> None:
    with pytest.raises(tune.TuneError, match=message):
        tune.parse_tune([spec], Config())
