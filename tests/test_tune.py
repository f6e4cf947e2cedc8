"""The tuning grid, its growth at the edges and the seeds it runs on (pure: no training)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from minigpt import tune
from minigpt.config import Config


def run_search(search: tune.Search, loss: Callable[[tune.Point, int], float | None]) -> int:
    """Drive a search as the tuning stage does; returns how many trials it asked for."""
    asked = 0
    while points := search.wanted():
        for point in points:
            for seed in search.seeds:
                search.record(point, seed, loss(point, seed))
                asked += 1
    return asked


def bowl(optimum: float, diverge_above: float = math.inf) -> Callable[[tune.Point, int], float | None]:
    """A loss that is a parabola in log lr around `optimum`, None (diverged) above a value."""
    return lambda point, _seed: None if point["lr"] > diverge_above else 1.5 + math.log(point["lr"] / optimum) ** 2


def test_a_relative_lr_search_starts_at_half_own_and_twice_with_min_lr_following() -> None:
    config = Config(lr=0.004, min_lr=0.0004)
    search = tune.Search(tune.parse_tune(["lr"], config), config, [1000])
    assert [p["lr"] for p in search.wanted()] == pytest.approx([0.002, 0.004, 0.008])
    assert tune.apply_point(config, {"lr": 0.016}).min_lr == pytest.approx(0.0016)


@pytest.mark.parametrize("factor", [0.25, 0.5, 1.0, 2.0, 4.0])
def test_variants_that_only_multiply_the_lr_choose_the_same_absolute_lr_at_the_same_configuration(
    factor: float,
) -> None:
    """The issue's check: x1/4..x4 of the baseline's lr all reach the baseline's own lr, and the
    configuration there is the baseline's to the bit (min_lr included), so they train alike."""
    base = Config(lr=0.015, min_lr=0.0015)
    config = base.replace(lr=base.lr * factor, min_lr=base.min_lr * factor)
    search = tune.Search(tune.parse_tune(["lr"], config), config, [1000])
    asked = run_search(search, bowl(0.015))
    choice = search.choose()
    assert choice.point == {"lr": 0.015} and choice.at_edge == {}
    assert tune.apply_point(config, choice.point) == base
    assert asked == 3 + abs(round(math.log2(factor)))  # the bracket, and one step per doubling away


def test_the_search_grows_to_an_interior_optimum_far_beyond_the_starting_values() -> None:
    config = Config(lr=1e-3, min_lr=1e-4)
    search = tune.Search(tune.parse_tune(["lr"], config), config, [1000])
    run_search(search, bowl(16e-3))
    choice = search.choose()
    assert choice.point == {"lr": pytest.approx(16e-3)} and choice.at_edge == {}
    assert search.trained({"lr": 32e-3}) and not search.trained({"lr": 64e-3})


def test_an_edge_choice_says_whether_the_next_value_diverged_or_the_cap_was_reached() -> None:
    config = Config(lr=1e-3, min_lr=1e-4)
    search = tune.Search(tune.parse_tune(["lr"], config), config, [1000])
    run_search(search, bowl(1.0, diverge_above=5e-3))  # better and better until it diverges
    choice = search.choose()
    assert choice.point == {"lr": 4e-3}
    assert choice.at_edge == {"lr": "higher edge: the next value (lr=0.008) diverged or failed"}
    capped = tune.Search(tune.parse_tune(["lr"], config), config, [1000])
    run_search(capped, bowl(1.0))
    assert capped.choose().point == {"lr": pytest.approx(64e-3)}  # x64 of its own value, and no further
    assert "the cap (lr 1.5625e-05..0.064) was reached" in capped.choose().at_edge["lr"]


