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
    assert search.choose() == tune.Choice(None, {}, {})


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


def test_a_fit_over_a_grid_with_zero_is_a_quadratic_in_the_value_itself() -> None:
    values = [0.0, 0.1, 0.2]
    fit = tune.fit_quadratic("weight_decay", values, [1.0 + (v - 0.12) ** 2 for v in values])
    assert not fit.log
    assert fit.optimum == pytest.approx(0.12)
    assert fit.x(0.1) == 0.1
    assert fit.loss(0.0) == pytest.approx(1.0144) and fit.loss(0.3) == pytest.approx(1.0324)


def test_a_fit_in_log_value_reproduces_the_losses_it_went_through() -> None:
    values = [0.5, 1.0, 2.0]
    losses = [3.0, 2.0, 2.5]
    fit = tune.fit_quadratic("lr", values, losses)
    assert fit.log and fit.x(2.0) == pytest.approx(math.log(2.0))
    assert [fit.loss(v) for v in values] == pytest.approx(losses)


def test_a_fit_through_one_repeated_value_is_flat_at_the_lowest_loss() -> None:
    fit = tune.fit_quadratic("lr", [1.0, 1.0, 1.0], [3.0, 2.0, 4.0])
    assert fit == tune.Fit("lr", (1.0, 1.0, 1.0), (3.0, 2.0, 4.0), (0.0, 0.0, 2.0), log=True)
    assert fit.optimum is None


def test_a_fit_refuses_values_and_losses_of_different_lengths() -> None:
    with pytest.raises(ValueError):
        tune.fit_quadratic("lr", [0.5, 1.0, 2.0], [3.0, 2.0])


def test_a_fit_describes_itself_for_sweep_json() -> None:
    fit = tune.fit_quadratic("lr", [0.5, 1.0, 2.0], [2.0, 1.0, 2.0])
    described = fit.describe()
    assert described == {
        "key": "lr",
        "values": [0.5, 1.0, 2.0],
        "losses": [2.0, 1.0, 2.0],
        "coefficients": list(fit.coefficients),
        "log": True,
        "optimum": pytest.approx(1.0),
    }
    assert fit.coefficients == pytest.approx((1 / math.log(2) ** 2, 0.0, 1.0), abs=1e-12)


@pytest.mark.parametrize(
    ("optimum", "asked"),
    [
        (81e-3, [1e-3, 3e-3, 9e-3, 27e-3, 81e-3, 243e-3]),
        (1e-3 / 9, [1e-3 / 27, 1e-3 / 9, 1e-3 / 3, 1e-3, 3e-3, 9e-3]),
    ],
)
def test_given_positive_values_grow_by_the_ratio_of_the_last_two_on_either_side(
    optimum: float, asked: list[float]
) -> None:
    config = Config(lr=9e-3, min_lr=9e-4)  # given 1e-3 and 3e-3 and its own 9e-3: a ratio of 3
    search = tune.Search(tune.parse_tune(["lr=1e-3,3e-3"], config), config, [1000])
    run_search(search, bowl(optimum))
    assert sorted(p["lr"] for p in search.points) == pytest.approx(asked)
    assert search.choose().point == {"lr": pytest.approx(optimum)}


def test_one_given_value_besides_the_variants_own_is_enough_to_step_by() -> None:
    config = Config(lr=3e-3, min_lr=3e-4)
    search = tune.Search(tune.parse_tune(["lr=1e-3"], config), config, [1000])
    run_search(search, bowl(1e-3 / 9))
    assert sorted(p["lr"] for p in search.points) == pytest.approx([1e-3 / 27, 1e-3 / 9, 1e-3 / 3, 1e-3, 3e-3])
    alone = tune.Search(tune.parse_tune(["lr=3e-3"], config), config, [1000])  # only its own value: no step
    run_search(alone, bowl(1e-3 / 9))
    assert alone.points == [{"lr": 3e-3}]
    assert alone.choose().at_edge == {"lr": "lower edge: the configuration allows no value beyond"}


