"""The sequential verdicts' error rates, power and equivalence rates by simulation, beside a naive
procedure (a 95% t test after every round, no adjustment), through the same code and the same
simulated sweeps tests/test_decide.py checks:

    python benchmarks/targets/verdict_error_rates.py              # 20,000 sweeps per row, a few seconds

Each sweep: a baseline and 4 variants, looks after 3, 5, 8 and 10 seeds (--max-seeds 10), margin
0.01 nats; every variant stops at its first decision. Spread is the standard deviation of one
seed's paired difference.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from minigpt import decide  # noqa: E402
from tests.test_decide import MARGIN, MAX_SEEDS, VARIANTS, naive, sequential_verdicts, simulate_differences, the_design  # noqa: E402

RUNS = 20_000


def rates(effects: list[float], noise: str, spread: float, procedure: object) -> dict[str, float]:
    differences = simulate_differences(effects, noise, runs=RUNS, seed=11, spread=spread)
    codes, seeds = sequential_verdicts(differences, procedure)
    truth = np.asarray(effects)
    wrong = ((codes == decide.BELOW_CODE) & (truth >= 0)) | ((codes == decide.ABOVE_CODE) & (truth <= 0))
    false_equivalent = (codes == decide.EQUIVALENT_CODE) & (np.abs(truth) >= MARGIN)
    return {
        "any false better/worse": float(wrong.any(axis=-1).mean()),
        "any false equivalent": float(false_equivalent.any(axis=-1).mean()),
        "equivalent (per variant)": float((codes == decide.EQUIVALENT_CODE).mean()),
        "better (variant 1)": float((codes[:, 0] == decide.BELOW_CODE).mean()),
        "worse (variant 2)": float((codes[:, 1] == decide.ABOVE_CODE).mean()),
        "mean seeds": float(seeds.mean()),
    }


def main() -> None:
    design, error = the_design(VARIANTS), 1.96 * np.sqrt(0.05 * 0.95 / RUNS)
    print(f"{RUNS:,} simulated sweeps per row; {VARIANTS} variants; max {MAX_SEEDS} seeds; margin {MARGIN} nats; "
          f"Monte-Carlo error at 5%: +-{error:.4f}\n")  # fmt: skip
    rows = [
        ("no difference, normal, spread M/2", [0.0] * VARIANTS, "normal", MARGIN / 2),
        ("no difference, t3 tails, spread M/2", [0.0] * VARIANTS, "heavy", MARGIN / 2),
        ("no difference, normal, spread 4M", [0.0] * VARIANTS, "normal", 4 * MARGIN),
        ("no difference, t3 tails, spread 4M", [0.0] * VARIANTS, "heavy", 4 * MARGIN),
        ("at the margin (+-M), normal, spread M", [MARGIN, -MARGIN] * (VARIANTS // 2), "normal", MARGIN),
        ("-2M, +2M, 0, 0, normal, spread M/2", [-2 * MARGIN, 2 * MARGIN, 0.0, 0.0], "normal", MARGIN / 2),
        ("-2M, +2M, 0, 0, t3 tails, spread M/2", [-2 * MARGIN, 2 * MARGIN, 0.0, 0.0], "heavy", MARGIN / 2),
        ("-2M, +2M, 0, 0, normal, spread M", [-2 * MARGIN, 2 * MARGIN, 0.0, 0.0], "normal", MARGIN),
    ]
    for label, effects, noise, spread in rows:
        for name, procedure in (("sequential", design), ("naive 95% each round", naive)):
            figures = rates(effects, noise, spread, procedure)
            print(f"{label:40s} {name:22s} " + "  ".join(f"{k} {v:.4f}" for k, v in figures.items()))
        print()


if __name__ == "__main__":
    main()
