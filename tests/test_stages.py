"""A fair sweep's stages on a fake executor whose trials score a known objective of the learning
rate: the choice, the growth at the grid's edges, the seeds, the ladder and FLOPs budgets; single
stages on a scripted runner: the choices a sweep.json records, what a stage adds to the evaluation."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from minigpt import runner, stages, sweep
from minigpt.config import Config
from minigpt.flops import count_flops
from minigpt.runner import QuietObserver, run_sweep
from minigpt.sizes import MIN_STEPS, parse_sizes
from minigpt.stages import FairOptions, flops_steps, model_counts, plan_groups
from minigpt.store import RunStore
from minigpt.sweep import plan_sweep
from minigpt.train import Budget
from minigpt.trial import TrialSpec
from minigpt.tune import parse_tune
from minigpt.variants import Variant, VariantRegistry
from tests.conftest import SHAKESPEARE, TINY, Counting

BASE = Config(**TINY, lr=0.004, min_lr=0.0004)


def registry() -> VariantRegistry:
    found = VariantRegistry()
    found.add(Variant("baseline", "the reference", lambda cfg: cfg, "test"))
    found.add(Variant("half-lr", "half the lr schedule", lambda cfg: cfg.replace(lr=cfg.lr / 2, min_lr=cfg.min_lr / 2), "test"))  # fmt: skip
    found.add(Variant("wide-mlp", "more FLOPs per token", lambda cfg: cfg.replace(mlp="swiglu"), "test"))
    return found


class FakeExecutor:
    """Scores each trial by how far its lr is from `best_lr` (log scale; one per seed where it is
    a dict), without training; the trials of the variants in `failing` fail."""

    def __init__(self, best_lr: float | dict[int, float], failing: frozenset[str] = frozenset()) -> None:
        self.best_lr = best_lr
        self.failing = failing
        self.ran: list = []

    def prepare(self) -> None:
        pass

    def open(self) -> FakeExecutor:
        return self

    def __enter__(self) -> FakeExecutor:
        return self

    def __exit__(self, *error: object) -> None:
        pass

    def __call__(self, specs, sweep) -> None:  # noqa: ANN001
        for spec in specs:
            self.ran.append(spec)
            sweep.store.write_trial(self.record(spec))

    def record(self, spec: TrialSpec) -> dict[str, Any]:
        best = self.best_lr.get(spec.seed, 0.004) if isinstance(self.best_lr, dict) else self.best_lr
        loss = 1.0 + math.log(spec.config.lr / best) ** 2
        status = "failed" if spec.variant in self.failing else "completed"
        return {"trial_id": spec.id, "variant": spec.variant, "device": spec.device, "seed": spec.seed,
                "status": status, "best_val_loss": loss, "config": spec.config.to_dict(), **spec.labels}  # fmt: skip


class ScriptedRunner:
    """What a stage asks of the runner, without a store: a batch's new trials score as the
    FakeExecutor's; `sweep_json` stands for sweep.json."""

    def __init__(self, executor: FakeExecutor, sweep_json: dict[str, Any] | None = None) -> None:
        self.executor = executor
        self.sweep_json = sweep_json or {}
        self.records: dict[str, dict[str, Any]] = {}
        self.evaluation: list[dict[str, Any]] = []

    def batch(self, specs: list[TrialSpec]) -> list[dict[str, Any]]:
        for spec in specs:
            if spec.id not in self.records:
                self.executor.ran.append(spec)
                self.records[spec.id] = self.executor.record(spec)
        return [self.records[spec.id] for spec in specs]

    def ended(self, spec: TrialSpec, status: str, error: str) -> dict[str, Any]:
        self.records[spec.id] = {"trial_id": spec.id, "status": status, "error": error, **spec.labels}
        return self.records[spec.id]

    def update_sweep(self, **changes: Any) -> None:
        self.sweep_json.update(changes)

    def note(self, lines: list[str]) -> None:
        pass

    def sweep(self) -> dict[str, Any]:
        return self.sweep_json


@pytest.fixture(autouse=True)
def no_device_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "probe_devices", lambda specs, known: {})


def fair_run(
    tmp_path: Path,
    best_lr: float | dict[int, float],
    variants: str = "baseline",
    budget: Budget | None = None,
    failing: frozenset[str] = frozenset(),
    observer: QuietObserver | None = None,
    seeds: tuple[int, ...] = (0, 1),
    **fair: object,
) -> tuple[FakeExecutor, dict]:
    plan = plan_sweep(
        registry(), variants, ["cpu"], list(seeds), BASE, str(SHAKESPEARE), budget or Budget(max_steps=40)
    )
    options = FairOptions(**{"tune": parse_tune(["lr"], BASE), "tune_seeds": [1000], **fair})
    executor = FakeExecutor(best_lr, failing)
    run_sweep(replace(plan, fair=options), RunStore(tmp_path), observer or QuietObserver(), executor=executor)
    return executor, RunStore(tmp_path).read_sweep().get("tuning", {})


