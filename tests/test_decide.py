"""The sequential verdicts (minigpt.decide), proved by simulation: simulated paired differences
run through the decision code the runner uses, many sweeps at once (numpy), peeking every round.

Each simulated sweep has a baseline and several variants; every seed draws a baseline loss and a
loss per variant, so the variants' differences share the baseline's noise as in a real sweep.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from minigpt import decide

MARGIN = decide.LOSS_MARGIN
SPREAD = MARGIN / 2  # the spread of one paired difference: a 600k-token sweep's tightest variants
RUNS = 4000
VARIANTS = 4
MAX_SEEDS = 10


def simulate_differences(
    effects: list[float], noise: str, runs: int = RUNS, seed: int = 0, spread: float = SPREAD
) -> np.ndarray:
    """Paired differences shaped (runs, variants, MAX_SEEDS): variant loss minus baseline loss per seed."""
    rng = np.random.default_rng(seed)
    shape = (runs, len(effects) + 1, MAX_SEEDS)
    # heavy: Student's t with 3 degrees of freedom, scaled to unit variance
    losses = rng.standard_normal(shape) if noise == "normal" else rng.standard_t(3, shape) / math.sqrt(3)
    losses *= spread / math.sqrt(2)  # each difference has this spread
    return losses[:, 1:] - losses[:, :1] + np.asarray(effects)[None, :, None]


def sequential_verdicts(differences: np.ndarray, level_at: object) -> tuple[np.ndarray, np.ndarray]:
    """(codes, seeds used) per run and variant: judged after every round, each variant stopping
    at its first decision; level_at(seeds) is the error rate an interval spends at that look."""
    counts = decide.looks(differences.shape[-1])
    codes = []
    for n in counts:
        seen = differences[..., :n]
        low, high = decide.intervals(seen.mean(-1), seen.std(-1, ddof=1), n, level_at(n))
        codes.append(decide.verdict_codes(low, high, MARGIN))
    final, at = decide.first_decisions(np.stack(codes, axis=-1))
    return final, np.asarray(counts)[at]


def the_design(variants: int):
    counts = decide.looks(MAX_SEEDS)
    return lambda n: decide.look_level(counts, n, variants)


def naive(n: int) -> float:
    """A fixed-size 95% t test after every round, as if each look were the only one."""
    return 0.05


def false_difference_rate(codes: np.ndarray) -> float:
    """The share of sweeps with any variant called better or worse (all have no true difference)."""
    wrong = (codes == decide.BELOW_CODE) | (codes == decide.ABOVE_CODE)
    return float(wrong.any(axis=-1).mean())


def monte_carlo_ceiling(rate: float = decide.ALPHA, runs: int = RUNS) -> float:
    """The largest rate a procedure that holds `rate` shows in `runs` sweeps, but for 1 in 1000."""
    return rate + 3.1 * math.sqrt(rate * (1 - rate) / runs)


@pytest.mark.parametrize("spread", [SPREAD, 4 * MARGIN])  # the second: equivalence stops almost none
@pytest.mark.parametrize("noise", ["normal", "heavy"])
def test_no_difference_rarely_called_better_or_worse(noise: str, spread: float) -> None:
    differences = simulate_differences([0.0] * VARIANTS, noise, spread=spread)
    codes, _ = sequential_verdicts(differences, the_design(VARIANTS))
    assert false_difference_rate(codes) <= monte_carlo_ceiling()


@pytest.mark.parametrize("noise", ["normal", "heavy"])
def test_the_check_catches_a_naive_procedure(noise: str) -> None:
    """The test above can fail: a t test at 95% after every round, no adjustment, calls a
    difference in far more than 5% of sweeps with none."""
    differences = simulate_differences([0.0] * VARIANTS, noise, spread=4 * MARGIN)
    codes, _ = sequential_verdicts(differences, naive)
    assert false_difference_rate(codes) > monte_carlo_ceiling()


def test_false_equivalence_is_rare_at_the_margin() -> None:
    """A true difference of exactly the margin, either sign, is not "the same": calling it
    equivalent is the other kind of wrong verdict, and its rate is held too."""
    differences = simulate_differences([MARGIN, -MARGIN, MARGIN, -MARGIN], "normal", spread=MARGIN)
    codes, _ = sequential_verdicts(differences, the_design(VARIANTS))
    assert float((codes == decide.EQUIVALENT_CODE).any(axis=-1).mean()) <= monte_carlo_ceiling()


def test_twice_the_margin_is_mostly_decided() -> None:
    differences = simulate_differences([-2 * MARGIN, 2 * MARGIN, 0.0, 0.0], "normal")
    codes, seeds = sequential_verdicts(differences, the_design(VARIANTS))
    assert (codes[:, 0] == decide.BELOW_CODE).mean() > 0.8  # better
    assert (codes[:, 1] == decide.ABOVE_CODE).mean() > 0.8  # worse
    assert seeds[:, :2].mean() < MAX_SEEDS  # and most stop before the last round


def test_no_difference_mostly_reads_equivalent() -> None:
    differences = simulate_differences([0.0] * VARIANTS, "normal")
    codes, _ = sequential_verdicts(differences, the_design(VARIANTS))
    assert (codes == decide.EQUIVALENT_CODE).mean() > 0.8


def test_the_runner_decides_as_the_simulation_does() -> None:
    """decide() on one variant's seeds (what the runner and the report call) gives the codes
    the vectorized path gives for the same draws."""
    differences = simulate_differences([0.0, 2 * MARGIN, MARGIN], "heavy", runs=50, seed=3)
    counts = decide.looks(MAX_SEEDS)
    for n in counts:
        level = decide.look_level(counts, n, 3)
        seen = differences[..., :n]
        low, high = decide.intervals(seen.mean(-1), seen.std(-1, ddof=1), n, level)
        codes = decide.verdict_codes(low, high, MARGIN)
        for run in range(50):
            for variant in range(3):
                decision = decide.decide(list(seen[run, variant]), level, MARGIN)
                assert decision.code == codes[run, variant]
                assert decision.low == pytest.approx(low[run, variant])


def test_looks_spend_the_whole_rate_once() -> None:
    counts = decide.looks(10)
    assert counts == [3, 5, 8, 10]
    assert sum(decide.look_shares(counts)) == pytest.approx(1.0)
    assert decide.looks(2) == [2]
    assert decide.look_level([3], 3, 4) == pytest.approx(0.05 / 4)  # a fixed set of seeds: one look
    assert decide.next_look(counts, 5) == 8 and decide.next_look(counts, 10) is None
    with pytest.raises(decide.DesignError, match="--max-seeds"):
        decide.looks(1)


def test_four_verdicts_from_intervals() -> None:
    codes = decide.verdict_codes([-0.05, 0.02, -0.004, -0.02, -0.012], [-0.03, 0.04, 0.006, 0.01, -0.002], MARGIN)
    labels = [decide.LOSS_LABELS[c] for c in codes]
    assert labels == ["better", "worse", "equivalent", "undecided", "better"]
    speed = decide.verdict_codes([math.log(1.05), math.log(0.985)], [math.log(1.09), math.log(0.995)], 0.02)
    assert [decide.SPEED_LABELS[c] for c in speed] == ["faster", "equivalent"]


def test_decision_carries_its_evidence() -> None:
    same = decide.decide([0.0, 0.0, 0.0], 0.05, MARGIN)  # a copy of the baseline: identical seeds
    assert same.label() == "equivalent" and same.low == same.high == 0.0 and same.p_adjusted == 0.0
    shift = decide.decide([-0.031, -0.032, -0.033], 0.05 / 4, MARGIN)
    assert shift.label() == "better" and shift.p_adjusted < 0.05 and shift.high < 0
    assert shift.p_adjusted == pytest.approx(min(1, shift.p * 4))
    unsure = decide.decide([-0.02, 0.01, -0.005], 0.05, MARGIN)
    assert unsure.label() == "undecided" and unsure.needed is not None and unsure.needed > 3
    assert unsure.detectable == pytest.approx((unsure.high - unsure.low) / 2)
    assert decide.decide([0.1], 0.05, MARGIN).label() == "undecided"  # one seed: no interval


def test_seeds_needed_grow_with_the_spread() -> None:
    tight = decide.seeds_needed(0.0, 0.002, 0.01, MARGIN)
    loose = decide.seeds_needed(0.0, 0.02, 0.01, MARGIN)
    assert tight is not None and loose is not None and tight < loose
    assert decide.seeds_needed(0.0, 1.0, 0.01, MARGIN) is None  # a spread 100x the margin: out of reach


def test_first_decisions_take_each_variants_first_decided_look() -> None:
    # (sweeps, variants, looks) = (2, 2, 3): an undecided variant keeps its last look
    codes = np.array([[[0, 1, 2], [0, 0, 0]], [[3, 0, 0], [0, 0, 2]]])
    final, first = decide.first_decisions(codes)
    assert final.tolist() == [[1, 0], [3, 2]]
    assert first.tolist() == [[1, 2], [0, 2]]


def test_the_speed_band_is_the_log_of_the_ratio_band() -> None:
    low, high = decide.Design(speed_margin=0.05).speed_band()
    assert low == pytest.approx(-math.log(0.95)) and high == pytest.approx(math.log(1.05))


def test_the_design_is_read_back_from_the_sweeps_spec() -> None:
    spec = {"seeds": "auto", "margin": 0.02, "speed_margin": 0.05, "max_seeds": 6}
    design = decide.Design.of_sweep({"spec": spec})
    assert design == decide.Design(margin=0.02, speed_margin=0.05, looks=(3, 5, 6))
    assert decide.Design.of_sweep({"spec": {"seeds": "auto"}}).looks == (3, 5, 8, 10)
    fixed = decide.Design.of_sweep({"spec": {"seeds": [0, 1, 2], "max_seeds": 6}})
    assert fixed == decide.Design() and fixed.looks is None
    assert decide.Design.of_sweep({}) == decide.Design()  # a run from before margins


def test_a_fixed_design_splits_the_rate_over_the_variants_compared() -> None:
    assert decide.Design().level(3, 1) == pytest.approx(0.05)  # one variant: the whole rate
    assert decide.Design().level(3, 0) == pytest.approx(0.05)
    assert decide.Design().level(3, 4) == pytest.approx(0.05 / 4)
    auto = decide.Design(looks=(3, 5, 8, 10))
    assert auto.level(5, 2) == pytest.approx(0.05 * (2 / 10) / 2)  # the second look adds 2 of 10 seeds


def test_no_seed_or_one_seed_decides_nothing() -> None:
    assert decide.decide([], 0.05, MARGIN) == decide.NO_DECISION
    assert decide.decide([None, math.nan], 0.05, MARGIN) == decide.NO_DECISION
    one = decide.decide([0.1, None, math.inf], 0.05, MARGIN)  # missing and infinite values are left out
    assert (one.code, one.mean, one.n, one.level, one.needed) == (decide.UNDECIDED_CODE, 0.1, 1, 0.05, None)
    assert all(math.isnan(x) for x in (one.low, one.high, one.p, one.p_adjusted, one.detectable))
    two = decide.decide([0.1, 0.12], 0.05, MARGIN)
    assert two.n == 2 and two.low < 0.11 < two.high  # two seeds: an interval


def test_a_band_with_two_margins_is_read_on_each_side() -> None:
    level = 0.05 / 4  # scale 4: adjusted p is four times the raw one
    above = decide.decide([0.02, 0.021, 0.019, 0.02], level, 0.01, 0.05)  # inside (-0.01, +0.05)
    assert above.label() == "equivalent" and above.n == 4 and above.needed is None
    tost = decide.equivalence_p_values(above.mean, np.std([0.02, 0.021, 0.019, 0.02], ddof=1), 4, 0.01, 0.05)
    assert above.p_adjusted == pytest.approx(2 * float(tost) * 4) and 0 < above.p_adjusted < 0.05
    below = decide.decide([-0.02, -0.021, -0.019, -0.02], level, 0.01, 0.05)  # past -0.01: better
    assert below.label() == "better" and below.needed is None
    unsure = decide.decide([0.0, 0.03, -0.01], level, 0.01, 0.05)
    assert unsure.label() == "undecided" and unsure.p_adjusted == 1.0  # p * 4 > 1 is capped
    sd = float(np.std([0.0, 0.03, -0.01], ddof=1))
    assert unsure.needed == decide.seeds_needed(unsure.mean, sd, level, 0.01, 0.05) == 14  # 65 with +-0.01


def test_seeds_needed_can_be_the_very_next_seed_or_two() -> None:
    assert decide.decide([-0.03, -0.02, -0.01], 0.05, MARGIN).needed == 4
    assert decide.seeds_needed(0.5, 0.001, 0.05, MARGIN) == 2
    assert decide.seeds_needed(0.02, 0.01, 0.05, 0.01, 0.05) == 3  # equivalent at 3 inside (-0.01, +0.05)
    assert decide.seeds_needed(0.02, 0.01, 0.05, 0.01) == 4  # above at 4 with +-0.01


def test_p_values_of_no_spread() -> None:
    assert float(decide.p_values(0.0, 0.0, 3)) == 1.0  # every difference zero: no evidence of one
    assert float(decide.p_values(0.5, 0.0, 3)) == 0.0  # every difference 0.5: certain
    assert math.isnan(float(decide.p_values(math.nan, 0.0, 3)))
    assert float(decide.p_values(1.0, math.sqrt(3), 3)) == pytest.approx(1 - 1 / math.sqrt(3))  # t = 1 on 2 df


def test_equivalence_p_values_test_each_margin_on_its_side() -> None:
    from scipy import stats

    se = 0.01 / math.sqrt(5)
    lower, upper = stats.t.sf((0.02 + 0.01) / se, 4), stats.t.sf((0.03 - 0.02) / se, 4)
    assert float(decide.equivalence_p_values(0.02, 0.01, 5, 0.01, 0.03)) == pytest.approx(max(lower, upper))
    symmetric = stats.t.sf((0.02 - 0.005) / se, 4)
    assert float(decide.equivalence_p_values(0.005, 0.01, 5, 0.02)) == pytest.approx(symmetric)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no spread: certain, without dividing by zero out loud
        assert float(decide.equivalence_p_values(0.0, 0.0, 3, MARGIN)) == 0.0


def test_a_variant_before_the_first_look_is_at_look_zero() -> None:
    assert decide.look_index([3, 5, 8], 2) == 0
    assert decide.look_index([3, 5, 8], 6) == 1
    assert decide.look_level([3, 5, 8, 10], 3, 1) == pytest.approx(0.05 * 0.3)
    assert decide.Design(alpha=0.1, looks=(3, 5)).level(3, 1) == pytest.approx(0.1 * 0.6)


def test_an_interval_touching_zero_or_a_margin_is_undecided() -> None:
    codes = decide.verdict_codes([-0.01, -0.005, -0.05, 0.0], [0.005, 0.01, 0.0, 0.05], MARGIN)
    assert codes.tolist() == [decide.UNDECIDED_CODE] * 4


def test_seeds_needed_looks_up_to_the_most_suggested_and_no_further() -> None:
    from scipy import stats

    # a spread at which an interval around 0 fits inside +-0.01 at exactly n seeds, and not at n - 1
    def spread_deciding_at(n: int) -> float:
        return MARGIN * math.sqrt(n) / float(stats.t.isf(0.025, n - 1)) * (1 - 1e-6)

    assert decide.seeds_needed(0.0, spread_deciding_at(decide.MOST_SEEDS_SUGGESTED), 0.05, MARGIN) == 10_000
    assert decide.seeds_needed(0.0, spread_deciding_at(decide.MOST_SEEDS_SUGGESTED + 1), 0.05, MARGIN) is None


def test_the_equivalence_p_value_reads_the_lower_margin_too() -> None:
    values = [0.001, -0.001, 0.0, 0.0]  # nearer the lower margin (-0.01) than the upper (+0.05)
    level = 0.05 / 4
    same = decide.decide(values, level, 0.01, 0.05)
    tost = decide.equivalence_p_values(0.0, np.std(values, ddof=1), 4, 0.01, 0.05)
    assert same.label() == "equivalent" and same.p_adjusted == pytest.approx(2 * float(tost) * 4)
