"""The distribution-free interval of a median on known numbers."""

from __future__ import annotations

import math

import pytest

from minigpt.stats import median_interval


def test_six_values_give_the_extremes_at_their_binomial_coverage() -> None:
    found = median_interval([1.4, 1.0, 1.2, 1.1, 1.3, 5.0])  # one wild value does not move the median
    assert (found.median, found.low, found.high) == (pytest.approx(1.25), 1.0, 5.0)
    assert found.coverage == pytest.approx(1 - 2 / 64)  # 1 - 2 P(Binomial(6, 1/2) = 0)


def test_more_values_tighten_the_interval_to_inner_order_statistics() -> None:
    found = median_interval(list(range(1, 21)))  # n = 20: k = 6 is the largest with coverage >= 95%
    assert (found.low, found.high) == (6, 15)
    assert found.coverage == pytest.approx(1 - 2 * sum(math.comb(20, i) for i in range(6)) / 2**20)
    assert found.coverage >= 0.95


def test_fewer_than_six_values_have_no_interval() -> None:
    found = median_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert found.median == 3.0 and not found.has_interval and math.isnan(found.coverage)


def test_many_values_reach_past_a_third_of_the_order_statistics() -> None:
    found = median_interval([float(v) for v in range(1, 101)])  # n = 100: k = 40 (coverage 0.965; k = 41 gives 0.943)
    assert (found.low, found.high) == (40.0, 61.0)
    assert found.coverage == pytest.approx(1 - 2 * sum(math.comb(100, i) for i in range(40)) / 2**100)