def test_the_tuner_picks_the_known_best_and_evaluates_there(tmp_path: Path) -> None:
    executor, tuning = fair_run(tmp_path, best_lr=0.008)
    assert tuning["baseline/cpu"]["chosen"] == {"lr": pytest.approx(0.008)}
    assert tuning["baseline/cpu"]["at_edge"] == []
    evaluation = [s for s in executor.ran if s.labels["stage"] == "eval"]
    assert [(s.seed, s.config.lr, s.config.min_lr) for s in evaluation] == [
        (0, pytest.approx(0.008), pytest.approx(0.0008)), (1, pytest.approx(0.008), pytest.approx(0.0008))
    ]  # fmt: skip
    assert {s.id for s in evaluation} == {"baseline--cpu--s0", "baseline--cpu--s1"}


def test_tuning_trains_the_own_lr_and_its_neighbours_at_the_full_budget_only(tmp_path: Path) -> None:
    executor, tuning = fair_run(tmp_path, best_lr=0.004)
    assert {s.labels["stage"] for s in executor.ran} == {"tune-full", "eval"}
    full = [s for s in executor.ran if s.labels["stage"] == "tune-full"]
    assert sorted(s.config.lr for s in full) == pytest.approx([0.002, 0.004, 0.008])
    assert {s.budget.max_steps for s in full} == {40}
    assert "baseline--cpu--s1000--lr0.008" in {s.id for s in full}
    assert [p["lr"] for p in tuning["baseline/cpu"]["curve"]] == pytest.approx([0.002, 0.004, 0.008])


def test_tuning_and_evaluation_seeds_never_meet(tmp_path: Path) -> None:
    executor, _ = fair_run(tmp_path, best_lr=0.004)
    tuning_seeds = {s.seed for s in executor.ran if s.labels["stage"] != "eval"}
    evaluation_seeds = {s.seed for s in executor.ran if s.labels["stage"] == "eval"}
    assert tuning_seeds == {1000} and evaluation_seeds == {0, 1}


def test_the_search_grows_until_interior_and_flags_a_choice_left_at_the_cap(tmp_path: Path) -> None:
    executor, tuning = fair_run(tmp_path, best_lr=1.0)
    full = [s for s in executor.ran if s.labels["stage"] == "tune-full"]
    assert max(s.config.lr for s in full) == pytest.approx(0.256)  # x64 of its own 0.004, no further
    assert tuning["baseline/cpu"]["chosen"] == {"lr": pytest.approx(0.256)}
    assert tuning["baseline/cpu"]["at_edge"] == ["lr"]
    assert "cap" in tuning["baseline/cpu"]["edge_reasons"]["lr"]


def test_a_best_far_beyond_the_start_is_found_by_growing_and_not_flagged(tmp_path: Path) -> None:
    _, tuning = fair_run(tmp_path, best_lr=0.06)
    assert tuning["baseline/cpu"]["chosen"] == {"lr": pytest.approx(0.064)}
    assert tuning["baseline/cpu"]["at_edge"] == [] and tuning["baseline/cpu"]["edge_reasons"] == {}


def test_a_variant_that_only_halves_the_lr_gets_the_baselines_absolute_lr(tmp_path: Path) -> None:
    executor, tuning = fair_run(tmp_path, best_lr=0.016, variants="baseline,half-lr")
    assert tuning["half-lr/cpu"]["chosen"] == tuning["baseline/cpu"]["chosen"] == {"lr": pytest.approx(0.016)}
    evaluation = {(s.variant, s.seed): s.config for s in executor.ran if s.labels["stage"] == "eval"}
    assert evaluation[("half-lr", 0)] == evaluation[("baseline", 0)]
    tuned = [(s.config, s.seed) for s in executor.ran if s.labels["stage"] == "tune-full"]
    assert len(tuned) == len(set(tuned)) == 6  # 0.001 .. 0.032: the same configuration trains once
    lrs = ("0.002", "0.004", "0.008", "0.016", "0.032")  # all but 0.001 were the baseline's too
    shared = {f"half-lr--cpu--s1000--lr{lr}": f"baseline--cpu--s1000--lr{lr}" for lr in lrs}
    assert tuning["half-lr/cpu"]["trained_as"] == shared
    half, base = tuning["half-lr/cpu"]["curve"], tuning["baseline/cpu"]["curve"]
    assert [p["loss"] for p in half][1:] == [p["loss"] for p in base]


