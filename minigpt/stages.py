"""A fair sweep (`run --tune`, `--sizes`, `--max-flops`) as stages of ordinary trials.

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
from typing import Any

from minigpt import tune
from minigpt.config import Config, ConfigError
from minigpt.decide import DEFAULT_MAX_SEEDS, LOSS_MARGIN, Design, decide, looks, next_look, paired_differences
from minigpt.executors import ExecutorOptions
from minigpt.sizes import Size, SizeError, size_tokens
from minigpt.store import RunStore
from minigpt.sweep import SweepObserver, SweepPlan, open_run, rotated, run_trials
from minigpt.train import Budget
from minigpt.trial import TrialSpec
from minigpt.variants import BASELINE, VariantRegistry

STAGES = ("tune-short", "tune-full", "eval")  # tune-short: only in runs made before the full-budget search


@dataclass(frozen=True)
class FairOptions:
    tune: list[tune.TuneAxis] = field(default_factory=list)
    tune_seeds: list[int] = field(default_factory=list)
    sizes: list[Size] = field(default_factory=list)
    max_flops: float | None = None
    explicit_budget: bool = False  # --max-steps/--max-tokens/--max-seconds given: every size as given
    preset_tokens: int = 0  # the preset's budget, which the token rule scales
    seeds_auto: bool = False  # --seeds auto: eval seeds in rounds until each variant is decided
    max_seeds: int = DEFAULT_MAX_SEEDS
    margin: float = LOSS_MARGIN

    def __post_init__(self) -> None:
        if self.max_flops is not None and not (math.isfinite(self.max_flops) and self.max_flops > 0):
            raise tune.TuneError(f"--max-flops must be a positive number of FLOPs, got {self.max_flops:g}")

    @property
    def active(self) -> bool:
        return bool(self.shapes_trials or self.seeds_auto)

    @property
    def shapes_trials(self) -> bool:
        """Tuning, sizes or a FLOPs budget change what the trials are; --seeds auto only how many
        seeds each variant gets, so a sweep with it alone is the same plan as with a list of seeds."""
        return bool(self.tune or self.sizes or self.max_flops)

    def describe(self) -> dict[str, Any]:
        """What sweep.json records, and what a re-run must match."""
        return {
            "tune": [axis.describe() for axis in self.tune],
            "tune_seeds": self.tune_seeds if self.tune else [],
            "sizes": [size.describe() for size in self.sizes],
            "max_flops": self.max_flops,
            "token_rule": None if self.explicit_budget or self.max_flops or not self.sizes else self.preset_tokens,
        }

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
    initial: int = 0
    chosen: tune.Point = field(default_factory=dict)
    at_edge: list[str] = field(default_factory=list)
    search: tune.Search | None = None
    shared: dict[str, str] = field(default_factory=dict)  # a tuning trial's ID -> the trial that trained it
    untuned: str | None = None  # why nothing was chosen: every tuning trial of a stage failed

    @property
    def key(self) -> str:
        return "/".join(p for p in (self.size.name if self.size else "", self.variant, self.device) if p)

    def spec(self, seed: int, stage: str, point: tune.Point, budget: Budget, short: bool = False) -> TrialSpec:
        parts = [self.size.name if self.size else "", tune.point_label(point) if stage != "eval" else "", "q" * short]
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
    """Optimizer steps that spend max_flops: FLOPs per token (the project's count) x tokens per step."""
    return max(1, math.floor(max_flops / (model_counts(config)[1] * config.batch_size * config.block_size)))


def group_budget(plan: SweepPlan, fair: FairOptions, config: Config, baseline: Config, reference: Config) -> Budget:
    """A group's full budget: its FLOPs budget, the ladder's token rule, or the sweep's budget."""
    budget = plan.budget
    if fair.max_flops:
        steps = flops_steps(config, fair.max_flops)
        if not fair.explicit_budget:  # the preset's token budget gives way to the FLOPs budget
            return Budget(max_steps=steps, stop_at_target=budget.stop_at_target)
        return replace(budget, max_steps=min(steps, budget.max_steps or steps))
    if fair.sizes and not fair.explicit_budget:
        tokens = size_tokens(model_counts(baseline)[0], model_counts(reference)[0], fair.preset_tokens)
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
                group.initial = len(group.grid)
                groups.append(group)
    return groups


def _configure(registry: VariantRegistry, name: str, config: Config, size: Size | None = None) -> Config:
    try:
        return registry.get(name).configure(config)
    except ConfigError as error:
        if size is None:
            raise
        raise SizeError(f"size {size.name} does not fit variant {name}: {error}") from None


class StagedRun:
    """Runs the groups' stages through one executor into one store, under one progress bar."""

    def __init__(self, plan: SweepPlan, fair: FairOptions, store: RunStore, observer: SweepObserver) -> None:
        self.plan, self.fair, self.store, self.observer = plan, fair, store, observer
        self.records: dict[str, dict[str, Any]] = {}
        self.expected = 0  # trials the bar already counts

    def run(self, registry: VariantRegistry, fresh: bool, execute: Any) -> list[dict[str, Any]]:
        with self.store.lock():
            corpus, self.peaks = open_run(self.plan, self.store, fresh)
            groups = plan_groups(registry, self.plan, self.fair, corpus.tokenizer.vocab_size)
            self.corpus, self.execute = corpus, execute
            self._announce(groups)
            if self.fair.tune:
                self._tune(groups)
            evaluation = [(g, g.spec(seed, "eval", g.chosen, g.budget)) for seed in self.plan.seeds for g in groups]
            self._not_evaluated([(g, spec) for g, spec in evaluation if g.untuned])
            self._batch([spec for g, spec in evaluation if not g.untuned])
            records = [self.records[spec.id] for _, spec in evaluation]
            if self.fair.seeds_auto:
                records = self._seeds_until_decided(groups, records)
            return records

    def _not_evaluated(self, pairs: list[tuple[Group, TrialSpec]]) -> None:
        """A group whose tuning chose nothing is not evaluated at a value nobody chose: each of its
        evaluation trials is recorded as failed, saying why, and the sweep goes on."""
        from minigpt.trial import ended_record

        for group, spec in pairs:
            self.observer.trial_started(spec)
            record = ended_record(spec, self.plan.settings, "failed", f"not evaluated: {group.untuned}")
            self.store.write_trial(record)
            self.records[spec.id] = record
            self.observer.trial_finished(spec, record, resumed=False)

    def _announce(self, groups: list[Group]) -> None:
        tune_seeds = len(self.fair.tune_seeds) if self.fair.tune else 0
        first_round = self._start_searches(groups) if tune_seeds else 0  # later rounds add trials as they come
        self.expected = first_round + len(self.plan.seeds) * len(groups)
        first = [g.spec(seed, "eval", {}, g.budget) for g in groups for seed in self.plan.seeds]
        self.observer.sweep_started(replace(self.plan, trials=first), self.expected)
        _add_trials(self.observer, self.expected - len(first))

    def _batch(self, specs: list[TrialSpec]) -> list[dict[str, Any]]:
        for spec in specs:
            self.corpus.check_block_size(spec.config.block_size)
        self._record_ids(specs)
        records = run_trials(
            specs, self.plan.settings, self.corpus, self.store, self.peaks, self.observer, self.execute
        )
        self.records.update((spec.id, record) for spec, record in zip(specs, records, strict=True))
        return records

    def _record_ids(self, specs: list[TrialSpec]) -> None:
        sweep = self.store.read_sweep()
        sweep["trials"] = list(dict.fromkeys([*sweep.get("trials", []), *(spec.id for spec in specs)]))
        self.store.write_sweep(sweep)

    def _tune(self, groups: list[Group]) -> None:
        """Rounds of the groups' searches: every point they ask for, on every tuning seed at the
        full budget, in one batch; their losses go back to the searches until none asks for more.

        A point whose configuration, seed, budget and device equal another group's (variants that
        only multiply the baseline's lr meet it at its own) trains once, as the first group to ask
        for it, and both searches read that trial's loss: training is deterministic in those."""
        seeds = self.fair.tune_seeds
        self._start_searches(groups)
        trained: dict[tuple[Any, ...], str] = {}  # what a trial trains -> the trial that trains it
        first = True
        while True:
            asked = {g.key: g.search.wanted() for g in groups if g.search}
            specs = [g.spec(s, "tune-full", p, g.budget) for g in groups for p in asked[g.key] for s in seeds]
            if not specs:
                break
            unique = [spec for spec in specs if trained.setdefault(_trains(spec), spec.id) == spec.id]
            if not first:
                _add_trials(self.observer, len(unique))
            first = False
            self._batch(unique)
            for g in groups:
                for point in asked[g.key]:
                    for seed in seeds:
                        spec = g.spec(seed, "tune-full", point, g.budget)
                        g.search.record(point, seed, _loss(self.records.get(trained[_trains(spec)])))  # type: ignore[union-attr]
                        if trained[_trains(spec)] != spec.id:
                            g.shared[spec.id] = trained[_trains(spec)]
        for g in groups:
            self._choose(g)
        self._record_choices(groups)

    def _start_searches(self, groups: list[Group]) -> int:
        """A search per group (once); returns how many trials their first round trains."""
        if any(g.search is None for g in groups):
            for g in groups:
                g.search = tune.Search(self.fair.tune, g.config, self.fair.tune_seeds)
        first = [
            g.spec(s, "tune-full", p, g.budget) for g in groups for p in g.search.points for s in self.fair.tune_seeds
        ]  # type: ignore[union-attr]
        return len({_trains(spec) for spec in first})

    def _choose(self, group: Group) -> None:
        search = group.search
        assert search is not None
        group.grid = list(search.points)
        choice = search.choose()
        if choice.point is None:
            group.untuned = (
                f"every tune-full trial of {group.key} failed, so tuning chose no value (see those trials' errors)"
            )
            return
        group.chosen = choice.point
        group.at_edge = list(choice.at_edge)

    def _seeds_until_decided(self, groups: list[Group], first: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rounds of eval seeds for the variants not yet decided (and their baselines), look by look."""
        design, evaluation = self.fair.design, list(first)
        seeds = {g.key: list(self.plan.seeds) for g in groups}
        while True:
            specs = [spec for cell in _cells(groups) for spec in self._next_round(cell, seeds, design)]
            if not specs:
                return evaluation
            _add_trials(self.observer, len(specs))
            self._record_seeds(specs)
            evaluation += self._batch(specs)

    def _next_round(self, cell: list[Group], seeds: dict[str, list[int]], design: Design) -> list[TrialSpec]:
        """One size and device's next round: the seeds up to the next look for each variant still
        undecided, and for the baseline; none when every variant is decided or at --max-seeds."""
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
        losses = {
            seed: _loss(self.records.get(group.spec(seed, "eval", group.chosen, group.budget).id)) for seed in seeds
        }
        return {seed: loss for seed, loss in losses.items() if loss is not None}

    def _record_seeds(self, specs: list[TrialSpec]) -> None:
        sweep = self.store.read_sweep()
        sweep["seeds"] = list(dict.fromkeys([*sweep.get("seeds", []), *(spec.seed for spec in specs)]))
        self.store.write_sweep(sweep)

    def _record_choices(self, groups: list[Group]) -> None:
        sweep = self.store.read_sweep()
        sweep["tuning"] = {
            g.key: {"grid": g.grid, "chosen": g.chosen, "at_edge": g.at_edge, "size": g.size.name if g.size else None}
            | ({"untuned": g.untuned} if g.untuned else {})
            | (tune.describe_search(g.search) if g.search else {})
            | ({"trained_as": g.shared} if g.shared else {})
            for g in groups
        }
        self.store.write_sweep(sweep)


def _cells(groups: list[Group]) -> list[list[Group]]:
    """The groups by size and device: each variant is judged against the baseline of its cell."""
    cells: dict[tuple[str, str], list[Group]] = {}
    for group in groups:
        cells.setdefault((group.size.name if group.size else "", group.device), []).append(group)
    return list(cells.values())


def _trains(spec: TrialSpec) -> tuple[Any, ...]:
    """What a trial trains, whatever variant it is named after."""
    return (spec.device, spec.config, spec.seed, spec.budget)


def _loss(record: dict[str, Any] | None) -> float | None:
    return record.get("best_val_loss") if record and record.get("status") == "completed" else None


def _add_trials(observer: SweepObserver, count: int) -> None:
    """Tell a progress display that trials beyond those it was started with will run."""
    added = getattr(observer, "trials_added", None)
    if added is not None and count > 0:
        added(count)


def fair_options(
    tune_specs: list[str],
    tune_seeds: str | None,
    sizes: str | None,
    max_flops: float | None,
    seeds: list[int],
    base: Config,
    explicit_budget: bool,
    preset_tokens: int,
) -> FairOptions:
    """The fair-comparison options as `run` takes them, each checked (one line per mistake)."""
    from minigpt.sizes import parse_sizes

    if tune_seeds is not None and not tune_specs:
        raise tune.TuneError("--tune-seeds needs --tune: the seeds only choose tuned values")
    return FairOptions(
        tune=tune.parse_tune(tune_specs, base),
        tune_seeds=tune.parse_tune_seeds(tune_seeds, seeds),
        sizes=parse_sizes(sizes) if sizes is not None else [],
        max_flops=max_flops,
        explicit_budget=explicit_budget,
        preset_tokens=preset_tokens,
    )


def run_fair_sweep(
    registry: VariantRegistry,
    plan: SweepPlan,
    fair: FairOptions,
    store: RunStore,
    observer: SweepObserver,
    fresh: bool = False,
    executor: ExecutorOptions | None = None,
) -> list[dict[str, Any]]:
    """Run the plan's stages (see the module's docstring); returns the evaluation trials' records."""
    if executor is None:
        from minigpt.local_executor import LocalOptions

        executor = LocalOptions()
    plan = replace(plan, fair=fair.describe() if fair.shapes_trials else None)
    with executor.open() as execute:
        return StagedRun(plan, fair, store, observer).run(registry, fresh, execute)
