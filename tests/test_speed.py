"""Interleaved speed: paired ratios and their interval on known numbers, the verdict rule, the
alternating round order, and an A/A comparison that must find no difference."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from minigpt.speed import time_rounds
from minigpt.stats import paired_ratio, speed_verdict

from .conftest import SHAKESPEARE, cli


def test_paired_ratio_is_the_geometric_mean_with_a_t_interval_on_logs() -> None:
    ratios = [1.10, 1.20, 1.00, 1.10]
    logs = [math.log(r) for r in ratios]
    half = 3.182446 * statistics.stdev(logs) / 2  # t(0.975, 3) * sd / sqrt(4)
    paired = paired_ratio(ratios)
    assert paired.ratio == pytest.approx(math.exp(statistics.fmean(logs)))
    assert paired.low == pytest.approx(math.exp(statistics.fmean(logs) - half), rel=1e-4)
    assert paired.high == pytest.approx(math.exp(statistics.fmean(logs) + half), rel=1e-4)
    assert paired.verdict == "no clear difference"  # the interval [0.95, 1.25] holds 1.0


def test_verdicts() -> None:
    assert paired_ratio([1.20, 1.21, 1.19, 1.20]).verdict == "faster"
    assert paired_ratio([0.80, 0.81, 0.79, 0.80]).verdict == "slower"
    assert speed_verdict(1.015, 1.01, 1.02) == "no clear difference"  # clear, but within 2%
    assert speed_verdict(0.985, 0.98, 0.99) == "no clear difference"
    assert speed_verdict(1.10, 0.99, 1.2) == "no clear difference"
    assert paired_ratio([1.3]).verdict == "no clear difference"  # one round: no interval


class FakeContender:
    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls, self.tokens_per_step = name, calls, 100

    def seconds_per_step(self, steps: int) -> float:
        self.calls.append(self.name)
        return float(len(self.calls))


def test_steps_alternate_their_order_and_rounds_keep_medians_after_the_warmup() -> None:
    calls: list[str] = []
    contenders = [FakeContender(name, calls) for name in "abc"]
    seconds, failed = time_rounds(contenders, rounds=2, steps=2, warmup=1)  # type: ignore[arg-type]
    assert "".join(calls) == "abccba" + "cbaabc" + "abccba"
    # round 2 took calls 7..12 (c=7, b=8, a=9, a=10, b=11, c=12): a's steps 9 and 10, median 9.5
    assert seconds == {"a": [9.5, 15.5], "b": [9.5, 15.5], "c": [9.5, 15.5]} and failed == {}


class FailingContender(FakeContender):
    def seconds_per_step(self, steps: int) -> float:
        raise RuntimeError("out of memory")


def test_a_contender_that_fails_is_left_out_and_the_others_go_on() -> None:
    calls: list[str] = []
    contenders = [FakeContender("a", calls), FailingContender("b", calls), FakeContender("c", calls)]
    seconds, failed = time_rounds(contenders, rounds=2, steps=1, warmup=0)  # type: ignore[arg-type]
    assert "".join(calls) == "acca"
    assert set(seconds) == {"a", "c"} and failed == {"b": "RuntimeError: out of memory"}


SAME_PLUGIN = """
from minigpt import variant


@variant("same", "exactly the baseline: an A/A check of the speed comparison")
def same(cfg):
    return cfg
"""


@pytest.mark.slow
def test_an_identical_variant_reads_no_clear_difference(tmp_path: Path) -> None:
    (tmp_path / "same.py").write_text(SAME_PLUGIN)
    result = cli(
        "run", "--devices", "cpu", "--data", str(SHAKESPEARE), "--out", str(tmp_path / "run"), "--quiet",
        "--no-report", "--variants", "baseline,same", "--max-steps", "2", "--plugins", str(tmp_path / "same.py"),
        "--speed-rounds", "20", "--set", "n_layer=2", "--set", "n_embd=128", "--set", "batch_size=16",
        "--set", "block_size=64",
        timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "interleaved speed" in result.stdout
    speed = json.loads((tmp_path / "run" / "speed.json").read_text())
    same = speed["devices"]["cpu"]["variants"]["same"]
    assert same["speed_verdict"] == "no clear difference"
    assert 0.95 <= same["speed_ratio"] <= 1.05
    assert speed["devices"]["cpu"]["variants"]["baseline"]["speed_ratio"] == 1.0
    assert len(same["ratios"]) == 20


def test_speed_of_a_folder_without_a_run_is_one_line(tmp_path: Path) -> None:
    result = cli("speed", str(tmp_path))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "no trials" in result.stderr
