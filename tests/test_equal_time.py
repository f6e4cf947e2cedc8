"""`run --equal-time S`: each variant's tokens are the baseline's in S seconds times its interleaved
speed ratio, timed once before training and kept for a resume; the report's equal wall-clock view."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from minigpt import runner, speed
from minigpt.runner import QuietObserver, run_sweep
from minigpt.stages import FairOptions
from minigpt.store import RunStore
from minigpt.sweep import plan_sweep
from minigpt.train import Budget
from tests.conftest import SHAKESPEARE, TINY_SET, run_cli
from tests.test_stages import BASE, FakeExecutor, registry


@pytest.fixture(autouse=True)
def no_device_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "probe_devices", lambda specs, known: {})


def timed(ratios: dict[str, float], baseline_tokens_per_sec: float = 1000.0, error: str = "") -> object:
    """A stand-in for minigpt.speed.measure_device that reports the given ratios (and, with `error`,
    fails to time the variants without one)."""
    calls = []

    def measure(configs: dict, baseline: str, corpus: object, device: str, seed: int, rounds: int) -> dict:
        calls.append(sorted(configs))
        rows = {
            name: {"tokens_per_sec": baseline_tokens_per_sec * ratios[name], "speed_ratio": ratios[name],
                   "speed_ratio_low": ratios[name] * 0.95, "speed_ratio_high": ratios[name] * 1.05}
            if name in ratios else {"error": error}
            for name in configs
        }  # fmt: skip
        return {"device_name": "test cpu", "baseline": baseline, "drift": {}, "variants": rows}

    measure.calls = calls  # type: ignore[attr-defined]
    return measure


def equal_time_run(tmp_path: Path, variants: str, seconds: float = 20.0) -> tuple[FakeExecutor, dict]:
    plan = plan_sweep(registry(), variants, ["cpu"], [0, 1], BASE, str(SHAKESPEARE), Budget(max_tokens=5000))
    options = FairOptions(equal_time=seconds, speed_rounds=3)
    executor = FakeExecutor(best_lr=0.004)
    run_sweep(replace(plan, fair=options), RunStore(tmp_path), QuietObserver(), executor=executor)
    return executor, RunStore(tmp_path).read_sweep()


def test_each_variant_trains_the_baselines_tokens_in_s_seconds_times_its_speed_ratio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    measure = timed({"baseline": 1.0, "wide-mlp": 0.8, "half-lr": 1.2})
    monkeypatch.setattr(speed, "measure_device", measure)
    executor, sweep = equal_time_run(tmp_path, "baseline,wide-mlp,half-lr")
    evaluation = [spec for spec in executor.ran if spec.labels["stage"] == "eval"]
    tokens = {spec.variant: spec.budget.max_tokens for spec in evaluation}
    assert tokens == {"baseline": 20_000, "wide-mlp": 16_000, "half-lr": 24_000}
    assert {spec.budget.max_steps for spec in executor.ran} == {None}  # tokens, never the clock
    recorded = sweep["equal_time"]
    assert recorded["seconds"] == 20.0 and recorded["rounds"] == 3
    assert recorded["cells"]["cpu"]["variants"]["half-lr"]["speed_ratio"] == 1.2
    assert sweep["fair"]["equal_time"] == 20.0
    assert measure.calls == [["baseline", "half-lr", "wide-mlp"]]


def test_a_rerun_trains_the_recorded_budgets_without_timing_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(speed, "measure_device", timed({"baseline": 1.0, "wide-mlp": 0.5}))
    equal_time_run(tmp_path, "baseline,wide-mlp")
    (tmp_path / "trials" / "wide-mlp--cpu--s1" / "trial.json").unlink()  # one trial lost: the rerun trains it
    again = timed({"baseline": 1.0, "wide-mlp": 2.0})
    monkeypatch.setattr(speed, "measure_device", again)
    executor, sweep = equal_time_run(tmp_path, "baseline,wide-mlp")
    assert [(spec.id, spec.budget.max_tokens) for spec in executor.ran] == [("wide-mlp--cpu--s1", 10_000)]
    assert again.calls == [] and sweep["equal_time"]["cells"]["cpu"]["variants"]["wide-mlp"]["speed_ratio"] == 0.5


def test_each_variant_trains_again_at_the_baselines_tokens_and_flops_on_its_evaluated_seeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from minigpt.flops import count_flops

    monkeypatch.setattr(speed, "measure_device", timed({"baseline": 1.0, "wide-mlp": 0.8}))
    executor, _ = equal_time_run(tmp_path, "baseline,wide-mlp")
    compared = {(spec.id, spec.labels["stage"]): spec.budget.max_tokens for spec in executor.ran
                if spec.labels["stage"] != "eval"}  # fmt: skip
    per_token = {g: count_flops(BASE.replace(vocab_size=65, mlp=m)).total_per_token for g, m in
                 (("baseline", "gelu"), ("wide-mlp", "swiglu"))}  # fmt: skip
    flops_tokens = round(20_000 * per_token["baseline"] / per_token["wide-mlp"])
    assert flops_tokens != 20_000  # swiglu's FLOPs per token differ from gelu's: so does its token count
    assert compared == {
        ("wide-mlp--cpu--s0--equal-tokens", "equal-tokens"): 20_000,
        ("wide-mlp--cpu--s0--equal-flops", "equal-flops"): flops_tokens,
        ("wide-mlp--cpu--s1--equal-tokens", "equal-tokens"): 20_000,
        ("wide-mlp--cpu--s1--equal-flops", "equal-flops"): flops_tokens,
    }
    assert executor.ran[-4:] == [spec for spec in executor.ran if spec.labels["stage"] != "eval"]  # after the verdicts'


def test_no_comparison_trial_is_trained_for_a_seed_the_baseline_or_the_variant_did_not_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(speed, "measure_device", timed({"baseline": 1.0, "wide-mlp": 0.8, "half-lr": 1.2}))
    plan = plan_sweep(registry(), "baseline,wide-mlp,half-lr", ["cpu"], [0, 1], BASE, str(SHAKESPEARE),
                      Budget(max_tokens=5000))  # fmt: skip
    executor = FakeExecutor(best_lr=0.004, failing=frozenset({"half-lr"}))
    options = FairOptions(equal_time=20.0, speed_rounds=3)
    run_sweep(replace(plan, fair=options), RunStore(tmp_path), QuietObserver(), executor=executor)
    compared = {spec.variant for spec in executor.ran if spec.labels["stage"] != "eval"}
    assert compared == {"wide-mlp"}


def test_a_variant_that_could_not_be_timed_is_recorded_failed_saying_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(speed, "measure_device", timed({"baseline": 1.0}, error="RuntimeError: out of memory"))
    executor, _ = equal_time_run(tmp_path, "baseline,wide-mlp")
    assert {spec.variant for spec in executor.ran} == {"baseline"}
    record = RunStore(tmp_path).read_trial("wide-mlp--cpu--s0")
    assert record["status"] == "failed"
    assert "--equal-time could not time it" in record["error"] and "out of memory" in record["error"]


def test_an_untimeable_baseline_stops_the_sweep_before_anything_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed = {"skipped": "the baseline 'baseline' failed to step: boom", "failed": True}
    monkeypatch.setattr(speed, "measure_device", lambda *args: failed)
    with pytest.raises(Exception, match="--equal-time cannot time cpu: .*boom"):
        equal_time_run(tmp_path, "baseline,wide-mlp")
    assert not (tmp_path / "trials").exists()


SHALLOW = (
    "from minigpt import variant\n\n"
    "@variant('shallow', 'one layer fewer: faster per token')\n"
    "def shallow(cfg):\n    return cfg.replace(n_layer=cfg.n_layer - 1)\n"
)


@pytest.mark.slow
def test_a_faster_variant_trains_its_measured_ratio_of_the_baselines_tokens_and_both_are_in_the_view(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Timed for real: the tokens each variant trained stand in the ratio its timing measured
    (within one step), and the report shows both at equal time, tokens and FLOPs."""
    from minigpt.report import write_report

    plugin = tmp_path / "shallow.py"
    plugin.write_text(SHALLOW)
    command = ["run", "--variants", "baseline,shallow", "--plugins", str(plugin), "--devices", "cpu",
               "--data", str(SHAKESPEARE), "--seeds", "0,1,2", *TINY_SET, "--set", "n_layer=2",
               "--equal-time", "0.5", "--speed-rounds", "3", "--no-speed", "--no-report", "--quiet",
               "--out", str(tmp_path / "run")]  # fmt: skip
    code, out, err = run_cli(command, monkeypatch, capsys)
    assert code == 0, err
    assert "shallow:" in out and "x [" in out  # the budgets are printed before training
    store = RunStore(tmp_path / "run")
    row = store.read_sweep()["equal_time"]["cells"]["cpu"]["variants"]["shallow"]
    trials = {(r["variant"], r["seed"]): r for r in store.trials() if r["stage"] == "eval"}
    per_step = 4 * 16  # TINY_SET's batch x block
    for seed in (0, 1, 2):
        base, mine = trials[("baseline", seed)]["tokens"], trials[("shallow", seed)]["tokens"]
        assert abs(mine - row["speed_ratio"] * base) <= 2 * per_step * max(1, row["speed_ratio"])
    at_equal_tokens = {r["seed"]: r["tokens"] for r in store.trials() if r["stage"] == "equal-tokens"}
    assert all(abs(at_equal_tokens[seed] - trials[("baseline", seed)]["tokens"]) < per_step for seed in (0, 1, 2))
    write_report(tmp_path / "run", tmp_path / "report")
    view = (tmp_path / "report" / "report.md").read_text().split("## Equal wall-clock")[1].split("##")[0]
    rows = {line.split(" | ")[2]: line.split(" | ") for line in view.splitlines() if line.startswith("| – | cpu |")}
    assert rows["baseline"][3].startswith("1.000") and rows["baseline"][5].endswith("(reference)")
    for column in (5, 6, 7):  # equal time, equal tokens, equal FLOPs: a loss and its paired difference
        assert re.fullmatch(r"\d\.\d{4} \([+-]\d\.\d{4}\)", rows["shallow"][column].strip(" |")), rows["shallow"]
    tokens = {(r["variant"], r["stage"]) for r in store.trials()}
    assert ("shallow", "equal-tokens") in tokens and ("shallow", "equal-flops") in tokens
    assert ("baseline", "equal-tokens") not in tokens


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--equal-time", "0"], "--equal-time must be a positive number of seconds"),
        (["--equal-time", "5", "--max-steps", "4"], "drop --max-steps/--max-tokens/--max-seconds"),
        (["--equal-time", "5", "--max-flops", "1e9"], "drop --max-flops"),
        (["--equal-time", "5", "--variants", "qk-norm,gqa"], "add baseline to --variants"),
        (["--equal-time", "5", "--speed-rounds", "1", "--no-speed"], "--speed-rounds must be at least 2"),
    ],
)
def test_equal_time_mistakes_end_in_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    command = ["run", "--devices", "cpu", "--data", str(SHAKESPEARE), "--seeds", "0,1,2", "--quiet",
               "--out", str(tmp_path / "run"), *TINY_SET, *args]  # fmt: skip
    code, _, err = run_cli(command, monkeypatch, capsys)
    assert code == 2
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run" / "trials").exists()