def test_an_integer_key_stops_where_a_step_no_longer_moves_or_leaves_the_cap() -> None:
    def fewer_is_better(point: tune.Point, _seed: int) -> float:
        return 1.0 + point["warmup_steps"]

    config = Config(warmup_steps=1)  # a relative grid of 0, 1, 2: half of 0 is 0 again
    search = tune.Search(tune.parse_tune(["warmup_steps"], config), config, [1000])
    run_search(search, fewer_is_better)
    assert search.choose().point == {"warmup_steps": 0}
    assert search.choose().at_edge == {"warmup_steps": "lower edge: the configuration allows no value beyond"}
    config = Config(warmup_steps=4)  # 2, 4, 8, then 1; half of 1 rounds to 0, below the cap of 4/64
    search = tune.Search(tune.parse_tune(["warmup_steps"], config), config, [1000])
    run_search(search, fewer_is_better)
    assert sorted(p["warmup_steps"] for p in search.points) == [1, 2, 4, 8]
    assert search.choose().at_edge == {"warmup_steps": "lower edge: the cap (warmup_steps 0.0625..256) was reached"}


def test_the_search_describes_its_curve_fits_own_point_and_each_seeds_choice() -> None:
    config = Config(lr=1e-3, min_lr=1e-4)
    search = tune.Search(tune.parse_tune(["lr"], config), config, [7, 8])
    run_search(search, lambda p, seed: None if p["lr"] > 5e-3 else 2.0 - 100 * p["lr"] + seed / 100)
    described = tune.describe_search(search)
    assert described == {
        "edge_reasons": {"lr": "higher edge: the next value (lr=0.008) diverged or failed"},
        "own": {"lr": 1e-3},
        "curve": [
            {"lr": 5e-4, "loss": pytest.approx(2.025)},
            {"lr": 1e-3, "loss": pytest.approx(1.975)},
            {"lr": 2e-3, "loss": pytest.approx(1.875)},
            {"lr": 4e-3, "loss": pytest.approx(1.675)},
            {"lr": 8e-3, "loss": None},  # diverged: no loss
        ],
        "fits": {},  # the best has one finished neighbour: no curve through three points
        "kept_own": False,
        "per_seed": {"7": {"lr": 4e-3}, "8": {"lr": 4e-3}},
    }


def test_one_tuning_seed_has_no_per_seed_choices_and_its_fit_is_described() -> None:
    config = Config(lr=1e-3, min_lr=1e-4)
    search = tune.Search(tune.parse_tune(["lr"], config), config, [7])
    run_search(search, bowl(1e-3))
    described = tune.describe_search(search)
    assert "per_seed" not in described
    assert described["fits"] == {"lr": search.choose().fits["lr"].describe()}
    assert described["fits"]["lr"]["optimum"] == pytest.approx(1e-3)


def test_a_seeds_own_choice_is_its_own_best_even_where_the_mean_is_best_elsewhere() -> None:
    config = Config(lr=1.0, min_lr=0.1)
    # the mean is best at 1, the variant's own value; seed 7 alone is best at 0.5, which scores
    # worse than own on the mean but not on seed 7, so seed 7's choice keeps it
    table = {7: {0.5: 1.0, 1.0: 1.2, 2.0: 1.1}, 8: {0.5: 1.4, 1.0: 0.5, 2.0: 1.3}}
    search = tune.Search(tune.parse_tune(["lr"], config), config, [7, 8])
    assert run_search(search, lambda p, seed: table[seed][p["lr"]]) == 6
    assert search.choose().point == {"lr": 1.0}
    alone = search.choose([7])  # seed 7 alone is best at 0.5, which has no finished lower neighbour
    assert alone == tune.Choice({"lr": 0.5}, {"lr": "lower edge: not searched beyond"}, {}, guarded=False)


