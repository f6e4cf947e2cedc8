"""The Ray executor: each trial of a sweep is a Ray task; the driver alone writes the runs/ layout.

A task trains one trial on the resources Ray gave it (one GPU for a cuda trial, some CPUs
for a cpu or mps trial) and sends back everything the store holds for it: the trial record,
its metric points and the bytes of its best checkpoint. The driver collects results as they
finish (`ray.wait`) and writes them exactly as the local executor does, so resume, reports and
generation work unchanged.

What workers need: this package and its dependencies, and every `--plugins` path at the same
absolute path as on the driver (a plugin may register components the trial builds). The corpus
is not read on workers: the driver sends the encoded text through Ray's object store.

Ray is an optional dependency (`pip install 'minigpt-bench[ray]'`): it is imported here only
when a Ray sweep starts, so this module also loads where Ray is absent.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from minigpt import atomic
from minigpt.errors import UserError
from minigpt.executors import executor
from minigpt.store import RunStore, append_point

if TYPE_CHECKING:
    from minigpt.data import Corpus
    from minigpt.trial import SweepJob, TrialSettings, TrialSpec

MAX_RETRIES = 1  # a worker that dies (killed, out of memory, node lost) is retried once, then `failed`


class RayUnavailable(UserError):
    """Ray is not installed, or the cluster cannot be reached or cannot run the sweep."""


@executor.register("ray")
@dataclass(frozen=True)
class RayOptions:
    """The Ray executor's options, `run --ray-FIELD` (the help is `run --help`'s)."""

    address: str | None = field(default=None, metadata={"help": "Ray cluster for --executor ray: auto, HOST:PORT or "
                                "ray://HOST:10001; left out: a local Ray instance."})  # fmt: skip
    cpus_per_trial: int | None = field(
        default=None, metadata={"help": "CPUs per cpu trial on Ray; left out: all of the smallest node's."}
    )

    def __post_init__(self) -> None:
        if self.cpus_per_trial is not None and self.cpus_per_trial < 1:
            raise RayUnavailable(f"--ray-cpus-per-trial must be at least 1, got {self.cpus_per_trial}")

    def prepare(self) -> None:
        pass  # Ray is reached once the sweep is planned, so that a plan that cannot run starts nothing

    def open(self) -> RayExecutor:
        return RayExecutor(self.address, self.cpus_per_trial)


@dataclass
class TrialOutcome:
    """What a task sends back: the record, the metric points (None for a skipped trial, so no
    metrics.jsonl is written; a trial that began training has one, as locally, even when it
    failed before its first point) and the checkpoint files' bytes."""

    record: dict[str, Any]
    points: list[dict[str, Any]] | None
    checkpoint: dict[str, bytes] = field(default_factory=dict)
    node_id: str = ""
    cpus: float = 0.0  # the CPUs Ray assigned the task


