"""Statistics shared by speed, bench and report: Student's t, 95% intervals, p-values, Holm, verdicts."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

NO_CLEAR_DIFFERENCE = "no clear difference"
ALPHA = 0.05  # the family-wise error rate Holm's method holds verdicts to, per device

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


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, by its continued fraction."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    # The fraction converges fast only below the mean of the beta distribution; use the symmetry above it.
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(x, a, b) / a
    return 1 - front * _beta_fraction(1 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    """The incomplete beta's continued fraction, evaluated by the modified Lentz method."""

    def nonzero(value: float) -> float:
        return value if abs(value) > 1e-300 else 1e-300

    c, d = 1.0, 1 / nonzero(1 - (a + b) * x / (a + 1))
    result = d
    for m in range(1, 500):
        even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        for term in (even, odd):
            d = 1 / nonzero(1 + term * d)
            c = nonzero(1 + term / c)
            result *= c * d
        if abs(c * d - 1) < 1e-15:
            break
    return result


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with df > 0 degrees of freedom (fractional df allowed)."""
    if df <= 0:
        raise ValueError(f"Student's t needs positive degrees of freedom, got {df}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * regularized_beta(df / (df + t * t), df / 2, 0.5)
    return 1 - tail if t > 0 else tail


def two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|): the two-sided p-value of a t statistic (computed directly, no 1 - cdf cancellation)."""
    return regularized_beta(df / (df + t * t), df / 2, 0.5) if math.isfinite(t) else 0.0


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input's order: the k-th smallest of m p-values is
    multiplied by m - k + 1, and adjusted values never decrease in that order. Calling every adjusted
    value below ALPHA keeps the chance of any false call at most ALPHA. NaN stays NaN and does not
    count in m."""
    tested = sorted((p, index) for index, p in enumerate(p_values) if math.isfinite(p))
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[index] = running
    return adjusted


@dataclass(frozen=True)
class Interval:
    """A mean over n values, its 95% interval and the two-sided p-value of a t test that the true mean
    is zero; low, high and p are NaN when n < 2."""

    mean: float
    low: float
    high: float
    n: int
    p: float = math.nan

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
    error = statistics.stdev(data) / math.sqrt(len(data))
    half = t_quantile_975(len(data) - 1) * error
    return Interval(mean, mean - half, mean + half, len(data), _p_value(mean, error, len(data) - 1))


def _p_value(mean: float, error: float, df: float) -> float:
    if error == 0:  # every value the same: certain of the mean, whatever it is
        return 1.0 if mean == 0 else 0.0
    return two_sided_p(mean / error, df)


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
        return Interval(mean, mean, mean, n, _p_value(mean, 0.0, 1))
    # Welch's df rounded down, as for the interval, so the p-value and the interval agree.
    df = max(1, math.floor(spread**2 / (var_ours**2 / (len(ours) - 1) + var_theirs**2 / (len(theirs) - 1))))
    half = t_quantile_975(df) * math.sqrt(spread)
    return Interval(mean, mean - half, mean + half, n, _p_value(mean, math.sqrt(spread), df))


def verdict(difference: Interval, adjusted_p: float | None = None) -> str:
    """For a loss difference (lower is better): better or worse only when the interval excludes zero
    and, where several variants are compared, their Holm-adjusted p-value is below ALPHA too."""
    if not difference.excludes_zero or (adjusted_p is not None and not adjusted_p < ALPHA):
        return NO_CLEAR_DIFFERENCE
    return "better" if difference.high < 0 else "worse"


SPEED_MARGIN = 0.02  # speed ratios whose interval lies within 2% of 1.0 are equivalent (run --speed-margin)
TIE = SPEED_MARGIN  # the name this margin had while it was an unstated tie rule


@dataclass(frozen=True)
class PairedRatio:
    ratio: float
    low: float
    high: float
    verdict: str


def paired_ratio(ratios: Sequence[float]) -> PairedRatio:
    """Geometric mean of per-round ratios (> 1: faster than the baseline) with a Student's t
    95% interval on their logarithms, and the verdict it supports."""
    logs = [math.log(r) for r in ratios]
    centre = statistics.fmean(logs)
    half = t_quantile_975(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else 0.0
    ratio, low, high = math.exp(centre), math.exp(centre - half), math.exp(centre + half)
    return PairedRatio(ratio, low, high, speed_verdict(ratio, low, high) if len(logs) > 1 else "undecided")


def speed_verdict(ratio: float, low: float, high: float, margin: float = SPEED_MARGIN) -> str:
    """equivalent when the interval lies within (1 - margin, 1 + margin); faster or slower when it
    excludes 1 and does not; undecided otherwise (the four verdicts of minigpt.decide)."""
    if 1 - margin < low and high < 1 + margin:
        return "equivalent"
    if low > 1:
        return "faster"
    if high < 1:
        return "slower"
    return "undecided"


@dataclass(frozen=True)
class MedianInterval:
    """A median with a distribution-free 95% interval; low, high and coverage are NaN when there
    are fewer than 6 values, as no pair of order statistics then reaches 95%."""

    median: float
    low: float
    high: float
    coverage: float

    @property
    def has_interval(self) -> bool:
        return not math.isnan(self.low)


def median_interval(values: Sequence[float]) -> MedianInterval:
    """The median with the order statistics x(k), x(n+1-k) for the largest k whose coverage,
    1 - 2 P(Binomial(n, 1/2) < k), is at least 95%. It assumes nothing about the distribution,
    so one stalled process among whole-process timings cannot widen it the way it widens a t interval."""
    ordered, n = sorted(values), len(values)
    best = (math.nan, math.nan, math.nan)
    for k in range(1, n // 2 + 1):
        coverage = 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2**n
        if coverage < 0.95:
            break
        best = (ordered[k - 1], ordered[n - k], coverage)
    return MedianInterval(statistics.median(ordered), *best)
