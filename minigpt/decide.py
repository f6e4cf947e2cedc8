"""Verdicts that decide: four verdicts from paired differences, and seeds in rounds until decided.

A variant's verdict against the baseline comes from one interval for its mean paired difference
(variant minus baseline, seed by seed):

- below zero and not inside the margin: "better" for loss ("slower" for a log speed ratio);
- above zero and not inside the margin: "worse" ("faster");
- inside (-margin, +margin): "equivalent", the same within a difference that does not matter,
  whatever its sign;
- otherwise "undecided": the seeds cannot tell yet.

The sequential design (`run --seeds auto`): the seeds run in rounds; after each round (a "look")
every variant not yet decided is judged again, and only those still undecided get the next round's
seeds. A look at n seeds spends a share w_k of the error rate, proportional to the seeds that round
added (linear alpha spending: the shares sum to 1 over the planned looks up to --max-seeds), and
the rate is split evenly over the m variants compared on a device (Bonferroni). Each interval is a
Student's t interval at confidence 1 - alpha * w_k / m. By the union bound, the chance that any
interval of any variant at any look misses its true difference is at most alpha, whatever the
dependence between looks and variants and whenever a variant stops; every verdict above is a claim
about where the true difference lies that holds whenever its interval does, so the chance of any
wrong verdict (a false better/worse or a false equivalent) in the whole sweep is at most alpha.
A fixed set of seeds is the same design with one look.

Pure functions over numpy arrays, so the simulation tests run the same code the runner does.
scipy is imported inside the functions: `minigpt-bench --help` does not pay for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from minigpt.errors import UserError
from minigpt.stats import SPEED_MARGIN  # a speed ratio within 2% of 1.0 does not matter

ALPHA = 0.05  # the chance of any wrong verdict, over every look and variant of a device
LOSS_MARGIN = 0.01  # nats per character: a loss difference smaller than this does not matter
FIRST_ROUND = 3  # seeds in the first round of --seeds auto
DEFAULT_MAX_SEEDS = 10
MOST_SEEDS_SUGGESTED = 10_000  # past this, "seeds needed" reads as out of reach

BETTER, WORSE, EQUIVALENT, UNDECIDED = "better", "worse", "equivalent", "undecided"
FASTER, SLOWER = "faster", "slower"
LOSS_LABELS = (UNDECIDED, BETTER, WORSE, EQUIVALENT)  # indexed by the codes below
SPEED_LABELS = (UNDECIDED, SLOWER, FASTER, EQUIVALENT)  # of the log ratio: below zero is slower
UNDECIDED_CODE, BELOW_CODE, ABOVE_CODE, EQUIVALENT_CODE = 0, 1, 2, 3


class DesignError(UserError):
    """A sequential design that cannot be planned (a user mistake: exit 2 where the CLI meets it)."""


def looks(max_seeds: int, first: int = FIRST_ROUND) -> list[int]:
    """The seed counts after which variants are judged: the first round, then rounds growing by
    about half (at least two seeds) up to max_seeds, e.g. 3, 5, 8, 10 for ten."""
    if max_seeds < 2:
        raise DesignError(f"--max-seeds must be at least 2 (a paired interval needs two seeds), got {max_seeds}")
    counts = [min(first, max_seeds)]
    while counts[-1] < max_seeds:
        counts.append(min(max_seeds, max(counts[-1] + 2, math.ceil(1.5 * counts[-1]))))
    return counts


def look_shares(counts: Sequence[int]) -> list[float]:
    """The share of the error rate each look spends: the seeds it added over all seeds planned."""
    total = counts[-1]
    return [(n - before) / total for before, n in zip([0, *counts[:-1]], counts, strict=True)]


def look_index(counts: Sequence[int], seeds_run: int) -> int:
    """Which look a variant that ran `seeds_run` seeds is at (the last look it has reached; 0 before any)."""
    reached = [k for k, n in enumerate(counts) if n <= seeds_run]
    return reached[-1] if reached else 0


def look_level(counts: Sequence[int], seeds_run: int, variants: int, alpha: float = ALPHA) -> float:
    """The two-sided error rate one variant's interval spends at its current look."""
    return alpha * look_shares(counts)[look_index(counts, seeds_run)] / max(1, variants)