def test_a_rerun_resumes_every_stage_and_another_grid_is_another_plan(tmp_path: Path) -> None:
    fair_run(tmp_path, best_lr=0.008)
    executor, _ = fair_run(tmp_path, best_lr=0.008)
    assert executor.ran == []
    with pytest.raises(sweep.PlanError, match="another sweep"):
        fair_run(tmp_path, best_lr=0.008, tune=parse_tune(["lr=1e-3,2e-3"], BASE))


def test_the_first_line_counts_tuning_and_evaluation_trials_held_and_to_run(tmp_path: Path) -> None:
    first = Counting()
    executor, _ = fair_run(tmp_path, best_lr=0.004, observer=first)  # the best in the grid's middle: no growth
    trials = len(executor.ran)
    assert trials > 2  # two evaluation trials and the tuning ones
    assert first.started == [(trials, trials)] and first.added == 0
    again = Counting()
    fair_run(tmp_path, best_lr=0.004, observer=again)
    assert again.started == [(trials, 0)] and again.added == 0


def test_a_grown_grid_adds_its_trials_to_the_display(tmp_path: Path) -> None:
    first = Counting()
    executor, _ = fair_run(tmp_path, best_lr=0.06, observer=first)  # beyond the grid's edge: it grows
    assert first.started[0][0] + first.added == len(executor.ran) and first.added > 0
    again = Counting()
    fair_run(tmp_path, best_lr=0.06, observer=again)
    assert again.started == [(len(executor.ran), 0)] and again.added == 0


def groups(variants: str, budget: Budget | None = None, **fair: object) -> list[stages.Group]:
    plan = plan_sweep(registry(), variants, ["cpu"], [0], BASE, str(SHAKESPEARE), budget or Budget(max_tokens=64_000))
    return plan_groups(registry(), plan, FairOptions(**fair), vocab_size=65)


def test_a_flops_budget_gives_each_variant_the_steps_its_total_flops_per_step_allow() -> None:
    baseline, wide = groups("baseline,wide-mlp", max_flops=3e9)
    per_step = {g.variant: count_flops(g.config.replace(vocab_size=65)).total_per_step for g in (baseline, wide)}
    assert per_step["wide-mlp"] != per_step["baseline"]
    for group in (baseline, wide):
        steps = group.budget.max_steps
        assert steps == flops_steps(group.config, 3e9)
        assert steps * per_step[group.variant] <= 3e9 < (steps + 1) * per_step[group.variant]
    assert baseline.budget.max_tokens is None  # the preset's tokens give way to the FLOPs budget


def test_the_ladder_scales_tokens_with_the_baselines_parameters_unless_a_budget_is_given() -> None:
    small, large = groups("baseline", sizes=parse_sizes("n_embd=16,32"), preset_tokens=64_000)
    params = {g.size.name: model_counts(g.config)[0] for g in (small, large)}
    assert small.budget.max_tokens == 64_000  # the preset's own size
    assert large.budget.max_tokens == round(64_000 * params["n_embd32"] / params["n_embd16"])
    given = groups("baseline", sizes=parse_sizes("n_embd=16,32"), preset_tokens=64_000, explicit_budget=True)
    assert {g.budget.max_tokens for g in given} == {64_000}


@pytest.mark.parametrize("budget", [Budget(max_tokens=64_000), Budget(max_seconds=8.0), Budget(max_steps=41)])
def test_every_tuning_trial_trains_for_the_full_token_time_or_step_budget(tmp_path: Path, budget: Budget) -> None:
    executor, _ = fair_run(tmp_path, best_lr=0.004, budget=budget)
    budgets = {s.labels["stage"]: s.budget for s in executor.ran}
    assert budgets == {"tune-full": budget, "eval": budget}


def test_every_tuning_seed_counts_towards_a_points_score(tmp_path: Path) -> None:
    """Seed 1000 alone prefers lr 0.004, seed 1001 alone 0.016; their mean loss is lowest at the
    geometric mean, 0.008, which only scoring both seeds finds; each seed's own choice is recorded."""
    executor, tuning = fair_run(tmp_path, best_lr={1000: 0.004, 1001: 0.016}, tune_seeds=[1000, 1001])
    assert tuning["baseline/cpu"]["chosen"] == {"lr": pytest.approx(0.008)}
    full = [(s.seed, s.config.lr) for s in executor.ran if s.labels["stage"] == "tune-full"]
    assert sorted(seed for seed, _ in full) == [1000] * 4 + [1001] * 4  # the bracket and a step up, on each seed
    assert tuning["baseline/cpu"]["per_seed"] == {"1000": {"lr": 0.004}, "1001": {"lr": pytest.approx(0.016)}}