class RayExecutor:
    """Connects to Ray on entry (starting a local instance when no address is given and none
    runs), runs trials as tasks when called, and disconnects on exit if it connected."""

    def __init__(self, address: str | None = None, cpus_per_trial: int | None = None) -> None:
        self.address = address
        self.requested_cpus = cpus_per_trial
        self.connected_here = False

    def __enter__(self) -> RayExecutor:
        try:
            import ray
        except ImportError:
            raise RayUnavailable(
                "the ray executor needs Ray: pip install 'minigpt-bench[ray]' (or pip install ray)"
            ) from None
        if not ray.is_initialized():
            # Ray starts workers at niceness 15, so any other process on the machine would slow the
            # trials and skew their timings; a local instance started here runs them at normal priority.
            os.environ.setdefault("RAY_worker_niceness", "0")
            try:
                ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=False)
            except Exception as error:  # whatever Ray raises, the user needs the address and the reason
                where = f"at {self.address}" if self.address else "(local)"
                raise RayUnavailable(f"cannot start or reach the Ray cluster {where}: {first_line(error)}") from None
            self.connected_here = True
        try:
            self._size_trials()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _size_trials(self) -> None:
        """CPUs per cpu trial, checked against the cluster: a task no node can hold would wait forever."""
        import ray

        self.node_cpus = cpus_by_node()
        self.cluster_gpus = sum(node["Resources"].get("GPU", 0) for node in ray.nodes() if node["Alive"])
        self.cpus_per_trial = self.requested_cpus or default_cpus_per_trial(self.node_cpus)
        largest = max(self.node_cpus.values(), default=0)
        if self.cpus_per_trial > largest:
            raise RayUnavailable(
                f"no node of the Ray cluster has {self.cpus_per_trial} CPUs (largest: {largest:g}); "
                "lower --ray-cpus-per-trial"
            )

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.connected_here:
            import ray

            ray.shutdown()
            self.connected_here = False

    def __call__(self, specs: list[TrialSpec], sweep: SweepJob) -> None:
        """Run the trials as Ray tasks and write each result as it arrives. Each task measures
        its own device's peaks (the MFU denominator), since cluster nodes differ from the
        driver: `sweep.peaks`, the driver's, are not sent."""
        import ray

        settings, corpus, store, observer = sweep.settings, sweep.corpus, sweep.store, sweep.observer
        runnable = [spec for spec in specs if not self._skip_without_gpu(spec, settings, store, observer)]
        task = ray.remote(max_retries=MAX_RETRIES)(train_on_worker)
        settings_ref, corpus_ref = ray.put(settings), ray.put(corpus)
        in_flight = {
            task.options(**self.resources(spec)).remote(spec, settings_ref, corpus_ref): spec for spec in runnable
        }
        try:
            while in_flight:
                [done], _ = ray.wait(list(in_flight), num_returns=1)
                spec = in_flight.pop(done)
                record = self._collect(done, spec, settings, store)
                observer.trial_started(spec)
                observer.trial_finished(spec, record, resumed=False)
        except KeyboardInterrupt:
            mark_interrupted(list(in_flight.values()), settings, store)
            for ref in in_flight:
                ray.cancel(ref)  # a running task stops at its next Python step; its worker lives on
            raise

    def resources(self, spec: TrialSpec) -> dict[str, Any]:
        if spec.device.startswith("cuda"):
            return {"num_gpus": 1, "num_cpus": 1}
        return {"num_cpus": self.cpus_per_trial}

    def _skip_without_gpu(self, spec: TrialSpec, settings: TrialSettings, store: RunStore, observer: Any) -> bool:
        """A cuda trial on a cluster without GPUs would wait forever: it is skipped instead."""
        from minigpt.trial import ended_record

        if not spec.device.startswith("cuda") or self.cluster_gpus:
            return False
        record = ended_record(spec, settings, "skipped", "the Ray cluster has no GPU")
        store.write_trial(record)
        observer.trial_started(spec)
        observer.trial_finished(spec, record, resumed=False)
        return True

    def _collect(self, ref: Any, spec: TrialSpec, settings: TrialSettings, store: RunStore) -> dict[str, Any]:
        """The task's result written into the store; a task that failed outside the trial
        (its worker died twice, a plugin missing there) becomes a `failed` record."""
        import ray

        from minigpt.trial import ended_record

        try:
            outcome: TrialOutcome = ray.get(ref)
        except ray.exceptions.RayError as error:
            record = ended_record(spec, settings, "failed", task_error(error))
            store.write_trial(record)
            return record
        # A cpu trial given part of its node's CPUs may have run beside other trials there.
        if outcome.node_id not in self.node_cpus:  # a node that joined during the sweep
            self.node_cpus = cpus_by_node()
        shared_node = outcome.cpus < self.node_cpus.get(outcome.node_id, outcome.cpus)
        ran_on_cpus = not spec.device.startswith("cuda") and outcome.record["status"] != "skipped"
        outcome.record["concurrent"] = ran_on_cpus and shared_node
        write_outcome(store, outcome)
        return outcome.record