def next_look(counts: Sequence[int], seeds_run: int) -> int | None:
    """The seed count of the next round for a variant at `seeds_run` seeds; None past the last."""
    return next((n for n in counts if n > seeds_run), None)


def t_quantile(level: Any, df: Any) -> np.ndarray:
    """The two-sided quantile t_{1 - level/2} of Student's t with df degrees of freedom."""
    from scipy import stats

    return stats.t.isf(np.asarray(level, dtype=float) / 2, df)


def intervals(mean: Any, sd: Any, n: Any, level: Any) -> tuple[np.ndarray, np.ndarray]:
    """Student's t intervals at confidence 1 - level for means of n values (n >= 2) with spread sd."""
    half = t_quantile(level, np.asarray(n) - 1) * np.asarray(sd) / np.sqrt(n)
    return np.asarray(mean) - half, np.asarray(mean) + half


def verdict_codes(low: Any, high: Any, margin_below: Any, margin_above: Any | None = None) -> np.ndarray:
    """Codes (UNDECIDED, BELOW, ABOVE, EQUIVALENT) of intervals [low, high] against an equivalence
    band (-margin_below, +margin_above); NaN bounds (no interval) are undecided."""
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    above_margin = margin_below if margin_above is None else margin_above
    equivalent = (low > -np.asarray(margin_below)) & (high < np.asarray(above_margin))
    codes = np.full(np.broadcast(low, high).shape, UNDECIDED_CODE)
    codes = np.where(high < 0, BELOW_CODE, codes)
    codes = np.where(low > 0, ABOVE_CODE, codes)
    return np.where(equivalent, EQUIVALENT_CODE, codes)


def p_values(mean: Any, sd: Any, n: Any) -> np.ndarray:
    """Two-sided p-values of t tests that the true mean is zero (1 where every value is zero)."""
    from scipy import stats

    mean, se = np.asarray(mean, dtype=float), np.asarray(sd, dtype=float) / np.sqrt(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, mean / np.where(se > 0, se, 1), np.where(mean == 0, 0.0, np.inf))
    return np.where(np.isnan(mean), np.nan, 2 * stats.t.sf(np.abs(t), np.asarray(n) - 1))


def equivalence_p_values(mean: Any, sd: Any, n: Any, margin_below: Any, margin_above: Any | None = None) -> np.ndarray:
    """p-values of the two one-sided tests (TOST) that the true mean lies outside the band: the larger of the two."""
    from scipy import stats

    above_margin = margin_below if margin_above is None else margin_above
    mean, se, df = np.asarray(mean, dtype=float), np.asarray(sd, dtype=float) / np.sqrt(n), np.asarray(n) - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        lower = stats.t.sf((mean + margin_below) / se, df)
        upper = stats.t.sf((above_margin - mean) / se, df)
    return np.maximum(lower, upper)