def test_a_variant_whose_every_tuning_trial_failed_is_not_evaluated_at_a_value_nobody_chose(tmp_path: Path) -> None:
    executor, tuning = fair_run(tmp_path, best_lr=0.008, variants="baseline,wide-mlp", failing=frozenset({"wide-mlp"}))
    assert tuning["baseline/cpu"]["chosen"] == {"lr": pytest.approx(0.008)}  # the other variant is tuned as ever
    failed = tuning["wide-mlp/cpu"]
    assert "every tune-full trial of wide-mlp/cpu failed" in failed["untuned"] and failed["chosen"] == {}
    ran = [s for s in executor.ran if s.variant == "wide-mlp"]
    assert {s.labels["stage"] for s in ran} == {"tune-full"}  # nothing grown or evaluated
    assert len(ran) == 3
    store = RunStore(tmp_path)
    for seed in (0, 1):
        record = store.read_trial(f"wide-mlp--cpu--s{seed}")
        assert record["status"] == "failed" and record["error"].startswith("not evaluated: every tune-full trial")
    assert store.read_trial("baseline--cpu--s0")["status"] == "completed"


def test_a_flops_budget_with_an_explicit_budget_trains_for_the_smaller_of_the_two() -> None:
    def budget(given: Budget) -> Budget:
        plan = plan_sweep(registry(), "baseline", ["cpu"], [0], BASE, str(SHAKESPEARE), given)
        (group,) = plan_groups(registry(), plan, FairOptions(max_flops=3e9, explicit_budget=True), vocab_size=65)
        return group.budget

    allowed = flops_steps(BASE.replace(vocab_size=65), 3e9)
    assert allowed > 5
    assert budget(Budget(max_steps=5)).max_steps == 5  # the explicit budget is smaller
    assert budget(Budget(max_steps=10**9)).max_steps == allowed  # the FLOPs budget is smaller
    tokens = budget(Budget(max_tokens=64_000))  # steps from the FLOPs, the tokens kept as given
    assert (tokens.max_steps, tokens.max_tokens) == (allowed, 64_000)


# A plain sweep, and what every stage owes the runner.


def test_a_plain_sweep_is_one_evaluation_stage_of_the_planned_trials_in_order(tmp_path: Path) -> None:
    plan = plan_sweep(registry(), "baseline,half-lr", ["cpu"], [0, 1], BASE, str(SHAKESPEARE), Budget(max_steps=4))
    (only,) = stages.plan_stages(plan, vocab_size=65)
    assert isinstance(only, stages.Evaluation)
    records = run_sweep(plan, RunStore(tmp_path), QuietObserver(), executor=FakeExecutor(0.004))
    assert [r["trial_id"] for r in records] == [spec.id for spec in plan.trials]


def test_each_stage_adds_its_evaluation_records_after_those_already_there() -> None:
    plan = plan_sweep(registry(), "baseline", ["cpu"], [0], BASE, str(SHAKESPEARE), Budget(max_steps=4))
    earlier = {"trial_id": "from-an-earlier-stage"}
    for stage in (stages.Evaluation(plan.trials), stages.GroupEvaluation(groups("baseline"), [0])):
        scripted = ScriptedRunner(FakeExecutor(0.004))
        scripted.evaluation = [earlier]
        stage.run(scripted)
        assert [r["trial_id"] for r in scripted.evaluation] == ["from-an-earlier-stage", "baseline--cpu--s0"]


# The trials a group plans: names, labels, what they carry.


def test_a_ladders_trials_are_named_and_labelled_by_size_and_tuned_point() -> None:
    small, _ = groups("baseline", sizes=parse_sizes("n_embd=16,32"), preset_tokens=64_000)
    tuning = small.spec(1000, "tune-full", {"lr": 0.008}, small.budget)
    assert tuning.id == "baseline--cpu--s1000--n_embd16--lr0.008"
    assert tuning.labels == {"stage": "tune-full", "size": "n_embd16", "tuned": {"lr": 0.008}}
    evaluation = small.spec(0, "eval", {"lr": 0.008}, small.budget)
    assert evaluation.id == "baseline--cpu--s0--n_embd16"  # one evaluation per seed, whatever was chosen
    assert evaluation.labels == {"stage": "eval", "size": "n_embd16", "tuned": {"lr": 0.008}}
    assert evaluation.config.lr == pytest.approx(0.008)