def test_a_seeds_own_choice_fits_through_a_value_that_only_another_seed_diverged_at() -> None:
    config = Config(lr=1.0, min_lr=0.1)
    search = tune.Search(tune.parse_tune(["lr"], config), config, [7, 8])
    run_search(search, lambda p, seed: None if seed == 8 and p["lr"] >= 2 else 1.0 + math.log2(p["lr"]) ** 2)
    alone = search.choose([7])
    assert alone.point == {"lr": 1.0} and alone.at_edge == {}
    assert alone.fits["lr"].values == (0.5, 1.0, 2.0) and alone.fits["lr"].losses == (2.0, 1.0, 2.0)
    assert search.choose().at_edge == {"lr": "higher edge: the next value (lr=2) diverged or failed"}


def test_the_search_goes_down_to_the_lower_cap_and_chooses_it() -> None:
    config = Config(lr=1e-3, min_lr=1e-4)
    search = tune.Search(tune.parse_tune(["lr"], config), config, [1000])
    run_search(search, bowl(1e-9))
    assert search.choose().point == {"lr": 1e-3 / 64}  # exact: halving is exact in binary
    assert search.choose().at_edge == {"lr": "lower edge: the cap (lr 1.5625e-05..0.064) was reached"}


def test_a_score_is_the_mean_over_seeds_and_infinite_without_a_loss_on_each() -> None:
    assert tune.score([1.0, 2.0]) == 1.5
    assert tune.score([]) == math.inf
    assert tune.score([1.0, None]) == math.inf
    assert tune.score([1.0, math.nan]) == math.inf


@pytest.mark.parametrize(
    ("given", "window"),
    [
        ("lr=0.25,0.5,2", (0.5, 1.0, 2.0)),  # two finished below, one above: one either side
        ("lr=0.5,2,4,8", (0.5, 1.0, 2.0)),  # one below, three above: one either side
        ("lr=0.125,0.25,0.5,2,4", (0.25, 0.5, 1.0, 2.0, 4.0)),  # three below, two above: two either side
    ],
)
def test_the_fit_takes_two_neighbours_either_side_where_both_sides_have_two_else_one(
    given: str, window: tuple[float, ...]
) -> None:
    config = Config(lr=1.0, min_lr=0.1)
    search = tune.Search(tune.parse_tune([given], config), config, [1000])
    run_search(search, lambda p, _s: 1.0 + math.log2(p["lr"]) ** 2)
    choice = search.choose()
    assert choice.point == {"lr": 1.0}
    assert choice.fits["lr"].values == window


def test_a_key_at_an_edge_without_a_fit_leaves_the_next_keys_fit() -> None:
    config = Config(lr=1e-3, min_lr=1e-4, weight_decay=0.1)
    search = tune.Search(tune.parse_tune(["lr", "weight_decay=0.05,0.2"], config), config, [1000])
    run_search(
        search, lambda p, _s: None if p["lr"] > 3e-3 else -math.log(p["lr"]) + math.log(p["weight_decay"] / 0.1) ** 2
    )
    choice = search.choose()
    assert choice.point == {"lr": 2e-3, "weight_decay": 0.1}
    assert choice.at_edge == {"lr": "higher edge: the next value (lr=0.004) diverged or failed"}
    assert list(choice.fits) == ["weight_decay"]  # lr has one finished neighbour: no fit along it
    assert choice.fits["weight_decay"].key == "weight_decay" and choice.fits["weight_decay"].log


@pytest.mark.parametrize(
    ("own", "losses", "chosen"),
    [
        (4.0, [1.05, 1.01, 1.0, 2.0, 2.0], 0.5),  # the curve's lowest is near 0.25: its nearest neighbour
        (0.25, [2.0, 2.0, 1.0, 1.01, 1.05], 2.0),  # the mirror image
    ],
)
def test_the_fit_moves_the_choice_to_a_nearest_neighbour_never_further(
    own: float, losses: list[float], chosen: float
) -> None:
    values = [0.25, 0.5, 1.0, 2.0, 4.0]
    config = Config(lr=own, min_lr=own / 10)
    search = tune.Search(tune.parse_tune(["lr=0.25,0.5,1,2,4"], config), config, [1000])
    run_search(search, lambda p, _s: losses[values.index(p["lr"])])
    choice = search.choose()
    assert choice.point == {"lr": chosen} and not choice.guarded