def cpus_by_node() -> dict[str, float]:
    import ray

    return {node["NodeID"]: node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"]}


def default_cpus_per_trial(node_cpus: dict[str, float]) -> int:
    """All the CPUs of the smallest node that has any: a cpu trial fits on every node and,
    on nodes of one size, never shares its machine with another cpu trial."""
    sizes = [cpus for cpus in node_cpus.values() if cpus >= 1]
    if not sizes:
        raise RayUnavailable("the Ray cluster has no CPUs to run trials on")
    return int(min(sizes))


def write_outcome(store: RunStore, outcome: TrialOutcome) -> None:
    """Checkpoint, then metrics, then trial.json: a driver killed midway leaves the trial
    unfinished on disk, so a re-run trains it again."""
    trial = outcome.record["trial_id"]
    directory = store.trial_dir(trial)
    for name in sorted(outcome.checkpoint, key=lambda n: n.endswith(".json")):  # weights before metadata
        with atomic.atomic_target(directory / name) as tmp:
            tmp.write_bytes(outcome.checkpoint[name])
    if outcome.points is not None:
        with store.metrics_log(trial) as log:
            for point in outcome.points:
                append_point(log, point)
    store.write_trial(outcome.record)


def mark_interrupted(specs: list[TrialSpec], settings: TrialSettings, store: RunStore) -> None:
    """Trials still queued or running at Ctrl-C: recorded as interrupted, so a re-run runs them."""
    from minigpt.trial import ended_record

    for spec in specs:
        store.write_trial(ended_record(spec, settings, "interrupted", "interrupted by the user"))


def task_error(error: Exception) -> str:
    import ray

    cause = getattr(error, "cause", None) if isinstance(error, ray.exceptions.RayTaskError) else None
    if cause is not None:
        return f"{type(cause).__name__} on the worker: {first_line(cause)}"
    return f"{type(error).__name__} (retries: {MAX_RETRIES}): {first_line(error)}"


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# Everything below runs on the workers.

_plugins_loaded: set[tuple[str, ...]] = set()  # per worker process: a plugin registers its components once
_peaks: dict[tuple[str, str, int], float] = {}  # per worker process: (device, precision, threads) -> FLOP/s


def train_on_worker(spec: TrialSpec, settings: TrialSettings, corpus: Corpus) -> TrialOutcome:
    """One trial on the resources Ray assigned this task (a Ray task function); the sweep's
    plugins are absolute paths, as they must exist on every node."""
    import ray
    import torch

    from minigpt.precision import resolve_precision
    from minigpt.trial import TrialJob, begin_record, train_trial

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    load_plugins(list(settings.plugins))
    device = worker_device(spec.device)
    record = begin_record(spec, settings, device)
    record["node"] = socket.gethostname()
    node_id = ray.get_runtime_context().get_node_id()
    if record["status"] == "skipped":
        return TrialOutcome(record, None, node_id=node_id, cpus=cpus)
    precision = resolve_precision(spec.config.precision, torch.device(device))
    job = TrialJob(spec, settings, corpus, {precision: measured_peak(device, precision)})
    points: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="minigpt-trial-") as tmp:
        record = train_trial(record, job, Path(tmp), points.append, device)
        checkpoint = {file.name: file.read_bytes() for file in Path(tmp).iterdir() if not file.name.startswith(".")}
    return TrialOutcome(record, points, checkpoint, node_id, cpus)


def worker_device(device: str) -> str:
    """Ray shows a GPU task only the GPU it assigned, as cuda:0: cuda:N names a trial, not a card."""
    return "cuda" if device.startswith("cuda") else device


def load_plugins(plugins: list[str]) -> None:
    """Import the sweep's plugins (they may register components the trial uses), once per process."""
    key = tuple(plugins)
    if key not in _plugins_loaded:
        from minigpt.variants import discover

        discover(plugins)
        _plugins_loaded.add(key)


def measured_peak(device: str, precision: str) -> float:
    import torch

    from minigpt.measure import matmul_peak_flops

    key = (device, precision, torch.get_num_threads())
    if key not in _peaks:
        _peaks[key] = matmul_peak_flops(torch.device(device), precision)
    return _peaks[key]