def test_every_trial_carries_its_variants_description_and_its_changes_from_the_baseline_at_its_size() -> None:
    for group in groups("baseline,wide-mlp", sizes=parse_sizes("n_embd=16,32"), preset_tokens=64_000):
        spec = group.spec(0, "eval", {}, group.budget)
        assert spec.description == {"baseline": "the reference", "wide-mlp": "more FLOPs per token"}[group.variant]
        assert spec.changed == ({"mlp": "swiglu"} if group.variant == "wide-mlp" else {})  # not the size's n_embd


def test_an_evaluation_trial_is_flagged_with_the_keys_its_tuning_left_at_an_edge_and_only_then(tmp_path: Path) -> None:
    executor, _ = fair_run(tmp_path / "cap", best_lr=1.0)  # the choice stays at the search's cap
    assert all("tuning_at_edge" not in s.labels for s in executor.ran if s.labels["stage"] == "tune-full")
    assert [s.labels["tuning_at_edge"] for s in executor.ran if s.labels["stage"] == "eval"] == [["lr"], ["lr"]]
    interior, _ = fair_run(tmp_path / "interior", best_lr=0.004)
    assert all("tuning_at_edge" not in s.labels for s in interior.ran)


# Budgets.


def test_a_flops_budget_below_two_steps_trains_one_step() -> None:
    per_step = count_flops(BASE.replace(vocab_size=65)).total_per_step
    assert flops_steps(BASE.replace(vocab_size=65), 1.5 * per_step) == 1
    assert flops_steps(BASE.replace(vocab_size=65), 0.5 * per_step) == 1  # never zero steps


def test_flops_and_ladder_budgets_keep_the_sweeps_stop_at_target() -> None:
    stopping = Budget(max_tokens=64_000, stop_at_target=True)
    (flops,) = groups("baseline", budget=stopping, max_flops=3e9)
    ladder = groups("baseline", budget=stopping, sizes=parse_sizes("n_embd=16,32"), preset_tokens=64_000)
    assert flops.budget.stop_at_target and flops.budget.max_tokens is None
    assert all(g.budget.stop_at_target for g in ladder)


def test_every_rung_of_a_small_presets_ladder_trains_at_least_the_minimum_steps_of_its_batch() -> None:
    ladder = groups("baseline", sizes=parse_sizes("n_embd=16,32"), preset_tokens=1_000)
    per_step = BASE.batch_size * BASE.block_size
    assert {g.budget.max_tokens for g in ladder} == {MIN_STEPS * per_step}  # 1,000 tokens scaled is far less


def test_the_first_line_says_what_each_rung_trains_for_unless_equal_time_sets_it_later() -> None:
    def evaluation_notes(**fair: object) -> list[str]:
        plan = plan_sweep(registry(), "baseline", ["cpu"], [0], BASE, str(SHAKESPEARE), Budget(max_tokens=64_000))
        options = FairOptions(sizes=parse_sizes("n_embd=16,32"), preset_tokens=64_000, **fair)
        planned = stages.plan_stages(replace(plan, fair=options), vocab_size=65)
        (evaluation,) = [stage for stage in planned if isinstance(stage, stages.GroupEvaluation)]
        return evaluation.notes()

    lines = evaluation_notes()
    assert len(lines) == 2 and lines[0].startswith("size n_embd16 (n_embd=16): ") and "64,000 tokens" in lines[0]
    assert evaluation_notes(equal_time=5.0) == []
    ladder = groups("baseline", sizes=parse_sizes("n_embd=16,32"), preset_tokens=64_000)
    assert stages.GroupEvaluation(ladder, [0]).notes() == lines  # budgets are known unless said otherwise


# Tuning: the first line's counts, the choices a sweep.json records, the record it writes.


def held_tuning(stage: str, variant: str = "baseline") -> dict[str, dict[str, Any]]:
    return {"one": {"stage": stage, "variant": variant, "device": "cpu", "size": None, "status": "completed"}}


OLD_CHOICE = {"grid": [{"lr": 0.002}, {"lr": 0.004}], "chosen": {"lr": 0.002}, "at_edge": ["lr"], "size": None}


def tuning_stage(variants: str) -> tuple[stages.Tuning, list[stages.Group]]:
    fair = FairOptions(tune=parse_tune(["lr"], BASE), tune_seeds=[1000])
    planned = groups(variants, tune=fair.tune, tune_seeds=fair.tune_seeds)
    return stages.Tuning(planned, fair), planned


def test_a_run_tuned_by_the_older_rule_counts_its_tuning_trials_held_and_none_to_run() -> None:
    tuning, _ = tuning_stage("baseline")
    assert tuning.count({}) == (0, 3)  # the own lr and its two neighbours
    assert tuning.count(held_tuning("tune-short")) == (1, 0)
    assert tuning.count(held_tuning("tune-full")) == (1, 3)  # held, but not one of the first round's trials
    assert tuning.count(held_tuning("tune-full", variant="half-lr")) == (0, 3)  # another variant's


