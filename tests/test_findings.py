"""The report's sentences (minigpt.report.findings) on small runs written by hand: the verdicts
per device, the speed ratios with their intervals, and the measurement warnings."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from minigpt.report.findings import findings, loss_finding, measurement_warnings, ratio_text, speed_finding
from minigpt.report.render import build
from minigpt.report.speed_results import SPEED_COLUMNS, Drift, SpeedPhase
from tests.test_report import completed_fields, make_run, write_speed, write_trial

LOSS_CPU = (
    "On cpu, loss against the baseline (2 variants compared): worse: wide; undecided: tiny. "
    "Lowest best validation loss: baseline (2.0100 nats/char, 2.8998 bits/char)."
)


def test_without_speed_json_the_findings_say_how_to_measure_speed(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    assert findings(build(run)) == [
        LOSS_CPU,
        "This run has no interleaved speed measurement (no speed.json), so no speeds are compared; "
        f"`minigpt-bench speed {run}` measures it.",
    ]


def test_each_device_gets_its_speed_sentence_and_a_skipped_one_its_reason(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    write_speed(run)
    assert findings(build(run)) == [
        LOSS_CPU,
        "On cpu, speed against the baseline (tokens/s ratio measured interleaved over 12 rounds; > 1 is faster): "
        "wide 0.60x [0.58, 0.62], slower; tiny 1.01x [0.98, 1.04], no clear difference.",
        "On cuda, speed was not measured: no CUDA device on this machine.",
    ]


def test_one_seed_per_variant_is_told_to_run_more_seeds(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", {"baseline": {0: (2.0, 1000.0)}, "wide": {0: (2.3, 600.0)}}, failed=False)
    sentences = findings(build(run))
    assert sentences[0] == (
        "On cpu, loss against the baseline: undecided: wide. "
        "Lowest best validation loss: baseline (2.0000 nats/char, 2.8854 bits/char)."
    )
    assert sentences[-1] == (
        "With one seed per variant there are no intervals, so no difference is called; "
        "run several seeds (e.g. --seeds 0,1,2) to get them."
    )


def summary_rows(verdicts: dict[str, str], p_values: dict[str, float], losses: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"variant": v, "verdict": verdict, "p_value": p_values.get(v, math.nan), "best_val_loss": losses.get(v)}
            for v, verdict in verdicts.items()
        ]
    )


def test_loss_finding_names_each_verdict_in_order_and_counts_one_comparison() -> None:
    rows = summary_rows(
        {"baseline": "reference", "a": "equivalent", "b": "better", "c": "undecided", "d": "better"},
        {"a": 0.2},  # only one variant has a p-value: "1 variant", not "1 variants"
        {"baseline": 2.0, "a": 1.99, "b": 1.9, "c": None, "d": 1.95},
    )
    assert loss_finding(rows, "cpu", []) == (
        "On cpu, loss against the baseline (1 variant compared): better: b, d; equivalent: a; undecided: c. "
        "Lowest best validation loss: b ()."
    )


def test_loss_finding_without_a_comparison_or_a_completed_trial() -> None:
    alone = summary_rows({"baseline": "reference"}, {}, {"baseline": 2.0})
    assert loss_finding(alone, "cpu", []) == (
        "On cpu, loss against the baseline: no variant to compare with a completed baseline. "
        "Lowest best validation loss: baseline ()."
    )
    nothing = summary_rows({"baseline": "no completed trials"}, {}, {"baseline": None})
    assert loss_finding(nothing, "cuda", []) == "On cuda: no trial completed, so there is nothing to compare."


def speed_phase(rows: list[tuple[str, str, float, float, float, str]], **fields: object) -> SpeedPhase:
    frame = pd.DataFrame(
        [
            {
                "variant": v,
                "device": d,
                "speed_ratio": r,
                "speed_ratio_low": lo,
                "speed_ratio_high": hi,
                "speed_verdict": s,
            }
            for v, d, r, lo, hi, s in rows
        ],
        columns=list(SPEED_COLUMNS),
    )
    return SpeedPhase(frame, **fields)  # type: ignore[arg-type]


def test_speed_finding_ranks_by_the_sweeps_order_and_names_what_failed() -> None:
    speed = speed_phase(
        [
            ("baseline", "cpu", 1.0, 1.0, 1.0, "baseline"),
            ("extra", "cpu", 1.5, math.nan, math.nan, "undecided"),  # not in the order: listed last
            ("b", "cpu", 0.9, 0.85, 0.95, "slower"),
            ("a", "cpu", 1.2, 1.1, 1.3, "faster"),
            ("a", "cuda", 2.0, 1.9, 2.1, "faster"),
        ],
        rounds=None,
        unmeasured={("cpu", "c"): "OOM", ("cuda", "d"): "other device"},
    )
    assert speed_finding(speed, ["baseline", "a", "b"], "cpu") == (
        "On cpu, speed against the baseline (tokens/s ratio measured interleaved; > 1 is faster): "
        "a 1.20x [1.10, 1.30], faster; b 0.90x [0.85, 0.95], slower; extra 1.50x, undecided. "
        "c's speed could not be measured (OOM)."
    )


def test_speed_finding_with_only_the_baseline_measured() -> None:
    speed = speed_phase([("baseline", "cpu", 1.0, 1.0, 1.0, "baseline")], rounds=3, unmeasured={("cpu", "a"): "boom"})
    assert speed_finding(speed, ["baseline", "a"], "cpu") == (
        "On cpu, speed was not measured (speed.json has no variant besides the baseline there). "
        "a's speed could not be measured (boom)."
    )


@pytest.mark.parametrize(
    ("ratio", "low", "high", "text"),
    [
        (0.934, 0.912, 0.951, "0.93x [0.91, 0.95]"),
        (1.5, math.nan, math.nan, "1.50x"),
        (1.5, 1.2, math.inf, "1.50x"),
        (1.5, -math.inf, 1.7, "1.50x"),
        (math.nan, 0.9, 1.1, "–"),
    ],
)
def test_ratio_text(ratio: float, low: float, high: float, text: str) -> None:
    assert ratio_text(ratio, low, high) == text


def test_measurement_warnings_list_drifted_trials_and_shared_machines(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", {"baseline": {0: (2.0, 1000.0)}}, failed=False)
    drifted = {"drift": {"before": 2.0e11, "after": 1.5e11, "change": -0.25}, "drift_flagged": True}
    write_trial(run, "wide", 0, **{**completed_fields(2.3, 600.0), **drifted, "concurrent": True})
    unmeasured = {"drift": {"before": None, "after": None, "change": None}, "drift_flagged": True}
    write_trial(run, "tiny", 0, **{**completed_fields(2.1, 900.0), **unmeasured, "concurrent": True})
    rows, sentences = measurement_warnings(build(run))
    assert sorted(rows) == [
        ["tiny--cpu--s0", "– → –", "–"],
        ["wide--cpu--s0", "200.0 GFLOP/s → 150.0 GFLOP/s", "-25.0%"],
    ]
    assert sentences == [
        "2 trial(s) ran beside other trials on one machine: their speed figures (tokens/s, step ms, MFU) "
        "are not comparable with the others'."
    ]


def test_only_a_flagged_speed_phase_is_a_warning(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", failed=False)
    write_speed(run, flagged=False)
    assert measurement_warnings(build(run)) == ([], [])
    speed = speed_phase([], rounds=1, drift={"cpu": Drift(1e9, 1.25e9, 0.25, True), "cuda": Drift(1e9, 1e9, 0, False)})
    report = build(run)
    report.speed = speed
    assert measurement_warnings(report) == ([["speed phase on cpu", "1.0 GFLOP/s → 1.2 GFLOP/s", "+25.0%"]], [])


def test_several_failures_on_a_device_are_each_named() -> None:
    speed = speed_phase(
        [("baseline", "cpu", 1.0, 1.0, 1.0, "baseline"), ("a", "cpu", 1.2, 1.1, 1.3, "faster")],
        rounds=2,
        unmeasured={("cpu", "b"): "OOM", ("cpu", "c"): "boom"},
    )
    assert speed_finding(speed, ["baseline", "a", "b", "c"], "cpu") == (
        "On cpu, speed against the baseline (tokens/s ratio measured interleaved over 2 rounds; > 1 is faster): "
        "a 1.20x [1.10, 1.30], faster. b's speed could not be measured (OOM). c's speed could not be measured (boom)."
    )


def test_a_drifted_trial_and_a_drifted_speed_phase_are_both_listed(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", {"baseline": {0: (2.0, 1000.0)}}, failed=False)
    drifted = {"drift": {"before": 1.2345e11, "after": 1.0e11, "change": -0.19}, "drift_flagged": True}
    write_trial(run, "wide", 0, **{**completed_fields(2.3, 600.0), **drifted})
    report = build(run)
    report.speed = speed_phase([], rounds=1, drift={"cpu": Drift(1e9, 1.25e9, 0.25, True)})
    rows, _ = measurement_warnings(report)
    assert rows == [
        ["wide--cpu--s0", "123.5 GFLOP/s → 100.0 GFLOP/s", "-19.0%"],
        ["speed phase on cpu", "1.0 GFLOP/s → 1.2 GFLOP/s", "+25.0%"],
    ]


def test_without_a_speed_phase_or_a_note_nothing_is_said_about_speed(tmp_path: Path) -> None:
    report = build(make_run(tmp_path / "run", failed=False))
    report.speed_note = None
    assert findings(report) == [LOSS_CPU, ""]
