"""Interleaved speed: paired ratios and their interval on known numbers, the verdict rule, the
alternating round order, A/A and A/B comparisons on a drifting fake clock, and the speed phase
of `run` (skipped, in one line, where fewer than two variants trained)."""

from __future__ import annotations

import json
import math
import random
import statistics
from pathlib import Path

import pytest

from minigpt.report.speed_results import parse_speed
from minigpt.speed import compare, time_rounds, untimed_devices
from minigpt.stats import paired_ratio, speed_verdict
from minigpt.store import RunStore

from .conftest import ONE_SEED, SHAKESPEARE, TINY_SET, run_cli


def test_paired_ratio_is_the_geometric_mean_with_a_t_interval_on_logs() -> None:
    ratios = [1.10, 1.20, 1.00, 1.10]
    logs = [math.log(r) for r in ratios]
    half = 3.182446 * statistics.stdev(logs) / 2  # t(0.975, 3) * sd / sqrt(4)
    paired = paired_ratio(ratios)
    assert paired.ratio == pytest.approx(math.exp(statistics.fmean(logs)))
    assert paired.low == pytest.approx(math.exp(statistics.fmean(logs) - half), rel=1e-4)
    assert paired.high == pytest.approx(math.exp(statistics.fmean(logs) + half), rel=1e-4)
    assert paired.verdict == "undecided"  # the interval [0.95, 1.25] holds 1.0 and reaches past the 2% margin


def test_verdicts() -> None:
    assert paired_ratio([1.20, 1.21, 1.19, 1.20]).verdict == "faster"
    assert paired_ratio([0.80, 0.81, 0.79, 0.80]).verdict == "slower"
    assert speed_verdict(1.015, 1.01, 1.019) == "equivalent"  # faster, but by less than the 2% margin
    assert speed_verdict(0.985, 0.98, 0.99) == "slower"  # excludes 1, reaches the margin
    assert speed_verdict(0.985, 0.98, 0.99, margin=0.03) == "equivalent"  # the margin is a setting
    assert speed_verdict(1.10, 0.99, 1.2) == "undecided"
    assert paired_ratio([1.3]).verdict == "undecided"  # one round: no interval


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


class SharedMachine:
    """A fake clock for contenders on one machine whose speed drifts: a step takes its
    contender's cost times the machine's slowness at that moment, times noise."""

    def __init__(self, seed: int, drift: float) -> None:
        self.rng, self.drift, self.steps = random.Random(seed), drift, 0

    def step(self, cost: float) -> float:
        self.steps += 1
        slowness = math.exp(self.drift * self.steps)  # every step a little slower than the one before
        return cost * slowness * self.rng.lognormvariate(0, 0.05)


class TimedContender:
    def __init__(self, name: str, cost: float, machine: SharedMachine) -> None:
        self.name, self.cost, self.machine, self.tokens_per_step = name, cost, machine, 100

    def seconds_per_step(self, steps: int) -> float:
        return self.machine.step(self.cost)


def compared(costs: dict[str, float], seed: int, drift: float = 0.02, rounds: int = 10) -> dict:
    machine = SharedMachine(seed, drift)
    contenders = [TimedContender(name, cost, machine) for name, cost in costs.items()]
    seconds, failed = time_rounds(contenders, rounds)  # type: ignore[arg-type]
    assert not failed
    return compare(contenders, seconds, "baseline")  # type: ignore[arg-type]


def test_an_identical_variant_reads_neither_faster_nor_slower_while_the_machine_slows_down() -> None:
    """Every step runs 2% slower than the one before (the machine ends 7x slower than it began):
    a variant always timed second would look 2% slower; steps in alternating order cancel it."""
    verdicts = [compared({"baseline": 1.0, "same": 1.0}, seed)["same"] for seed in range(40)]
    assert sum(v["speed_verdict"] in ("faster", "slower") for v in verdicts) <= 2  # about 5% at most
    assert statistics.median(v["speed_ratio"] for v in verdicts) == pytest.approx(1.0, abs=0.005)


def test_a_variant_a_quarter_slower_reads_slower_at_its_ratio() -> None:
    for seed in range(10):
        slower = compared({"baseline": 1.0, "heavy": 1.25}, seed)["heavy"]
        assert slower["speed_verdict"] == "slower"
        assert slower["speed_ratio"] == pytest.approx(0.8, rel=0.03)


SAME_PLUGIN = """
from minigpt import variant


@variant("same", "exactly the baseline: an A/A check of the speed comparison")
def same(cfg):
    return cfg
"""


def run_args(out: Path, *args: str) -> list[str]:
    return ["run", "--devices", "cpu", "--data", str(SHAKESPEARE), "--out", str(out), "--quiet", "--no-report",
            "--max-steps", "2", *ONE_SEED, *TINY_SET, *args]  # fmt: skip


@pytest.mark.slow
def test_run_times_its_variants_in_interleaved_rounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "same.py").write_text(SAME_PLUGIN)
    args = run_args(tmp_path / "run", "--variants", "baseline,same", "--plugins", str(tmp_path / "same.py"))
    code, out, err = run_cli([*args, "--speed-rounds", "3"], monkeypatch, capsys)
    assert code == 0, err
    assert "speed vs baseline on cpu" in out  # the run ends with the speed verdicts
    speed = json.loads((tmp_path / "run" / "speed.json").read_text())
    same = speed["devices"]["cpu"]["variants"]["same"]
    assert len(same["ratios"]) == 3
    assert 0.5 < same["speed_ratio"] < 2  # the same model: a factor of two would be a counting mistake
    assert speed["devices"]["cpu"]["variants"]["baseline"]["speed_ratio"] == 1.0


@pytest.mark.slow
def test_run_with_one_variant_skips_the_speed_phase_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    code, out, err = run_cli(run_args(tmp_path / "run", "--variants", "baseline"), monkeypatch, capsys)
    assert code == 0, err
    reason = "only baseline trained on cpu, so there is nothing to compare"
    assert f"interleaved speed: not measured ({reason})" in out.splitlines()
    speed = json.loads((tmp_path / "run" / "speed.json").read_text())
    assert speed["devices"] == {"cpu": {"skipped": reason}}
    assert parse_speed(speed).skipped == {"cpu": reason}  # the report says so


def write_trial(store: RunStore, variant: str, device: str, status: str) -> None:
    store.write_trial({"trial_id": f"{variant}--{device}--s0", "variant": variant, "device": device, "status": status})


def test_a_device_is_timed_only_where_two_variants_trained(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    for variant, status in (("baseline", "completed"), ("nope", "diverged"), ("boom", "failed")):
        write_trial(store, variant, "cpu", status)
    assert untimed_devices(store, ["cpu"]) == {}
    write_trial(store, "nope", "cpu", "failed")
    assert untimed_devices(store, ["cpu"]) == {"cpu": "only baseline trained on cpu, so there is nothing to compare"}
    write_trial(store, "baseline", "cpu", "failed")
    assert untimed_devices(store, ["cpu"]) == {"cpu": "no variant trained on cpu, so there is nothing to compare"}


def test_speed_of_a_folder_without_a_run_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    code, _, err = run_cli(["speed", str(tmp_path)], monkeypatch, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "no trials" in err