def test_a_sweep_tuned_by_the_older_rule_keeps_its_recorded_choices_and_trains_no_tuning_trial() -> None:
    tuning, (baseline, half) = tuning_stage("baseline,half-lr")
    untuned = {**OLD_CHOICE, "chosen": {}, "at_edge": [], "untuned": "every tune-short trial of half-lr/cpu failed"}
    scripted = ScriptedRunner(FakeExecutor(0.008), {"tuning": {"baseline/cpu": OLD_CHOICE, "half-lr/cpu": untuned}})
    tuning.run(scripted)
    assert scripted.executor.ran == []
    assert (baseline.grid, baseline.chosen, baseline.at_edge, baseline.untuned) == (
        OLD_CHOICE["grid"], {"lr": 0.002}, ["lr"], None
    )  # fmt: skip
    assert half.untuned == "every tune-short trial of half-lr/cpu failed" and half.chosen == {}
    stages.GroupEvaluation([baseline, half], [0]).run(scripted)
    assert [(s.id, s.config.lr) for s in scripted.executor.ran] == [("baseline--cpu--s0", pytest.approx(0.002))]
    assert (
        scripted.records["half-lr--cpu--s0"]["error"] == "not evaluated: every tune-short trial of half-lr/cpu failed"
    )


def test_a_sweep_tuned_by_the_full_budget_search_is_searched_again_from_its_trials() -> None:
    tuning, (baseline,) = tuning_stage("baseline")
    recorded = {"baseline/cpu": {**OLD_CHOICE, "own": {"lr": 0.004}}}  # not what the trials say
    scripted = ScriptedRunner(FakeExecutor(0.008), {"tuning": recorded})
    tuning.run(scripted)
    assert baseline.chosen == {"lr": pytest.approx(0.008)} and baseline.at_edge == []
    assert scripted.sweep_json["tuning"]["baseline/cpu"]["chosen"] == {"lr": pytest.approx(0.008)}


def test_an_older_sweep_grown_by_a_variant_is_tuned_afresh() -> None:
    tuning, (baseline, half) = tuning_stage("baseline,half-lr")
    scripted = ScriptedRunner(FakeExecutor(0.008), {"tuning": {"baseline/cpu": OLD_CHOICE}})  # no half-lr/cpu
    tuning.run(scripted)
    assert baseline.chosen == half.chosen == {"lr": pytest.approx(0.008)}
    assert {s.labels["stage"] for s in scripted.executor.ran} == {"tune-full"}


def test_a_ladders_tuning_record_names_each_groups_size_and_the_grid_it_trained(tmp_path: Path) -> None:
    executor, tuning = fair_run(tmp_path, best_lr=0.004, sizes=parse_sizes("n_embd=16,32"), preset_tokens=64_000)
    assert set(tuning) == {"n_embd16/baseline/cpu", "n_embd32/baseline/cpu"}
    for key, record in tuning.items():
        size = key.split("/")[0]
        trained = [s.config.lr for s in executor.ran if s.labels["stage"] == "tune-full" and s.labels["size"] == size]
        assert record["size"] == size
        assert sorted(point["lr"] for point in record["grid"]) == pytest.approx(sorted(trained))
        assert "untuned" not in record  # only a group whose every tuning trial failed says so
        assert "trained_as" not in record  # only a group that read another's trials says which


def test_a_ladders_rerun_counts_every_rungs_trials_held(tmp_path: Path) -> None:
    ladder = {"sizes": parse_sizes("n_embd=16,32"), "preset_tokens": 64_000}
    executor, _ = fair_run(tmp_path, best_lr=0.004, **ladder)
    again = Counting()
    fair_run(tmp_path, best_lr=0.004, observer=again, **ladder)
    assert again.started == [(len(executor.ran), 0)] and again.added == 0


def test_a_rerun_of_fewer_variants_counts_only_their_trials_held(tmp_path: Path) -> None:
    fair_run(tmp_path, best_lr=0.004, variants="baseline,half-lr")
    alone, _ = fair_run(tmp_path / "alone", best_lr=0.004, variants="baseline")
    again = Counting()
    rerun, _ = fair_run(tmp_path, best_lr=0.004, variants="baseline", observer=again)
    assert rerun.ran == [] and again.started == [(len(alone.ran), 0)]


def test_a_rerun_of_fewer_variants_keeps_the_other_variants_tuning_record(tmp_path: Path) -> None:
    _, both = fair_run(tmp_path, best_lr=0.004, variants="baseline,half-lr")
    _, after = fair_run(tmp_path, best_lr=0.004, variants="baseline")
    assert after["half-lr/cpu"] == both["half-lr/cpu"]  # its evaluation trials are still in the directory


