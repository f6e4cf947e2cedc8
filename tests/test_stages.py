"""A fair sweep's stages on a fake executor whose trials score a known objective of the learning
rate: the choice, the growth at the grid's edges, the seeds, the ladder and FLOPs budgets."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from minigpt import runner, stages, sweep
from minigpt.config import Config
from minigpt.flops import count_flops
from minigpt.runner import QuietObserver, run_sweep
from minigpt.sizes import parse_sizes
from minigpt.stages import FairOptions, flops_steps, model_counts, plan_groups
from minigpt.store import RunStore
from minigpt.sweep import plan_sweep
from minigpt.train import Budget
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
        store = sweep.store
        for spec in specs:
            self.ran.append(spec)
            best = self.best_lr.get(spec.seed, 0.004) if isinstance(self.best_lr, dict) else self.best_lr
            loss = 1.0 + math.log(spec.config.lr / best) ** 2
            status = "failed" if spec.variant in self.failing else "completed"
            store.write_trial({"trial_id": spec.id, "variant": spec.variant, "device": spec.device, "seed": spec.seed,
                               "status": status, "best_val_loss": loss, "config": spec.config.to_dict(),
                               **spec.labels})  # fmt: skip


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
    **fair: object,
) -> tuple[FakeExecutor, dict]:
    plan = plan_sweep(registry(), variants, ["cpu"], [0, 1], BASE, str(SHAKESPEARE), budget or Budget(max_steps=40))
    options = FairOptions(**{"tune": parse_tune(["lr"], BASE), "tune_seeds": [1000], **fair})
    executor = FakeExecutor(best_lr, failing)
    run_sweep(replace(plan, fair=options), RunStore(tmp_path), observer or QuietObserver(), executor=executor)
    return executor, RunStore(tmp_path).read_sweep()["tuning"]


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


def groups(variants: str, **fair: object) -> list[stages.Group]:
    plan = plan_sweep(registry(), variants, ["cpu"], [0], BASE, str(SHAKESPEARE), Budget(max_tokens=64_000))
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
