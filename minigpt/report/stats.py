"""Interval arithmetic and verdict rules: Student's t quantiles, 95% intervals, better/worse calls."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

NO_CLEAR_DIFFERENCE = "no clear difference"

# t_{0.975} of Student's t for 1..30 degrees of freedom (the two-sided 95% quantile).
T_975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
Z_975 = 1.959963984540054


def t_quantile_975(df: float) -> float:
    """t_{0.975} with df degrees of freedom. A fractional df (Welch's) is rounded down, which
    widens the interval a little: the conservative side."""
    if df < 1:
        raise ValueError(f"Student's t needs at least 1 degree of freedom, got {df}")
    whole = int(df)
    if whole <= len(T_975):
        return T_975[whole - 1]
    # Cornish-Fisher expansion around the normal quantile: within 1e-5 of the exact value past 30.
    z = Z_975
    return (
        z
        + (z**3 + z) / (4 * whole)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * whole**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * whole**3)
    )


@dataclass(frozen=True)
class Interval:
    """A mean over n values and its 95% interval; low and high are NaN when n < 2."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0  # False for NaN bounds: no interval, no claim


NO_VALUES = Interval(math.nan, math.nan, math.nan, 0)


def _finite(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def mean_interval(values: Iterable[Any]) -> Interval:
    """Mean and 95% Student's t interval; None/NaN values are left out; one value, no interval."""
    data = _finite(values)
    if not data:
        return NO_VALUES
    mean = statistics.fmean(data)
    if len(data) < 2:
        return Interval(mean, math.nan, math.nan, 1)
    half = t_quantile_975(len(data) - 1) * statistics.stdev(data) / math.sqrt(len(data))
    return Interval(mean, mean - half, mean + half, len(data))


def difference_interval(variant: dict[int, float], baseline: dict[int, float]) -> Interval:
    """variant - baseline from values keyed by seed. When both ran the same seeds (two or more)
    the differences are paired by seed: a seed fixes the data order, so pairing removes the share
    of the spread both trials have in common. Otherwise Welch's interval for two means."""
    if not variant or not baseline:
        return NO_VALUES
    if variant.keys() == baseline.keys() and len(variant) >= 2:
        return mean_interval(variant[seed] - baseline[seed] for seed in variant)
    ours, theirs = list(variant.values()), list(baseline.values())
    mean = statistics.fmean(ours) - statistics.fmean(theirs)
    n = min(len(ours), len(theirs))
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    var_ours, var_theirs = statistics.variance(ours) / len(ours), statistics.variance(theirs) / len(theirs)
    spread = var_ours + var_theirs
    if spread == 0:
        return Interval(mean, mean, mean, n)
    df = spread**2 / (var_ours**2 / (len(ours) - 1) + var_theirs**2 / (len(theirs) - 1))
    half = t_quantile_975(df) * math.sqrt(spread)
    return Interval(mean, mean - half, mean + half, n)


def verdict(difference: Interval) -> str:
    """For a loss difference (lower is better): better or worse only when the interval excludes zero."""
    if not difference.excludes_zero:
        return NO_CLEAR_DIFFERENCE
    return "better" if difference.high < 0 else "worse"
