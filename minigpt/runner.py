"""The one runner of a sweep: its stages (minigpt.stages) through one executor into one store,
under one progress line.

Data flows one way: plan -> stages -> executor -> trial (minigpt.trial) -> store. The runner
alone opens the executor and writes sweep.json. A trial that fails or diverges is recorded and
the sweep goes on; a re-run of the same plan skips finished trials (those that failed are not
finished unless the store keeps failures: minigpt.store), and a different plan is refused rather
than mixed into the old results.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from minigpt import __version__
from minigpt.executors import Executor, ExecutorOptions
from minigpt.stages import Stage, plan_stages
from minigpt.store import RunStore
from minigpt.sweep import SweepPlan, check_same_plan, corpus_digest, merged_sweep_json
from minigpt.trial import Peaks, SweepJob, TrialSpec, now

if TYPE_CHECKING:
    from minigpt.data import Corpus


class SweepObserver(Protocol):
    def sweep_started(self, total: int, pending: int, notes: Sequence[str] = ()) -> None: ...
    def trials_added(self, count: int) -> None: ...
    def notes_added(self, lines: Sequence[str]) -> None: ...
    def trial_started(self, spec: TrialSpec) -> None: ...
    def trial_point(self, spec: TrialSpec, point: dict[str, Any]) -> None: ...
    def trial_finished(self, spec: TrialSpec, record: dict[str, Any], resumed: bool) -> None: ...


class QuietObserver:
    def sweep_started(self, total: int, pending: int, notes: Sequence[str] = ()) -> None:
        pass

    def trials_added(self, count: int) -> None:
        pass

    def notes_added(self, lines: Sequence[str]) -> None:
        pass

    def trial_started(self, spec: TrialSpec) -> None:
        pass

    def trial_point(self, spec: TrialSpec, point: dict[str, Any]) -> None:
        pass

    def trial_finished(self, spec: TrialSpec, record: dict[str, Any], resumed: bool) -> None:
        pass


def run_sweep(
    plan: SweepPlan,
    store: RunStore,
    observer: SweepObserver | None = None,
    fresh: bool = False,
    executor: ExecutorOptions | None = None,
) -> list[dict[str, Any]]:
    """Run the plan's stages into the store with the executor those options open (the local one
    when None); returns the evaluation trials' records. Raises KeyboardInterrupt after recording
    the running trials as interrupted, and PlanError, touching nothing, when the store holds
    another plan's results."""
    if executor is None:
        from minigpt.local_executor import LocalOptions

        executor = LocalOptions()
    with executor.open() as execute:
        return Runner(plan, store, observer or QuietObserver(), execute).run(fresh)