# --seeds auto after tuning, and its cells.


def test_each_size_is_one_cell_of_the_baseline_and_the_variants_judged_against_it() -> None:
    planned = groups("baseline,half-lr", sizes=parse_sizes("n_embd=16,32"), preset_tokens=64_000)
    assert [[(g.size.name, g.variant) for g in cell] for cell in stages.cells(planned)] == [
        [("n_embd16", "baseline"), ("n_embd16", "half-lr")], [("n_embd32", "baseline"), ("n_embd32", "half-lr")]
    ]  # fmt: skip


def test_seeds_auto_judges_a_tuned_variant_at_its_chosen_values(tmp_path: Path) -> None:
    """Both variants tune to the same absolute lr, so their evaluations are equal: equivalent at the
    first look, and no round follows."""
    executor, _ = fair_run(tmp_path, best_lr=0.016, variants="baseline,half-lr", seeds=(0, 1, 2), seeds_auto=True)
    assert {s.seed for s in executor.ran if s.labels["stage"] == "eval"} == {0, 1, 2}


def test_seeds_auto_gives_no_more_seeds_to_a_variant_tuning_chose_nothing_for(tmp_path: Path) -> None:
    executor, _ = fair_run(tmp_path, best_lr=0.008, variants="baseline,wide-mlp", failing=frozenset({"wide-mlp"}),
                           seeds=(0, 1, 2), seeds_auto=True, max_seeds=5)  # fmt: skip
    assert {s.seed for s in executor.ran if s.labels["stage"] == "eval"} == {0, 1, 2}


def test_seeds_auto_rounds_train_for_the_groups_budget_and_carry_on_the_seeds_rotation(tmp_path: Path) -> None:
    """half-lr's difference from the baseline flips sign from seed to seed (each seed's best lr is
    one variant's own), so it stays undecided until --max-seeds."""
    alternating = {seed: (0.004, 0.002)[seed % 2] for seed in range(5)}
    executor, _ = fair_run(tmp_path, best_lr=alternating, variants="baseline,half-lr", seeds=(0, 1, 2),
                           tune=[], seeds_auto=True, max_seeds=5, max_flops=3e9)  # fmt: skip
    rounds = [s for s in executor.ran if s.seed >= 3]
    assert [(s.seed, s.variant) for s in rounds] == [(3, "half-lr"), (3, "baseline"), (4, "baseline"), (4, "half-lr")]
    steps = flops_steps(BASE.replace(vocab_size=65), 3e9)
    assert {s.budget for s in executor.ran} == {Budget(max_steps=steps)}  # the FLOPs budget, not the sweep's


@pytest.mark.parametrize("max_flops", [0.0, -1.0, math.inf, math.nan])
def test_a_flops_budget_that_is_not_a_positive_number_is_refused(max_flops: float) -> None:
    with pytest.raises(stages.tune.TuneError, match="--max-flops must be a positive number of FLOPs"):
        FairOptions(max_flops=max_flops)


def test_any_positive_flops_budget_is_accepted_even_below_one_flop_and_trains_one_step() -> None:
    assert FairOptions(max_flops=0.5).max_flops == 0.5
    assert flops_steps(BASE, 0.5) == 1


@pytest.mark.parametrize("equal_time", [0.0, -1.0, math.inf, math.nan])
def test_an_equal_time_that_is_not_a_positive_number_of_seconds_is_refused(equal_time: float) -> None:
    with pytest.raises(stages.tune.TuneError, match="--equal-time must be a positive number of seconds"):
        FairOptions(equal_time=equal_time)


def test_any_positive_equal_time_is_accepted_even_under_a_second() -> None:
    assert FairOptions(equal_time=0.5).equal_time == 0.5


def test_what_sweep_json_records_of_a_fair_sweep_and_what_a_rerun_must_match() -> None:
    sizes = parse_sizes("n_embd=16,32")
    tuned = FairOptions(tune=parse_tune(["lr"], BASE), tune_seeds=[1000], sizes=sizes, preset_tokens=64_000)
    assert tuned.describe() == {
        "tune": ["lr x 0.5,1,2"],
        "tune_seeds": [1000],
        "sizes": [size.describe() for size in sizes],
        "max_flops": None,
        "token_rule": 64_000,
    }
    untuned = FairOptions(tune_seeds=[1000], max_flops=3e9, equal_time=30.0)
    assert untuned.describe() == {
        "tune": [], "tune_seeds": [], "sizes": [], "max_flops": 3e9, "token_rule": None, "equal_time": 30.0,
    }  # fmt: skip


