"""The report's statistics against known values: Student's t quantiles and CDF, p-values, mean and
difference intervals (paired and Welch), the verdict rule and Holm's step-down method."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from minigpt.report import (
    NO_CLEAR_DIFFERENCE,
    Interval,
    difference_interval,
    holm,
    load_frames,
    mean_interval,
    summarize_variants,
    t_cdf,
    t_quantile_975,
    two_sided_p,
    verdict,
)
from minigpt.stats import ALPHA, NO_VALUES, SPEED_MARGIN, T_975, paired_ratio, regularized_beta, speed_verdict
from tests.test_report import make_run


@pytest.mark.parametrize("t", [-30.0, -2.0, -0.5, 0.0, 1.0, 3.0, 100.0])
def test_t_cdf_with_one_degree_of_freedom_is_cauchy(t: float) -> None:
    assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)


@pytest.mark.parametrize("t", [-4.0, -1.0, 0.3, 2.0, 9.0])
def test_t_cdf_with_two_degrees_of_freedom_has_a_closed_form(t: float) -> None:
    assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)


def test_t_cdf_known_values() -> None:
    assert t_cdf(1, 1) == pytest.approx(0.75, abs=1e-12)
    assert t_cdf(0, 7.5) == 0.5
    # df = 4: F(t) = 1/2 + (3/4) s (1 - s^2 / 3), s = t / sqrt(4 + t^2)
    s = 1.5 / math.sqrt(4 + 1.5**2)
    assert t_cdf(1.5, 4) == pytest.approx(0.5 + 0.75 * s * (1 - s * s / 3), abs=1e-12)
    assert t_cdf(-math.inf, 3) == 0.0 and t_cdf(math.inf, 3) == 1.0


def test_t_cdf_tends_to_the_normal_and_inverts_the_quantile_table() -> None:
    for z in (-2.5, -1.0, 0.7, 1.959963984540054):
        assert t_cdf(z, 1e7) == pytest.approx(0.5 * (1 + math.erf(z / math.sqrt(2))), abs=1e-6)
    for df, quantile in enumerate(T_975, start=1):
        assert t_cdf(quantile, df) == pytest.approx(0.975, abs=1e-5)  # the table has four decimals


def test_two_sided_p_keeps_precision_in_the_far_tail() -> None:
    assert two_sided_p(2.5, 7) == pytest.approx(2 * (1 - t_cdf(2.5, 7)), rel=1e-9)
    assert two_sided_p(1e4, 1) == pytest.approx(2 / math.pi * math.atan(1e-4), rel=1e-9)  # 1 - cdf would lose it
    assert two_sided_p(0, 5) == 1.0


def test_regularized_beta_known_values() -> None:
    assert regularized_beta(0.3, 1, 1) == pytest.approx(0.3)  # uniform
    assert regularized_beta(0.3, 2, 1) == pytest.approx(0.09)  # x^a when b = 1
    assert regularized_beta(0.3, 2, 3) + regularized_beta(0.7, 3, 2) == pytest.approx(1.0)  # symmetry
    assert regularized_beta(0.0, 2, 3) == 0.0 and regularized_beta(1.0, 2, 3) == 1.0


def test_a_mean_interval_carries_its_t_test_p_value() -> None:
    # mean 2, se 1/sqrt(3): t = sqrt(12) on 2 df; P(|T| > t) = 1 - t / sqrt(2 + t^2)
    t = math.sqrt(12)
    assert mean_interval([1.0, 2.0, 3.0]).p == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-9)
    assert math.isnan(mean_interval([1.0]).p)


def test_holm_on_the_textbook_example() -> None:
    # Holm (1979) as usually taught: p = 0.01, 0.04, 0.03, 0.005 at alpha 0.05 rejects only the
    # first and the last; adjusted p-values as R's p.adjust(method = "holm") gives them.
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [p < 0.05 for p in adjusted] == [True, False, False, True]


def test_holm_leaves_missing_p_values_out_of_the_count() -> None:
    adjusted = holm([0.01, math.nan, 0.04])
    assert adjusted[0] == pytest.approx(0.02) and adjusted[2] == pytest.approx(0.04)  # m = 2, not 3
    assert math.isnan(adjusted[1])
    assert holm([0.3]) == [0.3] and holm([]) == []
    assert holm([0.5, 0.6, 0.7]) == pytest.approx([1.0, 1.0, 1.0])  # capped at 1


def close_call_run(root: Path, variants: list[str]) -> Path:
    """Each variant's loss is above the baseline's by 0.10, 0.16, 0.13 on seeds 0-2: paired t = 0.13 / (0.03 / sqrt 3) = 7.51 on
    2 df, p = 0.0173, so one such variant is called worse, and three are not once the error rate is split three ways."""
    results = {"baseline": {seed: (2.0, 1000.0) for seed in range(3)}}
    results |= {name: {0: (2.10, 1000.0), 1: (2.16, 1000.0), 2: (2.13, 1000.0)} for name in variants}
    return make_run(root, results, failed=False)


def test_splitting_the_error_rate_withholds_calls_that_intervals_alone_would_make(tmp_path: Path) -> None:
    alone, _ = load_frames(close_call_run(tmp_path / "alone", ["a"]))
    row = summarize_variants(alone, ["baseline", "a"]).set_index("variant").loc["a"]
    assert (
        row["p_value"] == pytest.approx(two_sided_p(0.13 / (0.03 / math.sqrt(3)), 2), rel=1e-6)
        and row["p_value"] < 0.05
    )
    assert row["diff_low"] > 0 and row["verdict"] == "worse"

    many, _ = load_frames(close_call_run(tmp_path / "many", ["a", "b", "c"]))
    summary = summarize_variants(many, ["baseline", "a", "b", "c"]).set_index("variant").drop("baseline")
    assert (summary["diff_low"] < 0).all()  # each interval, at 1 - 0.05/3, now holds zero
    assert summary["p_holm"].to_numpy() == pytest.approx([3 * row["p_value"]] * 3)
    assert summary["p_adjusted"].to_numpy() == pytest.approx([3 * row["p_value"]] * 3)
    assert (summary["verdict"] == "undecided").all()
    assert (summary["seeds_needed"] > 3).all()  # more seeds at this spread would decide


def test_t_quantiles_match_tables() -> None:
    assert t_quantile_975(1) == pytest.approx(12.7062, abs=1e-4)
    assert t_quantile_975(2) == pytest.approx(4.3027, abs=1e-4)
    assert t_quantile_975(3.9) == t_quantile_975(3)  # Welch's fractional df rounds down
    assert t_quantile_975(60) == pytest.approx(2.0003, abs=1e-4)
    assert t_quantile_975(10**6) == pytest.approx(1.96, abs=1e-3)


def test_mean_interval_on_known_numbers() -> None:
    interval = mean_interval([1.0, 2.0, 3.0])  # sd 1, se 1/sqrt(3), t(2) = 4.3027
    assert (interval.mean, interval.n) == (2.0, 3)
    assert interval.low == pytest.approx(2 - 4.3027 / math.sqrt(3), abs=1e-4)
    assert interval.high == pytest.approx(2 + 4.3027 / math.sqrt(3), abs=1e-4)
    one = mean_interval([2.5, None, float("nan")])
    assert one.mean == 2.5 and one.n == 1 and math.isnan(one.low) and math.isnan(one.high)
    assert mean_interval([]).n == 0


def test_difference_pairs_by_seed_when_the_seeds_match() -> None:
    paired = difference_interval({0: 2.0, 1: 2.2, 2: 2.1}, {0: 1.9, 1: 2.05, 2: 2.0})
    # differences 0.10, 0.15, 0.10: mean 0.11667, sd 0.028868, t(2) = 4.3027
    assert paired.mean == pytest.approx(0.116667, abs=1e-5)
    assert paired.high - paired.mean == pytest.approx(4.3027 * 0.028868 / math.sqrt(3), abs=1e-4)


def test_difference_uses_welch_when_the_seeds_differ() -> None:
    welch = difference_interval({0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0}, {5: 2.0, 6: 4.0, 7: 6.0})
    # se^2 = 1.6667/4 + 4/3 = 1.75; Welch df = 3.23 -> 3, t(3) = 3.1824
    assert welch.mean == pytest.approx(-1.5)
    assert welch.high == pytest.approx(-1.5 + 3.1824 * math.sqrt(1.75), abs=1e-3)
    assert math.isnan(difference_interval({0: 2.0}, {0: 1.0, 1: 1.2}).low)  # one seed: no interval


def test_a_difference_counts_only_when_its_interval_excludes_zero() -> None:
    assert verdict(Interval(-0.05, -0.09, -0.01, 3)) == "better"
    assert verdict(Interval(0.05, 0.01, 0.09, 3)) == "worse"
    assert verdict(Interval(-0.05, -0.12, 0.02, 3)) == NO_CLEAR_DIFFERENCE
    assert verdict(Interval(-0.5, math.nan, math.nan, 1)) == NO_CLEAR_DIFFERENCE  # one seed claims nothing


def test_t_cdf_refuses_zero_degrees_of_freedom() -> None:
    with pytest.raises(ValueError, match="positive degrees of freedom, got 0"):
        t_cdf(1.0, 0)


def test_an_infinite_t_statistic_is_certain() -> None:
    assert two_sided_p(math.inf, 3) == 0.0 and two_sided_p(-math.inf, 3) == 0.0


def test_a_difference_with_one_side_missing_has_no_values() -> None:
    assert difference_interval({}, {0: 1.0}) == NO_VALUES
    assert difference_interval({0: 1.0}, {}) == NO_VALUES


def test_two_matching_seeds_are_already_paired() -> None:
    # differences 0.1 and 0.1: no spread once paired, while Welch's interval on the raw values is wide
    paired = difference_interval({0: 2.0, 1: 3.0}, {0: 1.9, 1: 2.9})
    assert (paired.mean, paired.n) == (pytest.approx(0.1), 2)
    assert paired.low == pytest.approx(0.1) and paired.high == pytest.approx(0.1)


def test_one_seed_on_one_side_gives_the_difference_of_means_without_an_interval() -> None:
    one = difference_interval({0: 2.0}, {0: 1.0, 1: 1.2})
    assert one.mean == pytest.approx(0.9) and one.n == 1
    assert math.isnan(one.low) and math.isnan(one.high) and math.isnan(one.p)


def test_welch_degrees_of_freedom_follow_welch_satterthwaite() -> None:
    # five seeds a side, variance 2.5 each: se^2 = 0.5 + 0.5 = 1, df = 1 / (2 * 0.5^2 / 4) = 8 exactly
    welch = difference_interval({seed: float(seed) for seed in range(5)}, {10 + i: i + 1.0 for i in range(5)})
    assert (welch.mean, welch.n) == (pytest.approx(-1.0), 5)
    assert welch.low == pytest.approx(-1.0 - 2.3060, abs=1e-4)  # t(8) = 2.3060
    assert welch.high == pytest.approx(-1.0 + 2.3060, abs=1e-4)
    assert welch.p == pytest.approx(two_sided_p(-1.0, 8), rel=1e-12)


def test_welch_with_one_wide_side_of_two_seeds_keeps_one_degree_of_freedom() -> None:
    # the spread is almost all the two-seed side's, so Welch's df is just above 1 and rounds down to 1
    welch = difference_interval({0: 0.0, 1: 10.0}, {2: 1.0, 3: 1.0, 4: 1.001})
    se = math.sqrt(50 / 2 + statistics.variance([1.0, 1.0, 1.001]) / 3)
    assert welch.high - welch.mean == pytest.approx(12.7062 * se, abs=1e-3)  # t(1), not t(2) = 4.3027


def test_an_adjusted_p_value_must_be_below_alpha_for_a_call() -> None:
    lower = Interval(-0.05, -0.09, -0.01, 3)
    assert verdict(lower, adjusted_p=0.01) == "better"
    assert verdict(Interval(0.05, 0.01, 0.09, 3), adjusted_p=0.01) == "worse"
    assert verdict(lower, adjusted_p=ALPHA) == NO_CLEAR_DIFFERENCE  # at alpha is not below it
    assert verdict(lower, adjusted_p=0.2) == NO_CLEAR_DIFFERENCE


def test_paired_ratio_of_one_round_has_no_interval_and_no_verdict() -> None:
    one = paired_ratio([1.05])
    assert one.ratio == pytest.approx(1.05) and one.low == pytest.approx(1.05) and one.high == pytest.approx(1.05)
    assert one.verdict == "undecided"


def test_paired_ratio_of_two_rounds_has_a_t_interval_and_a_verdict() -> None:
    logs = [math.log(1.10), math.log(1.11)]
    half = 12.7062 * statistics.stdev(logs) / math.sqrt(2)  # t(1)
    two = paired_ratio([1.10, 1.11])
    assert two.ratio == pytest.approx(math.sqrt(1.10 * 1.11))
    assert two.low == pytest.approx(math.exp(statistics.fmean(logs) - half), rel=1e-6)
    assert two.high == pytest.approx(math.exp(statistics.fmean(logs) + half), rel=1e-6)
    assert two.low > 1 and two.verdict == "faster"


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0.99, 1.01, "equivalent"),
        (0.99, 1 + SPEED_MARGIN, "undecided"),  # touching the margin is not inside it
        (1 - SPEED_MARGIN, 1.01, "undecided"),
        (1.03, 1.1, "faster"),
        (1.0, 1.1, "undecided"),  # an interval that reaches 1 does not exclude it
        (0.9, 0.97, "slower"),
        (0.9, 1.0, "undecided"),
    ],
)
def test_speed_verdict_needs_the_interval_strictly_past_its_bounds(low: float, high: float, expected: str) -> None:
    assert speed_verdict((low + high) / 2, low, high) == expected


def test_t_quantiles_past_the_table_are_within_the_expansions_error() -> None:
    """Cornish-Fisher to the third order: its own error is 1.75e-6 at 31 degrees of freedom and falls from there."""
    from scipy import stats

    for df in [*range(31, 120), 200, 500, 10**4]:
        assert t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=2e-6), df
    assert t_quantile_975(30) == 2.0423  # the last value the table gives
    with pytest.raises(ValueError, match="at least 1 degree of freedom, got 0.5"):
        t_quantile_975(0.5)


def test_two_values_have_an_interval() -> None:
    two = mean_interval([1.0, 3.0])  # sd sqrt(2), se 1, t(1) = 12.7062
    assert (two.mean, two.n) == (2.0, 2)
    assert two.low == pytest.approx(2 - 12.7062) and two.high == pytest.approx(2 + 12.7062)


def test_regularized_beta_far_above_the_mean_uses_the_symmetry() -> None:
    # I_x(a, b) with x far above the mean a / (a + b): only the symmetric fraction converges there
    assert regularized_beta(0.1, 5, 500) == pytest.approx(1.0, abs=1e-12)
    assert regularized_beta(0.3, 1, 3) == pytest.approx(1 - 0.7**3, abs=1e-12)  # 1 - (1 - x)^b when a = 1