class Runner:
    """Runs a list of stages; each stage hands it batches of trials and reads their records."""

    def __init__(self, plan: SweepPlan, store: RunStore, observer: SweepObserver, execute: Executor) -> None:
        self.plan, self.store, self.observer, self.execute = plan, store, observer, execute
        self.records: dict[str, dict[str, Any]] = {}  # every trial's record this run has seen
        self.evaluation: list[dict[str, Any]] = []  # the evaluation trials' records, in order
        self.announced = 0  # trials the progress display counts
        self.seen = 0  # trials the stages have handed over so far

    def run(self, fresh: bool) -> list[dict[str, Any]]:
        with self.store.lock():
            corpus = self._open(fresh)
            stages = plan_stages(self.plan, corpus.tokenizer.vocab_size)
            self._announce(stages)
            for stage in stages:
                stage.run(self)
            return self.evaluation

    def _open(self, fresh: bool) -> Corpus:
        """Load the corpus, refuse another plan's store (or start over when fresh), record the plan
        in sweep.json and probe the devices."""
        from minigpt.data import load_corpus
        from minigpt.floors import corpus_floors

        plan, store = self.plan, self.store
        corpus = load_corpus(plan.data, plan.max_vocab)
        for spec in plan.trials:
            corpus.check_block_size(spec.config.block_size)
        identity = plan.identity(corpus_digest(corpus))
        if fresh:
            store.reset()
        else:
            check_same_plan(store, identity)
        sweep = merged_sweep_json(store.read_sweep(), plan.describe(), identity)
        sweep.update(environment=environment(), updated_at=now())
        sweep.setdefault("created_at", sweep["updated_at"])
        if "floors" not in sweep:
            sweep["floors"] = corpus_floors(corpus)
        sweep["peak_flops"] = probe_devices(plan.trials, sweep.get("peak_flops", {}))
        self._write_sweep(sweep)
        self.job = SweepJob(plan.settings, corpus, store, sweep["peak_flops"], self.observer)
        return corpus

    def _announce(self, stages: list[Stage]) -> None:
        """The first line: the trials this sweep holds and those it will run, every stage's."""
        held = self._held()
        counts = [stage.count(held) for stage in stages]
        self.announced = sum(kept + pending for kept, pending in counts)
        notes = [line for stage in stages for line in stage.notes()]
        self.observer.sweep_started(self.announced, sum(pending for _, pending in counts), notes)

    def _held(self) -> dict[str, dict[str, Any]]:
        """The finished trials this directory holds: their records by ID."""
        held = {}
        for trial in self.store.read_sweep().get("trials", []):
            if self.store.is_finished(trial):
                held[trial] = self.store.read_trial(trial)
        return held

    def batch(self, specs: list[TrialSpec]) -> list[dict[str, Any]]:
        """Run the unfinished specs (the finished ones are reported as resumed); returns every spec's record."""
        for spec in specs:
            self.job.corpus.check_block_size(spec.config.block_size)
        self.update_sweep(trials=[spec.id for spec in specs])
        self._seen(len(specs))
        store = self.store
        pending = [spec for spec in specs if not store.is_finished(spec.id)]
        for spec in specs:
            if spec not in pending:
                self.observer.trial_finished(spec, store.read_trial(spec.id), resumed=True)
        self.execute(pending, self.job)
        records = [store.read_trial(spec.id) for spec in specs]
        self.records.update((spec.id, record) for spec, record in zip(specs, records, strict=True))
        return records

    def ended(self, spec: TrialSpec, status: str, error: str) -> dict[str, Any]:
        """Record a trial that ends without running (a stage's decision), as an executor would."""
        record = self.job.trial(spec).ended(status, error)
        self._seen(1)
        self.observer.trial_started(spec)
        self.store.write_trial(record)
        self.records[spec.id] = record
        self.observer.trial_finished(spec, record, resumed=False)
        return record

    def _seen(self, count: int) -> None:
        """Trials beyond those the first line counted (a grown grid, a round of seeds) grow the display."""
        self.seen += count
        if self.seen > self.announced:
            self.observer.trials_added(self.seen - self.announced)
            self.announced = self.seen

    def note(self, lines: list[str]) -> None:
        """Lines a stage has to say once it knows them (--equal-time's budgets, timed before training)."""
        self.observer.notes_added(lines)

    def update_sweep(self, **changes: Any) -> None:
        """Add to sweep.json: the trials and seeds lists grow (each ID once), other keys are replaced."""
        sweep = self.store.read_sweep()
        for key, value in changes.items():
            if key in ("trials", "seeds"):
                value = list(dict.fromkeys([*sweep.get(key, []), *value]))
            sweep[key] = value
        self._write_sweep(sweep)

    def sweep(self) -> dict[str, Any]:
        """sweep.json as it stands."""
        return self.store.read_sweep()

    def _write_sweep(self, sweep: dict[str, Any]) -> None:
        self.store.write_sweep(sweep)


def environment() -> dict[str, Any]:
    import torch

    from minigpt.measure import cpu_model

    return {
        "minigpt_bench": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
    }


def probe_devices(specs: list[TrialSpec], known: Peaks) -> Peaks:
    """The matmul peak of each present device in each precision its trials train in: the MFU
    denominators, measured once per sweep (kept on resume)."""
    import torch

    from minigpt.measure import device_absent_reason, matmul_peak_flops
    from minigpt.precision import resolve_precision

    peaks = {device: dict(by_precision) for device, by_precision in known.items()}
    for spec in specs:
        if device_absent_reason(spec.device) is not None:
            continue
        device = torch.device(spec.device)
        precision = resolve_precision(spec.config.precision, device)
        by_precision = peaks.setdefault(spec.device, {})
        if precision not in by_precision:
            by_precision[precision] = matmul_peak_flops(device, precision)
    return peaks