def test_a_ladder_with_a_flops_or_an_explicit_budget_records_no_token_rule() -> None:
    sizes = parse_sizes("n_embd=16,32")
    assert FairOptions(sizes=sizes, max_flops=3e9, preset_tokens=64_000).describe()["token_rule"] is None
    assert FairOptions(sizes=sizes, explicit_budget=True, preset_tokens=64_000).describe()["token_rule"] is None


def registry_of(baseline: Any) -> VariantRegistry:
    found = VariantRegistry()
    if baseline is not None:
        found.add(Variant("baseline", "the reference", baseline, "test"))
    found.add(Variant("half-lr", "half the lr schedule", lambda cfg: cfg.replace(lr=cfg.lr / 2, min_lr=cfg.min_lr / 2), "test"))  # fmt: skip
    return found


def ladder_groups(found: VariantRegistry, variants: str, base: Config = BASE) -> list[stages.Group]:
    plan = plan_sweep(found, variants, ["cpu"], [0], base, str(SHAKESPEARE), Budget(max_tokens=64_000))
    fair = FairOptions(sizes=parse_sizes("n_embd=16,32"), preset_tokens=64_000)
    return plan_groups(found, plan, fair, vocab_size=65)


def test_a_baseline_that_configures_something_is_the_reference_as_if_the_base_were_configured_so() -> None:
    """Each variant's changes are counted from the baseline at its size, and the ladder's tokens
    scale with the configured baseline's parameters, not the bare base's."""
    swiglu = ladder_groups(registry_of(lambda cfg: cfg.replace(mlp="swiglu")), "baseline,half-lr")
    as_base = ladder_groups(registry_of(lambda cfg: cfg), "baseline,half-lr", BASE.replace(mlp="swiglu"))
    assert [g.budget for g in swiglu] == [g.budget for g in as_base]
    assert [g.changed for g in swiglu if g.variant == "baseline"] == [{}, {}]
    assert [g.changed for g in swiglu if g.variant == "half-lr"] == [{"mlp": "gelu", "lr": 0.002, "min_lr": 0.0002}] * 2
    plain = ladder_groups(registry(), "baseline,half-lr")
    assert [g.budget for g in plain] != [g.budget for g in swiglu]  # the reference's parameters count


def test_without_a_baseline_each_variant_is_counted_from_the_sized_base() -> None:
    groups = ladder_groups(registry_of(None), "half-lr")
    with_baseline = ladder_groups(registry_of(lambda cfg: cfg), "baseline,half-lr")
    assert [(g.budget, g.changed) for g in groups] == [
        (g.budget, g.changed) for g in with_baseline if g.variant == "half-lr"
    ]


def test_a_groups_grid_is_its_tuning_grid_checked_at_planning_or_one_empty_point_untuned() -> None:
    (untuned,) = groups("baseline")
    assert untuned.grid == [{}]
    (tuned,) = groups("baseline", tune=parse_tune(["lr"], BASE), tune_seeds=[1000])
    assert tuned.grid == [{"lr": 0.002}, {"lr": 0.004}, {"lr": 0.008}]


def test_a_size_that_does_not_fit_a_variant_is_named_in_the_error() -> None:
    found = registry_of(lambda cfg: cfg)
    found.add(Variant("eight-heads", "eight heads", lambda cfg: cfg.replace(n_head=8), "test"))
    plan = plan_sweep(found, "baseline,eight-heads", ["cpu"], [0], BASE, str(SHAKESPEARE), Budget(max_tokens=64_000))
    with pytest.raises(stages.SizeError, match="size n_embd24 does not fit variant 'eight-heads'"):
        plan_groups(found, plan, FairOptions(sizes=parse_sizes("n_embd=16,24")), vocab_size=65)


def test_equal_time_times_the_variants_on_the_first_evaluation_seed_before_tuning_and_compares_after() -> None:
    from minigpt.equal_time import Comparisons, EqualTime

    plan = plan_sweep(
        registry(), "baseline,half-lr", ["cpu"], [7, 3], BASE, str(SHAKESPEARE), Budget(max_tokens=64_000)
    )
    fair = FairOptions(tune=parse_tune(["lr"], BASE), tune_seeds=[1000], equal_time=5.0, speed_rounds=4)
    planned = stages.plan_stages(replace(plan, fair=fair), vocab_size=65)
    assert [type(stage) for stage in planned] == [EqualTime, stages.Tuning, stages.GroupEvaluation, Comparisons]
    timing = planned[0]
    assert (timing.seed, timing.seconds, timing.rounds) == (7, 5.0, 4)
