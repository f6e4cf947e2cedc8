"""`run --equal-time S`: each variant's tokens are the baseline's in S seconds times its interleaved
speed ratio, timed once before training and kept for a resume; the report's equal wall-clock view."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from minigpt import runner, speed
from minigpt.equal_time import Comparisons, EqualTime, budget_lines, budgets, cell_key, comparison_specs
from minigpt.runner import QuietObserver, run_sweep
from minigpt.sizes import parse_sizes
from minigpt.stages import FairOptions, cells
from minigpt.store import RunStore
from minigpt.sweep import plan_sweep
from minigpt.train import Budget
from tests.conftest import SHAKESPEARE, TINY_SET, run_cli
from tests.test_stages import BASE, FakeExecutor, ScriptedRunner, groups, registry


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


# The stage on its own, on a scripted runner: what it hands the timing, what it records and prints.

CORPUS = object()  # the run's corpus, which the timing must be given


class TimingRunner(ScriptedRunner):
    """A scripted runner with the job's corpus, keeping the lines a stage prints."""

    def __init__(self, sweep_json: dict[str, Any] | None = None) -> None:
        super().__init__(FakeExecutor(best_lr=0.004), sweep_json)
        self.job = SimpleNamespace(corpus=CORPUS)
        self.printed: list[Any] = []

    def note(self, lines: list[str]) -> None:
        self.printed.append(lines)


def measuring(ratios: dict[str, float], calls: list) -> object:
    """measure_device's stand-in: baseline 1000 tokens/s, each variant at its ratio, a drift check."""

    def measure(configs: dict, baseline: str, corpus: object, device: str, seed: int, rounds: int) -> dict:
        calls.append((sorted(configs), baseline, corpus, device, seed, rounds))
        rows = {name: {"tokens_per_sec": 1000.0 * ratios[name], "speed_ratio": ratios[name],
                       "speed_ratio_low": ratios[name] - 0.04, "speed_ratio_high": ratios[name] + 0.04,
                       "rounds": [1.0, 2.0]} for name in configs}  # fmt: skip
        return {"device_name": "test cpu", "baseline": baseline, "drift": {"ratio": 1.01}, "variants": rows}

    return measure


def test_the_stage_times_each_size_with_the_runs_corpus_records_it_and_prints_every_sizes_budgets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list = []
    monkeypatch.setattr(speed, "measure_device", measuring({"baseline": 1.0, "wide-mlp": 0.8}, calls))
    ladder = groups("baseline,wide-mlp", Budget(max_tokens=64_000, stop_at_target=True),
                    sizes=parse_sizes("n_embd=16,32"), preset_tokens=64_000)  # fmt: skip
    stage = EqualTime(ladder, seconds=2.0, rounds=3, seed=7)
    assert stage.count({"baseline--cpu--s0--n_embd16": {"stage": "eval"}}) == (0, 0)  # it trains nothing
    runner = TimingRunner()
    stage.run(runner)
    assert calls == [(["baseline", "wide-mlp"], "baseline", CORPUS, "cpu", 7, 3)] * 2
    recorded = runner.sweep_json["equal_time"]
    assert (recorded["seconds"], recorded["rounds"], list(recorded["cells"])) == (
        2.0,
        3,
        ["n_embd16/cpu", "n_embd32/cpu"],
    )
    cell = recorded["cells"]["n_embd32/cpu"]
    assert set(cell) == {"device_name", "measured_at", "drift", "baseline_tokens_per_sec", "variants"}
    assert (cell["device_name"], cell["drift"], cell["baseline_tokens_per_sec"]) == (
        "test cpu",
        {"ratio": 1.01},
        1000.0,
    )
    assert cell["variants"]["wide-mlp"] == pytest.approx(
        {"tokens_per_sec": 800.0, "speed_ratio": 0.8, "speed_ratio_low": 0.76, "speed_ratio_high": 0.84}
    )  # the four fields, not the rounds
    assert [g.budget for g in ladder] == [Budget(max_tokens=2000, stop_at_target=True),
                                          Budget(max_tokens=1600, stop_at_target=True)] * 2  # fmt: skip
    assert runner.printed == [[
        "n_embd16/cpu: the baseline trains 1,000 tokens/s",
        "  baseline: 2,000 tokens",
        "  wide-mlp: 0.800x [0.760, 0.840] the baseline's speed, 1,600 tokens",
        "n_embd32/cpu: the baseline trains 1,000 tokens/s",
        "  baseline: 2,000 tokens",
        "  wide-mlp: 0.800x [0.760, 0.840] the baseline's speed, 1,600 tokens",
    ]]  # fmt: skip