def test_the_choice_follows_the_fit_through_five_points_and_never_scores_worse_than_the_own_value() -> None:
    values = [0.25, 0.5, 1.0, 2.0, 4.0]
    # log2 distance -2..2; a smooth bowl centred between 1 and 2, with the raw minimum at 1 by noise
    fit = tune.fit_quadratic("lr", values, [1.0 + (math.log2(v) - 0.6) ** 2 for v in values])
    assert fit.optimum == pytest.approx(2**0.6)
    config = Config(lr=1.0, min_lr=0.1)
    noisy = {0.25: 8.0, 0.5: 3.0, 1.0: 1.04, 2.0: 1.05, 4.0: 1.6, 0.125: 9.0, 8.0: 9.0}
    grid = ["lr=0.25,0.5,1,2,4"]  # a bracket alone has three points: given values give five
    search = tune.Search(tune.parse_tune(grid, config), config, [1000])
    run_search(search, lambda p, _s: noisy[p["lr"]])
    choice = search.choose()
    assert choice.fits["lr"].values == (0.25, 0.5, 1.0, 2.0, 4.0)
    assert choice.point == {"lr": 1.0} and choice.guarded  # the fit prefers 2, which scored worse than own
    elsewhere = Config(lr=4.0, min_lr=0.4)  # the same losses seen from a variant whose own value is 4
    search = tune.Search(tune.parse_tune(grid, elsewhere), elsewhere, [1000])
    run_search(search, lambda p, _s: noisy[p["lr"]])
    assert search.choose().point == {"lr": 2.0} and not search.choose().guarded


def test_two_tuning_seeds_average_and_each_seed_alone_can_be_chosen_on() -> None:
    config = Config(lr=1.0, min_lr=0.1)
    search = tune.Search(tune.parse_tune(["lr"], config), config, [7, 8])
    run_search(search, lambda p, seed: 1.0 + math.log2(p["lr"] / (0.5 if seed == 7 else 2.0)) ** 2)
    assert search.choose([7]).point == {"lr": 0.5} and search.choose([8]).point == {"lr": 2.0}
    assert search.choose().point == {"lr": 1.0}  # the mean over both seeds is lowest at 1


def test_given_values_include_the_variants_own_and_a_grid_with_zero_grows_arithmetically() -> None:
    config = Config(weight_decay=0.05)
    search = tune.Search(tune.parse_tune(["weight_decay=0,0.1"], config), config, [1000])
    assert [p["weight_decay"] for p in search.wanted()] == pytest.approx([0.0, 0.05, 0.1])
    run_search(search, lambda p, _s: 2.0 - p["weight_decay"])  # ever better with more decay
    choice = search.choose()
    assert choice.point == {"weight_decay": pytest.approx(0.4)}  # 0.1 plus six steps of 0.05: the cap
    assert "cap" in choice.at_edge["weight_decay"]
    lowest = tune.Search(tune.parse_tune(["weight_decay=0,0.1"], config), config, [1000])
    run_search(lowest, lambda p, _s: 2.0 + p["weight_decay"])
    assert lowest.choose().point == {"weight_decay": 0.0}
    assert "lower edge" in lowest.choose().at_edge["weight_decay"]


def test_a_product_grid_searches_each_key_from_the_best_point() -> None:
    config = Config(lr=1e-3, min_lr=1e-4, weight_decay=0.1)
    axes = tune.parse_tune(["lr", "weight_decay=0.05,0.2"], config)
    search = tune.Search(axes, config, [1000])
    assert len(search.wanted()) == 9
    run_search(search, lambda p, _s: math.log(p["lr"] / 4e-3) ** 2 + math.log(p["weight_decay"] / 0.1) ** 2)
    assert search.choose().point == {"lr": pytest.approx(4e-3), "weight_decay": pytest.approx(0.1)}
    assert search.choose().at_edge == {}


def test_nothing_finished_means_nothing_chosen() -> None:
    config = Config(lr=1e-3, min_lr=1e-4)
    search = tune.Search(tune.parse_tune(["lr"], config), config, [1000])
    assert run_search(search, lambda _p, _s: None) == 3
    assert search.choose().point is None


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