def first_decisions(codes_by_look: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(code, look index) of the first look at which each variant was decided, from codes shaped
    (..., looks); an undecided variant keeps its last look's code. This is per-variant stopping:
    what a variant would have shown later is never looked at."""
    decided = codes_by_look != UNDECIDED_CODE
    first = np.where(decided.any(axis=-1), decided.argmax(axis=-1), codes_by_look.shape[-1] - 1)
    return np.take_along_axis(codes_by_look, first[..., None], axis=-1)[..., 0], first


def seeds_needed(mean: float, sd: float, level: float, margin_below: float, margin_above: float | None = None,
                 start: int = 2) -> int | None:  # fmt: skip
    """The fewest seeds (from start) at which an interval with this mean and spread would decide,
    at the same level: a rough guide to how many an undecided variant needs; None past
    MOST_SEEDS_SUGGESTED (a mean right at the margin may never decide)."""
    above_margin = margin_below if margin_above is None else margin_above
    if not (math.isfinite(mean) and math.isfinite(sd)):
        return None
    n = np.arange(max(2, start), MOST_SEEDS_SUGGESTED + 1)
    low, high = intervals(np.full(n.shape, mean), np.full(n.shape, sd), n, level)
    decided = verdict_codes(low, high, margin_below, above_margin) != UNDECIDED_CODE
    return int(n[decided.argmax()]) if decided.any() else None


@dataclass(frozen=True)
class Decision:
    """One variant's verdict at its current look, with everything that backs it."""

    code: int
    mean: float  # the mean paired difference
    low: float  # the decision interval, at confidence 1 - level
    high: float
    n: int  # paired seeds
    level: float  # the error rate this interval spends
    p: float  # raw two-sided p-value that the difference is zero
    p_adjusted: float  # p of the verdict's own test, adjusted for the looks and variants (compare with ALPHA)
    detectable: float  # the smallest |difference| these seeds, with this spread, call better or worse
    needed: int | None  # for an undecided variant: seeds the current spread suggests a decision needs

    def label(self, labels: Sequence[str] = LOSS_LABELS) -> str:
        return labels[self.code]

    @property
    def decided(self) -> bool:
        return self.code != UNDECIDED_CODE


NO_DECISION = Decision(UNDECIDED_CODE, math.nan, math.nan, math.nan, 0, math.nan, math.nan, math.nan, math.nan, None)


def decide(differences: Sequence[float], level: float, margin_below: float, margin_above: float | None = None,
           alpha: float = ALPHA) -> Decision:  # fmt: skip
    """The verdict on paired differences at a look that spends `level` (see look_level)."""
    values = np.asarray([d for d in differences if d is not None and math.isfinite(d)], dtype=float)
    n = len(values)
    if n == 0:
        return NO_DECISION
    mean = float(values.mean())
    if n < 2:
        return Decision(UNDECIDED_CODE, mean, math.nan, math.nan, 1, level, math.nan, math.nan, math.nan, None)
    above_margin = margin_below if margin_above is None else margin_above
    sd = float(values.std(ddof=1))
    low, high = (float(x) for x in intervals(mean, sd, n, level))
    code = int(verdict_codes(low, high, margin_below, above_margin))
    p = float(p_values(mean, sd, n))
    scale = alpha / level  # p below level <=> adjusted p below alpha
    if code == EQUIVALENT_CODE:  # the two-sided interval inside the band is TOST at level/2 per side
        p_adjusted = min(1.0, 2 * float(equivalence_p_values(mean, sd, n, margin_below, above_margin)) * scale)
    else:
        p_adjusted = min(1.0, p * scale)
    needed = None if code != UNDECIDED_CODE else seeds_needed(mean, sd, level, margin_below, above_margin, n + 1)
    return Decision(code, mean, low, high, n, level, p, p_adjusted, (high - low) / 2, needed)


def paired_differences(variant: dict[int, float], baseline: dict[int, float]) -> list[float]:
    """variant - baseline over the seeds both have a value for, in seed order."""
    return [variant[seed] - baseline[seed] for seed in sorted(variant.keys() & baseline.keys())]


@dataclass(frozen=True)
class Design:
    """How a sweep reaches its verdicts: the margins, the error rate, and the looks of --seeds auto
    (None: a fixed set of seeds, judged once)."""

    margin: float = LOSS_MARGIN
    speed_margin: float = SPEED_MARGIN
    alpha: float = ALPHA
    looks: tuple[int, ...] | None = None

    def level(self, seeds_run: int, variants: int) -> float:
        """The error rate one variant's interval spends after `seeds_run` seeds, among `variants`."""
        if self.looks is None:
            return self.alpha / max(1, variants)
        return look_level(self.looks, seeds_run, variants, self.alpha)

    def speed_band(self) -> tuple[float, float]:
        """The equivalence band of a log speed ratio: ratios within (1 - margin, 1 + margin)."""
        return -math.log(1 - self.speed_margin), math.log(1 + self.speed_margin)

    @classmethod
    def of_sweep(cls, sweep: dict[str, Any]) -> Design:
        """The design a run recorded in sweep.json (its spec); the defaults for a run from before margins."""
        spec = sweep.get("spec") or {}
        auto = spec.get("seeds") == "auto"
        return cls(
            margin=float(spec.get("margin") or LOSS_MARGIN),
            speed_margin=float(spec.get("speed_margin") or SPEED_MARGIN),
            looks=tuple(looks(int(spec.get("max_seeds") or DEFAULT_MAX_SEEDS))) if auto else None,
        )