def test_a_seeds_own_choice_may_be_a_value_another_seed_diverged_at() -> None:
    values = [0.25, 0.5, 1.0, 2.0, 4.0]
    seven = [1.05, 1.01, 1.0, 2.0, 2.0]  # the fit moves seed 7's choice from 1 to 0.5
    eight = [1.0, None, 1.0, 1.0, 1.0]  # seed 8 diverged at 0.5
    config = Config(lr=4.0, min_lr=0.4)
    search = tune.Search(tune.parse_tune(["lr=0.25,0.5,1,2,4"], config), config, [7, 8])
    run_search(search, lambda p, seed: (seven if seed == 7 else eight)[values.index(p["lr"])])
    assert search.choose().point == {"lr": 1.0}
    assert search.choose([7]).point == {"lr": 0.5}


def test_a_tie_on_the_fitted_curve_goes_to_the_best_trained_point() -> None:
    # (x - 1.5)^2 less a multiple of the quartic that least squares on 0..4 cannot see: the
    # curve ties 1 and 2 exactly, and 2 scored best
    xs = [0.0, 1.0, 2.0, 3.0, 4.0]
    losses = [(x - 1.5) ** 2 - q / 32 for x, q in zip(xs, [1, -4, 6, -4, 1], strict=True)]
    config = Config(weight_decay=2.0)
    search = tune.Search(tune.parse_tune(["weight_decay=0,1,3,4"], config), config, [1000])
    run_search(search, lambda p, _s: losses[xs.index(p["weight_decay"])])
    choice = search.choose()
    assert choice.fits["weight_decay"].coefficients == (1.0, -3.0, 2.25)
    assert choice.point == {"weight_decay": 2.0} and not choice.guarded


def test_fits_that_combine_into_a_diverged_point_fall_back_to_the_best_point() -> None:
    lrs, decays = [0.25, 0.5, 1.0, 2.0, 4.0], [0.025, 0.05, 0.1, 0.2, 0.4]
    shape = [1.05, 1.01, 1.0, 2.0, 2.0]  # along either key the fit moves the choice one step down

    def loss(point: tune.Point, _seed: int) -> float | None:
        if point == {"lr": 0.5, "weight_decay": 0.05}:
            return None  # where both moves lead: diverged
        return shape[lrs.index(point["lr"])] + shape[decays.index(point["weight_decay"])]

    config = Config(lr=4.0, min_lr=0.4, weight_decay=0.4)
    axes = tune.parse_tune(["lr=0.25,0.5,1,2", "weight_decay=0.025,0.05,0.1,0.2"], config)
    search = tune.Search(axes, config, [1000])
    assert run_search(search, loss) == 25
    choice = search.choose()
    assert choice.point == {"lr": 1.0, "weight_decay": 0.1} and not choice.guarded
    assert set(choice.fits) == {"lr", "weight_decay"}


def test_a_relative_grid_around_zero_is_refused() -> None:
    with pytest.raises(tune.TuneError) as error:
        tune.axis_values(tune.TuneAxis("weight_decay"), Config(weight_decay=0.0))
    assert str(error.value) == (
        "--tune weight_decay: the variant's own value is 0.0, so a relative grid has one point; give values"
    )


def test_a_grid_point_the_configuration_refuses_is_named_in_the_error() -> None:
    config = Config(n_embd=32, n_head=2)  # each value alone is valid; 24 dims over 8 heads is not
    axes = tune.parse_tune(["n_embd=16,24", "n_head=2,8"], config)
    with pytest.raises(tune.TuneError) as error:
        tune.initial_grid(axes, config)
    assert str(error.value) == (
        "--tune point n_embd24-n_head8: RoPE needs an even head size, got n_embd/n_head = 3: change n_embd or n_head"
    )


def test_a_points_label_joins_each_key_and_value_with_a_dash() -> None:
    assert tune.point_label({"lr": 0.00375}) == "lr0.00375"
    assert tune.point_label({"lr": 0.003, "weight_decay": 0.1}) == "lr0.003-weight_decay0.1"


