"""The gap against size (minigpt.report.size_gaps): the slope of the paired differences against log2
parameters and its interval against scipy's regression, the three readings of it, and one sentence
per variant with its difference at every size."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from minigpt.report.size_gaps import (
    GROWS,
    SHRINKS,
    STEADY,
    fit_trend,
    meaning,
    paired_points,
    size_trends,
    trend_sentences,
)


def test_the_slope_and_its_interval_are_an_ordinary_regression_with_a_t_interval() -> None:
    x = [10.0, 10.0, 10.0, 11.0, 11.0, 11.0, 12.0, 12.0, 12.0]
    y = [0.05, 0.07, 0.06, 0.03, 0.05, 0.02, 0.01, 0.00, 0.02]
    trend = fit_trend(x, y, level=0.05)
    reference = stats.linregress(x, y)
    half = stats.t.ppf(0.975, len(x) - 2) * reference.stderr
    assert trend.slope == pytest.approx(reference.slope)
    assert (trend.low, trend.high) == (pytest.approx(reference.slope - half), pytest.approx(reference.slope + half))
    assert trend.at(2**11) == pytest.approx(reference.intercept + reference.slope * 11)
    assert (trend.points, trend.sizes, trend.confidence) == (9, 3, 0.95)
    assert trend.gap == SHRINKS  # Δ is above zero and falls as the model grows


@pytest.mark.parametrize(
    ("y", "reading", "words"),
    [
        (
            [0.0, 0.01, 0.05, 0.06, 0.10, 0.11],
            GROWS,
            "the gap grows with size (Δ rises as the model grows: its deficit widens)",
        ),
        (
            [0.0, 0.05, 0.02, 0.03, 0.01, 0.04],
            STEADY,
            "the gap is steady: no trend with size that these seeds can tell",
        ),
        (
            [0.1, 0.11, 0.05, 0.06, 0.0, 0.01],
            SHRINKS,
            "the gap shrinks with size (Δ falls as the model grows: its deficit narrows)",
        ),
        (
            [-0.1, -0.11, -0.05, -0.06, 0.0, -0.01],
            SHRINKS,
            "the gap shrinks with size (Δ rises as the model grows: its advantage narrows)",
        ),
        (
            [0.0, -0.01, -0.05, -0.06, -0.10, -0.11],
            GROWS,
            "the gap grows with size (Δ falls as the model grows: its advantage widens)",
        ),
    ],
)
def test_a_slope_reads_grows_shrinks_or_steady_by_where_its_interval_lies(
    y: list[float], reading: str, words: str
) -> None:
    trend = fit_trend([1, 1, 2, 2, 3, 3], y, level=0.05)
    assert (trend.gap, meaning(trend)) == (reading, words)


def test_no_trend_without_two_sizes_and_a_degree_of_freedom() -> None:
    assert fit_trend([1, 1, 1], [0.1, 0.2, 0.3], 0.05) is None
    assert fit_trend([1, 2], [0.1, 0.2], 0.05) is None


def ladder(diffs: dict[str, list[float]], params: dict[str, int], variant: str = "adamw") -> pd.DataFrame:
    rows = []
    for size, values in diffs.items():
        for seed, diff in enumerate(values):
            common = {"device": "cpu", "seed": seed, "size": size, "status": "completed", "stage": "eval"}
            rows.append({**common, "variant": "baseline", "best_val_loss": 2.0, "params": params[size]})
            rows.append({**common, "variant": variant, "best_val_loss": 2.0 + diff, "params": 2 * params[size]})
    return pd.DataFrame(rows)


PARAMS = {"xxs": 2**10, "xs": 2**11, "s": 2**12}


def test_the_points_pair_seeds_within_a_size_at_the_variants_own_parameters() -> None:
    frame = ladder({"xxs": [0.1, 0.2], "xs": [0.05, 0.07]}, PARAMS)
    frame = frame[~((frame["variant"] == "baseline") & (frame["seed"] == 1) & (frame["size"] == "xs"))]
    xs, ys = paired_points(frame, "adamw", "cpu")
    assert xs == [11.0, 11.0, 12.0] and ys == pytest.approx([0.1, 0.2, 0.05])  # xs seed 1 has no baseline


def test_each_variants_interval_spends_its_share_of_the_error_rate() -> None:
    frame = pd.concat([ladder({s: [0.1, 0.12] for s in PARAMS}, PARAMS),
                       ladder({s: [0.0, 0.01] for s in PARAMS}, PARAMS, "gqa").query("variant == 'gqa'")])  # fmt: skip
    trends = size_trends(frame, ["baseline", "adamw", "gqa"])
    assert set(trends) == {("adamw", "cpu"), ("gqa", "cpu")}
    assert all(trend.confidence == pytest.approx(1 - 0.05 / 2) for trend in trends.values())
    assert size_trends(frame[frame["size"] == "xs"], ["baseline", "adamw"]) == {}  # one size: no trend


def test_one_sentence_per_variant_gives_every_size_and_the_trend() -> None:
    frame = ladder({"xxs": [0.10, 0.12, 0.11], "xs": [0.06, 0.07, 0.05], "s": [0.01, 0.02, 0.0]}, PARAMS)
    trends = size_trends(frame, ["baseline", "adamw"])
    per_size = pd.DataFrame(
        [{"variant": "adamw", "device": "cpu", "size": size, "params": 2 * p, "diff_vs_baseline": d,
          "diff_low": d - 0.01, "diff_high": d + 0.01} for (size, p), d in zip(PARAMS.items(), [0.11, 0.06, 0.01], strict=True)]
        + [{"variant": "baseline", "device": "cpu", "size": "xs", "params": 1, "diff_vs_baseline": math.nan,
            "diff_low": math.nan, "diff_high": math.nan}]
    )  # fmt: skip
    (sentence,) = trend_sentences(per_size, trends)
    assert sentence.startswith("adamw on cpu, Δ vs the baseline: +0.110 [+0.100, +0.120] at xxs; +0.060")
    slope = np.polyfit([11, 12, 13], [0.11, 0.06, 0.01], 1)[0]
    assert f"Δ moves {slope:+.3f} nats" in sentence and "the gap shrinks with size" in sentence
    assert "9 paired differences at 3 sizes" in sentence