def test_a_device_the_timing_skips_is_recorded_as_skipped_and_keeps_its_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speed, "measure_device", lambda *args: {"skipped": "no such device"})
    alone = groups("baseline")
    runner = TimingRunner()
    EqualTime(alone, seconds=2.0, rounds=3, seed=0).run(runner)
    assert runner.sweep_json["equal_time"]["cells"] == {"cpu": {"skipped": "no such device"}}
    assert runner.printed == [["cpu: not timed (no such device)"]]
    assert alone[0].budget == Budget(max_tokens=64_000) and alone[0].untuned is None


def test_a_variant_missing_from_the_timing_or_failing_it_is_not_trained_and_the_lines_say_why() -> None:
    cell = groups("baseline,wide-mlp,half-lr")
    measured = {"baseline_tokens_per_sec": 500.0,
                "variants": {"baseline": {"tokens_per_sec": 500.0, "speed_ratio": 1.0, "speed_ratio_low": 1.0,
                                          "speed_ratio_high": 1.0},
                             "wide-mlp": {"error": "RuntimeError: out of memory"}}}  # fmt: skip
    EqualTime(cell, seconds=4.0, rounds=3, seed=0).apply(cell, measured)
    baseline, wide, half = cell
    assert baseline.budget == Budget(max_tokens=2000) and baseline.untuned is None
    assert wide.untuned == "--equal-time could not time it against the baseline (RuntimeError: out of memory)"
    assert half.untuned == "--equal-time could not time it against the baseline (not timed)"
    assert budget_lines("cpu", cell, measured) == [
        "cpu: the baseline trains 500 tokens/s",
        "  baseline: 2,000 tokens",
        f"  wide-mlp: not trained, {wide.untuned}",
        f"  half-lr: not trained, {half.untuned}",
    ]


def test_budgets_give_every_timed_variant_at_least_one_token_and_skip_the_untimed() -> None:
    measured = {"baseline_tokens_per_sec": 10.0,
                "variants": {"baseline": {"speed_ratio": 1.0}, "slow": {"speed_ratio": 0.01},
                             "broken": {"error": "boom"}}}  # fmt: skip
    assert budgets(measured, 0.5) == {"baseline": 5, "slow": 1}  # 0.05 tokens round to none: one


def test_a_cell_key_names_the_size_and_device_or_the_device_alone() -> None:
    ladder = groups("baseline", sizes=parse_sizes("n_embd=16,32"), preset_tokens=64_000)
    assert [cell_key(cell) for cell in cells(ladder)] == ["n_embd16/cpu", "n_embd32/cpu"]
    assert cell_key(groups("baseline")) == "cpu"


def test_comparisons_count_only_their_own_stages_trials_of_their_groups() -> None:
    def held(variant: str, stage: str, device: str = "cpu") -> dict[str, Any]:
        return {"variant": variant, "device": device, "size": None, "stage": stage}

    records = {"a": held("wide-mlp", "equal-tokens"), "b": held("wide-mlp", "equal-flops"),
               "c": held("wide-mlp", "eval"), "d": held("wide-mlp", "equal-tokens", device="cuda"),
               "e": held("baseline", "tune-full"),
               "f": held("baseline", "eval")}  # fmt: skip
    assert Comparisons(groups("baseline,wide-mlp")).count(records) == (2, 0)


def evaluated(*pairs: tuple[str, int]) -> dict[str, dict[str, Any]]:
    return {f"{v}-{s}": {"variant": v, "device": "cpu", "size": None, "seed": s, "stage": "eval",
                         "status": "completed"} for v, s in pairs}  # fmt: skip


def test_no_comparison_without_a_baseline_or_without_its_tokens() -> None:
    records = evaluated(("baseline", 0), ("wide-mlp", 0))
    assert comparison_specs(groups("wide-mlp"), records) == []  # a cell without the baseline
    assert comparison_specs(groups("baseline,wide-mlp", Budget(max_steps=40)), records) == []  # not timed


def test_a_comparison_at_the_baselines_flops_trains_at_least_one_token() -> None:
    cell = groups("baseline,wide-mlp", Budget(max_tokens=1))
    specs = comparison_specs(cell, evaluated(("baseline", 0), ("wide-mlp", 0)))
    assert [(s.id, s.budget.max_tokens) for s in specs] == [
        ("wide-mlp--cpu--s0--equal-tokens", 1), ("wide-mlp--cpu--s0--equal-flops", 1)
    ]  # fmt: skip