def test_an_axis_describes_its_values_or_its_relative_grid() -> None:
    assert tune.TuneAxis("lr").describe() == "lr x 0.5,1,2"
    assert tune.TuneAxis("lr", (0.001, 0.003)).describe() == "lr=0.001,0.003"


def test_a_tuned_min_lr_is_kept_as_given_beside_a_tuned_lr() -> None:
    config = Config(lr=1e-3, min_lr=1e-4)
    assert tune.apply_point(config, {"lr": 2e-3, "min_lr": 5e-5}).min_lr == 5e-5
    assert tune.apply_point(config, {"min_lr": 5e-5}) == config.replace(min_lr=5e-5)


@pytest.mark.parametrize(
    ("spec", "config", "bounds"),
    [
        ("lr", Config(lr=1e-3, min_lr=1e-4), (1e-3 / 64, 1e-3 * 64)),  # x1/64..x64 of its own value
        ("lr=1e-3,3e-3", Config(lr=9e-3, min_lr=9e-4), (1e-3 / 64, 9e-3 * 64)),  # of the lowest and highest
        ("weight_decay=0,0.1", Config(weight_decay=0.05), (0.0, 0.1 + 6 * 0.05)),  # six steps of 0.05 beyond
        ("weight_decay=0", Config(weight_decay=0.1), (0.0, 0.1 + 6 * 0.1)),  # two values: one step of 0.1
        ("weight_decay=0", Config(weight_decay=0.0), (0.0, 0.0)),  # one value: nowhere to go
    ],
)
def test_how_far_a_search_may_go_from_its_starting_values(
    spec: str, config: Config, bounds: tuple[float, float]
) -> None:
    search = tune.Search(tune.parse_tune([spec], config), config, [1000])
    key = spec.partition("=")[0]
    assert search.bounds[key] == pytest.approx(bounds)


def test_a_refused_whole_number_is_checked_and_named_as_an_integer() -> None:
    """An int key's value is given to the configuration as an int: its refusal says 3, not 3.0."""
    with pytest.raises(tune.TuneError) as error:
        tune.parse_tune(["n_head=3"], Config(n_embd=32, n_head=2))
    assert str(error.value) == (
        "--tune n_head=3: n_embd (32) must be divisible by n_head (3): choose n_head from [1, 2, 4, 8, 16, 32]"
    )


def test_an_unknown_key_is_refused_with_every_numeric_key_to_choose_from() -> None:
    with pytest.raises(tune.TuneError) as error:
        tune.parse_tune(["bogus=1"], Config())
    keys = ", ".join(tune.numeric_keys())
    assert str(error.value) == f"--tune 'bogus' is not a numeric configuration key; choose from {keys}"
    assert "lr, " in keys or ", lr" in keys


def test_a_key_tuned_twice_is_refused_saying_how_to_give_its_values_once() -> None:
    with pytest.raises(tune.TuneError) as error:
        tune.parse_tune(["lr", "lr=1e-3"], Config())
    assert str(error.value) == "--tune lr is given twice; give its values once, e.g. --tune lr=1,2"


def test_given_tuning_seeds_are_kept_in_order_once_each_unless_one_is_an_evaluation_seed() -> None:
    assert tune.parse_tune_seeds("7, 5,7,", [0, 1, 2]) == [7, 5]
    with pytest.raises(tune.TuneError) as error:
        tune.parse_tune_seeds("9,2,1", [0, 1, 2])
    assert str(error.value) == "tuning seed 1 is also an evaluation seed (--seeds); tune on other seeds"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("1,x", "--tune-seeds expects comma-separated integers, got '1,x'"),
        (" , ", "--tune-seeds is empty; give at least one integer seed"),
    ],
)
def test_tuning_seeds_that_are_not_integers_or_none_at_all_are_refused_saying_so(spec: str, message: str) -> None:
    with pytest.raises(tune.TuneError) as error:
        tune.parse_tune_seeds(spec, [0])
    assert str(error.value) == message
