"""A sweep as a list of stages of ordinary trials, which minigpt.runner runs: a plain sweep is one
evaluation stage; a fair sweep (`run --tune`, `--sizes`, `--max-flops`) and `--seeds auto` plan
groups and run them in stages.

For each size, variant and device (a "group"):

1. tune-full: in rounds, the points the group's search (minigpt.tune.Search) asks for, on every
   tuning seed at the full budget: the variant's own value and its neighbours, then a step
   outward while the best is at an edge; the search's choice (a fit through the best points,
   never worse than the own value on the tuning seeds) is the group's;
2. eval: the evaluation seeds at the chosen values (or untuned, without --tune);
3. with --seeds auto, more eval seeds in rounds: after each round every variant not yet decided
   is judged against the baseline at its size and device (minigpt.decide), and only those still
   undecided, with the baseline, get the next round's seeds, until each is decided or has
   --max-seeds seeds.

Every stage runs through the sweep's executor into the same store, so tuning trials are
resumable and isolated like any other; their IDs extend VARIANT--DEVICE--sSEED with the size,
the point (and `q` for the quarter budget of runs made before tuning moved to the full
budget: reports still read them), and trial.json marks their `stage`. Each group's
budget follows the size ladder's token rule, or the FLOPs budget, or the sweep's budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any, Protocol

from minigpt import tune
from minigpt.config import Config
from minigpt.decide import DEFAULT_MAX_SEEDS, LOSS_MARGIN, Design, decide, looks, next_look, paired_differences
from minigpt.sizes import Size, SizeError, budget_lines, size_tokens
from minigpt.sweep import SweepPlan, rotated
from minigpt.train import Budget
from minigpt.trial import SweepJob, TrialSpec
from minigpt.variants import BASELINE, VariantError, VariantRegistry

STAGES = ("tune-short", "tune-full", "eval")  # tune-short: only in runs made before the full-budget search
COMPARISONS = ("equal-tokens", "equal-flops")  # --equal-time's variants again, at the baseline's tokens and FLOPs


@dataclass(frozen=True)
class FairOptions:
    tune: list[tune.TuneAxis] = field(default_factory=list)
    tune_seeds: list[int] = field(default_factory=list)
    sizes: list[Size] = field(default_factory=list)
    max_flops: float | None = None
    equal_time: float | None = None  # --equal-time S: tokens from each variant's speed (minigpt.equal_time)
    speed_rounds: int = 10  # rounds that time the variants for --equal-time
    explicit_budget: bool = False  # --max-steps/--max-tokens/--max-seconds given: every size as given
    preset_tokens: int = 0  # the preset's budget, which the token rule scales
    seeds_auto: bool = False  # --seeds auto: eval seeds in rounds until each variant is decided
    max_seeds: int = DEFAULT_MAX_SEEDS
    margin: float = LOSS_MARGIN

    def __post_init__(self) -> None:
        if self.max_flops is not None and not (math.isfinite(self.max_flops) and self.max_flops > 0):
            raise tune.TuneError(f"--max-flops must be a positive number of FLOPs, got {self.max_flops:g}")
        if self.equal_time is not None and not (math.isfinite(self.equal_time) and self.equal_time > 0):
            raise tune.TuneError(f"--equal-time must be a positive number of seconds, got {self.equal_time:g}")

    @property
    def active(self) -> bool:
        return bool(self.shapes_trials or self.seeds_auto)

    @property
    def shapes_trials(self) -> bool:
        """Tuning, sizes or a FLOPs budget change what the trials are; --seeds auto only how many
        seeds each variant gets, so a sweep with it alone is the same plan as with a list of seeds."""
        return bool(self.tune or self.sizes or self.max_flops or self.equal_time)

    def describe(self) -> dict[str, Any]:
        """What sweep.json records, and what a re-run must match."""
        return {
            "tune": [axis.describe() for axis in self.tune],
            "tune_seeds": self.tune_seeds if self.tune else [],
            "sizes": [size.describe() for size in self.sizes],
            "max_flops": self.max_flops,
            "token_rule": None if self.explicit_budget or self.max_flops or not self.sizes else self.preset_tokens,
        } | ({"equal_time": self.equal_time} if self.equal_time else {})  # runs from before it match

    @property
    def design(self) -> Design:
        return Design(margin=self.margin, looks=tuple(looks(self.max_seeds)) if self.seeds_auto else None)


@dataclass
class Group:
    """One size, variant and device: what it is tuned over and what it evaluates."""

    size: Size | None
    variant: str
    description: str
    device: str
    config: Config  # the variant at this size, untuned
    changed: dict[str, Any]  # what the variant changes from the baseline at this size
    budget: Budget
    grid: list[tune.Point] = field(default_factory=list)
    chosen: tune.Point = field(default_factory=dict)
    at_edge: list[str] = field(default_factory=list)
    search: tune.Search | None = None
    shared: dict[str, str] = field(default_factory=dict)  # a tuning trial's ID -> the trial that trained it
    untuned: str | None = None  # why nothing was chosen: every tuning trial of a stage failed

    @property
    def key(self) -> str:
        return "/".join(p for p in (self.size.name if self.size else "", self.variant, self.device) if p)

    def spec(self, seed: int, stage: str, point: tune.Point, budget: Budget) -> TrialSpec:
        parts = [self.size.name if self.size else "", tune.point_label(point) if stage in STAGES[:2] else "",
                 stage if stage in COMPARISONS else ""]  # fmt: skip
        labels = {"stage": stage, "size": self.size.name if self.size else None, "tuned": point}
        if stage == "eval" and self.at_edge:
            labels["tuning_at_edge"] = self.at_edge
        config = tune.apply_point(self.config, point)
        return TrialSpec(self.variant, self.description, self.device, seed, config, self.changed, budget, labels,
                         "--".join(p for p in parts if p))  # fmt: skip


@cache
def model_counts(config: Config) -> tuple[int, int]:
    """(parameters, training FLOPs per token) of a configuration, from a model on the meta device."""
    import torch

    from minigpt.measure import flops_per_token
    from minigpt.model import GPT

    with torch.device("meta"):
        model = GPT(config)
    return model.num_params(), flops_per_token(model)


def flops_steps(config: Config, max_flops: float) -> int:
    """Optimizer steps that spend max_flops of total FLOPs (minigpt.flops: the model's matmuls, the
    attention square as computed, normalizations and the optimizer's own step), so a variant whose
    step computes more trains on fewer tokens."""
    from minigpt.flops import count_flops

    return max(1, math.floor(max_flops / count_flops(config).total_per_step))


def group_budget(plan: SweepPlan, fair: FairOptions, config: Config, baseline: Config, reference: Config) -> Budget:
    """A group's full budget: its FLOPs budget, the ladder's token rule, or the sweep's budget;
    with --equal-time the sweep's until its speed is timed (minigpt.equal_time sets it)."""
    budget = plan.budget
    if fair.equal_time:
        return budget
    if fair.max_flops:
        steps = flops_steps(config, fair.max_flops)
        if not fair.explicit_budget:  # the preset's token budget gives way to the FLOPs budget
            return Budget(max_steps=steps, stop_at_target=budget.stop_at_target)
        return replace(budget, max_steps=min(steps, budget.max_steps or steps))
    if fair.sizes and not fair.explicit_budget:
        per_step = config.batch_size * config.block_size
        tokens = size_tokens(model_counts(baseline)[0], model_counts(reference)[0], fair.preset_tokens, per_step)
        return Budget(max_tokens=tokens, stop_at_target=budget.stop_at_target)
    return budget


def plan_groups(registry: VariantRegistry, plan: SweepPlan, fair: FairOptions, vocab_size: int) -> list[Group]:
    """Every group, configured and checked (sizes, grids) before anything trains."""
    base = plan.base_config.replace(vocab_size=vocab_size)
    reference = _configure(registry, BASELINE, base) if BASELINE in registry.names() else base
    groups = []
    for size in fair.sizes or [None]:
        sized = size.apply(base) if size else base
        baseline = _configure(registry, BASELINE, sized, size) if BASELINE in registry.names() else sized
        for device in plan.devices:
            for name in plan.variants:
                config = _configure(registry, name, sized, size)
                changed = {key: new for key, (new, _) in config.diff(baseline).items()}
                budget = group_budget(plan, fair, config, baseline, reference)
                group = Group(size, name, registry.get(name).description, device, config, changed, budget)
                group.grid = tune.initial_grid(fair.tune, config) if fair.tune else [{}]
                groups.append(group)
    return groups


def _configure(registry: VariantRegistry, name: str, config: Config, size: Size | None = None) -> Config:
    try:
        return registry.get(name).configure(config)
    except VariantError as error:  # Variant.configure says which variant; the ladder adds which size
        if size is None:
            raise
        raise SizeError(f"size {size.name} does not fit {error}") from None


class StageRunner(Protocol):
    """What a stage asks of the runner (minigpt.runner.Runner)."""

    plan: SweepPlan
    records: dict[str, dict[str, Any]]  # every trial's record the run has seen, by ID
    evaluation: list[dict[str, Any]]  # the evaluation trials' records, in order
    job: SweepJob  # what every trial shares: the corpus among it

    def batch(self, specs: list[TrialSpec]) -> list[dict[str, Any]]: ...
    def ended(self, spec: TrialSpec, status: str, error: str) -> dict[str, Any]: ...
    def update_sweep(self, **changes: Any) -> None: ...
    def note(self, lines: list[str]) -> None: ...
    def sweep(self) -> dict[str, Any]: ...


class Stage(Protocol):
    def count(self, held: dict[str, dict[str, Any]]) -> tuple[int, int]:
        """(trials of this stage the directory holds, trials it will run), as far as known before it runs."""

    def run(self, runner: StageRunner) -> None: ...

    def notes(self) -> list[str]:
        """Lines to print before anything trains."""


def plan_stages(plan: SweepPlan, vocab_size: int) -> list[Stage]:
    """The sweep's stages: a plain sweep is one evaluation stage; tuning comes before it and
    --seeds auto's rounds after it, over the groups of every size, variant and device."""
    fair = plan.fair
    if fair is None or not fair.active:
        return [Evaluation(plan.trials)]
    groups = plan_groups(plan.registry, plan, fair, vocab_size)
    stages: list[Stage] = []
    if fair.equal_time:
        from minigpt.equal_time import EqualTime

        stages.append(EqualTime(groups, fair.equal_time, fair.speed_rounds, plan.seeds[0]))
    if fair.tune:
        stages.append(Tuning(groups, fair))
    stages.append(GroupEvaluation(groups, plan.seeds, budgets_known=not fair.equal_time))
    if fair.seeds_auto:
        stages.append(SeedRounds(groups, plan.seeds, fair.design))
    if fair.equal_time:
        from minigpt.equal_time import Comparisons

        stages.append(Comparisons(groups))
    return stages


class Evaluation:
    """The plan's trials, as planned: a plain sweep."""

    def __init__(self, specs: list[TrialSpec]) -> None:
        self.specs = specs

    def count(self, held: dict[str, dict[str, Any]]) -> tuple[int, int]:
        kept = sum(spec.id in held for spec in self.specs)
        return kept, len(self.specs) - kept

    def notes(self) -> list[str]:
        return []

    def run(self, runner: StageRunner) -> None:
        runner.evaluation += runner.batch(self.specs)


class GroupEvaluation:
    """The evaluation seeds of every group at its chosen values (untuned without --tune)."""

    def __init__(self, groups: list[Group], seeds: list[int], budgets_known: bool = True) -> None:
        self.groups, self.seeds, self.budgets_known = groups, seeds, budgets_known

    def count(self, held: dict[str, dict[str, Any]]) -> tuple[int, int]:
        return Evaluation([g.spec(seed, "eval", {}, g.budget) for g in self.groups for seed in self.seeds]).count(held)

    def notes(self) -> list[str]:
        """What each size of a ladder trains for (--equal-time says so itself once it has timed them)."""
        return budget_lines(self.groups) if self.budgets_known else []

    def run(self, runner: StageRunner) -> None:
        evaluation = [(g, g.spec(seed, "eval", g.chosen, g.budget)) for seed in self.seeds for g in self.groups]
        for group, spec in evaluation:
            if group.untuned:  # not evaluated at a value nobody chose: recorded as failed, saying why
                runner.ended(spec, "failed", f"not evaluated: {group.untuned}")
        runner.batch([spec for g, spec in evaluation if not g.untuned])
        runner.evaluation += [runner.records[spec.id] for _, spec in evaluation]


class Tuning:
    """Tune every group (see the module's docstring): rounds of each group's search at the full
    budget; sets each group's `chosen` (or `untuned`, saying why). A run tuned before the
    full-budget search keeps the choices its sweep.json records: its evaluation resumes as it was."""

    def __init__(self, groups: list[Group], fair: FairOptions) -> None:
        self.groups, self.fair = groups, fair
        for group in groups:
            group.search = tune.Search(fair.tune, group.config, fair.tune_seeds)

    def count(self, held: dict[str, dict[str, Any]]) -> tuple[int, int]:
        """Tuning trials held, and the first round's still to run (later rounds grow the display)."""
        mine = [r for r in held.values() if r.get("stage") in STAGES[:2] and any(in_group(r, g) for g in self.groups)]
        if any(r.get("stage") == "tune-short" for r in mine):
            return len(mine), 0  # tuned by the older rule: its choices are kept
        first = {_trains(spec): spec.id for spec in self._round({g.key: g.search.points for g in self.groups})}
        return len(mine), sum(trial not in held for trial in first.values())

    def notes(self) -> list[str]:
        return []

    def run(self, runner: StageRunner) -> None:
        """Rounds: every point the searches ask for, on every tuning seed at the full budget, in one
        batch; their losses go back to the searches until none asks for more.

        A point whose configuration, seed, budget and device equal another group's (variants that
        only multiply the baseline's lr meet it at its own) trains once, as the first group to ask
        for it, and both searches read that trial's loss: training is deterministic in those."""
        if self._keep_recorded_choices(runner.sweep().get("tuning", {})):
            return
        trained: dict[tuple[Any, ...], str] = {}  # what a trial trains -> the trial that trains it
        while True:
            asked = {g.key: g.search.wanted() for g in self.groups}
            specs = self._round(asked)
            if not specs:
                break
            runner.batch([spec for spec in specs if trained.setdefault(_trains(spec), spec.id) == spec.id])
            for g in self.groups:
                for point in asked[g.key]:
                    for seed in self.fair.tune_seeds:
                        spec = g.spec(seed, "tune-full", point, g.budget)
                        trainer = trained[_trains(spec)]
                        g.search.record(point, seed, _loss(runner.records.get(trainer)))
                        if trainer != spec.id:
                            g.shared[spec.id] = trainer
        for g in self.groups:
            self._choose(g)
        recorded = runner.sweep().get("tuning", {})  # a rerun of fewer variants keeps the others' choices
        runner.update_sweep(tuning=recorded | {g.key: _choice_record(g) for g in self.groups})

    def _round(self, asked: dict[str, list[tune.Point]]) -> list[TrialSpec]:
        seeds = self.fair.tune_seeds
        return [g.spec(s, "tune-full", p, g.budget) for g in self.groups for p in asked[g.key] for s in seeds]

    def _keep_recorded_choices(self, recorded: dict[str, Any]) -> bool:
        """A sweep tuned by the older quarter-budget rule (its choices carry no search): keep them."""
        if not recorded or any("own" in recorded.get(g.key, {"own": None}) for g in self.groups):
            return False
        for g in self.groups:
            choice = recorded[g.key]
            g.grid, g.chosen, g.at_edge = choice["grid"], choice["chosen"], choice["at_edge"]
            g.untuned = choice.get("untuned")
        return True

    @staticmethod
    def _choose(group: Group) -> None:
        assert group.search is not None
        group.grid = list(group.search.points)
        choice = group.search.choose()
        if choice.point is None:
            group.untuned = (
                f"every tune-full trial of {group.key} failed, so tuning chose no value (see those trials' errors)"
            )
            return
        group.chosen = choice.point
        group.at_edge = list(choice.at_edge)


def _choice_record(group: Group) -> dict[str, Any]:
    """sweep.json's `tuning` entry of a group: its grid, choice and the search behind it."""
    return (
        {"grid": group.grid, "chosen": group.chosen, "at_edge": group.at_edge,
         "size": group.size.name if group.size else None}
        | ({"untuned": group.untuned} if group.untuned else {})
        | (tune.describe_search(group.search) if group.search else {})
        | ({"trained_as": group.shared} if group.shared else {})
    )  # fmt: skip


def _trains(spec: TrialSpec) -> tuple[Any, ...]:
    """What a trial trains, whatever variant it is named after."""
    return (spec.device, spec.config, spec.seed, spec.budget)


class SeedRounds:
    """--seeds auto: rounds of eval seeds for the variants not yet decided (and their baselines), look by look."""

    def __init__(self, groups: list[Group], seeds: list[int], design: Design) -> None:
        self.groups, self.seeds, self.design = groups, seeds, design

    def count(self, held: dict[str, dict[str, Any]]) -> tuple[int, int]:
        """The rounds' trials held from before; how many more will run is for the rounds to decide."""
        kept = sum(record.get("stage") == "eval" and record.get("seed") not in self.seeds
                   and any(in_group(record, g) for g in self.groups) for record in held.values())  # fmt: skip
        return kept, 0

    def notes(self) -> list[str]:
        return []

    def run(self, runner: StageRunner) -> None:
        self.runner = runner
        seeds = {g.key: list(self.seeds) for g in self.groups}
        while True:
            specs = [spec for cell in cells(self.groups) for spec in self._next_round(cell, seeds)]
            if not specs:
                return
            runner.update_sweep(seeds=[spec.seed for spec in specs])
            runner.evaluation += runner.batch(specs)

    def _next_round(self, cell: list[Group], seeds: dict[str, list[int]]) -> list[TrialSpec]:
        """One size and device's next round: the seeds up to the next look for each variant still
        undecided, and for the baseline; none when every variant is decided or at --max-seeds."""
        design = self.design
        baseline = next((g for g in cell if g.variant == BASELINE), None)
        others = [g for g in cell if g.variant != BASELINE]
        if baseline is None or baseline.untuned:
            return []
        base_losses = self._losses(baseline, seeds[baseline.key])
        running = []
        for group in others:
            run = seeds[group.key]
            if group.untuned or len(run) < len(seeds[baseline.key]) or next_look(design.looks, len(run)) is None:
                continue  # tuning chose nothing, or stopped at an earlier look, or at --max-seeds
            differences = paired_differences(self._losses(group, run), base_losses)
            if not decide(differences, design.level(len(run), len(others)), design.margin).decided:
                running.append(group)
        if not running:
            return []
        done = len(seeds[baseline.key])
        added = list(
            range(max(seeds[baseline.key]) + 1, max(seeds[baseline.key]) + 1 + next_look(design.looks, done) - done)
        )
        for group in [baseline, *running]:
            seeds[group.key] += added
        names = [baseline, *running]
        return [
            g.spec(seed, "eval", g.chosen, g.budget)
            for turn, seed in enumerate(added, done)
            for g in rotated(names, turn)
        ]

    def _losses(self, group: Group, seeds: list[int]) -> dict[int, float]:
        records = self.runner.records
        losses = {seed: _loss(records.get(group.spec(seed, "eval", group.chosen, group.budget).id)) for seed in seeds}
        return {seed: loss for seed, loss in losses.items() if loss is not None}


def in_group(record: dict[str, Any], group: Group) -> bool:
    size = group.size.name if group.size else None
    return (
        record.get("variant") == group.variant and record.get("device") == group.device and record.get("size") == size
    )


def cells(groups: list[Group]) -> list[list[Group]]:
    """The groups by size and device: each variant is judged against the baseline of its cell."""
    cells: dict[tuple[str, str], list[Group]] = {}
    for group in groups:
        cells.setdefault((group.size.name if group.size else "", group.device), []).append(group)
    return list(cells.values())


def _loss(record: dict[str, Any] | None) -> float | None:
    return record.get("best_val_loss") if record and record.get("status") == "completed" else None
