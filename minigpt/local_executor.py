"""The local executor: one trial after another on this machine, each in a process of its own.

A trial's own process makes its figures its own: peak memory is that process's high-water
mark, not the sweep's so far, and nothing one trial leaves behind (allocator caches, thread
pools, compiled graphs) speeds up or slows down the next. Processes are forked from a server
that has imported torch once, so a trial starts in a fraction of a second.

The trial process writes its trial.json and metrics.jsonl itself and sends each metric point
here for the progress display. If this process dies, the trial process notices (its pipe
closes) and ends too, so an orphan never writes into a run that a re-run has taken over.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from minigpt.executors import Executor, executor
from minigpt.store import RunStore, append_point
from minigpt.trial_server import start_trial_server, trial_context, wait_for_trial_server

if TYPE_CHECKING:
    from minigpt.trial import SweepJob, TrialJob, TrialSpec

INTERRUPT_GRACE_SECONDS = 30  # how long an interrupted trial may take to record itself


@executor.register("local")
@dataclass(frozen=True)
class LocalOptions:
    """The local executor has no options."""

    def prepare(self) -> None:
        start_trial_server()  # it imports torch while the sweep's own process does the same

    @contextmanager
    def open(self) -> Iterator[Executor]:
        wait_for_trial_server()  # its imports must be over before the sweep probes the devices
        yield run_locally


def run_locally(specs: list[TrialSpec], sweep: SweepJob) -> None:
    """Run each spec in its own process, in order, telling the observer as they go."""
    context = trial_context()
    for spec in specs:
        sweep.observer.trial_started(spec)
        record = run_in_process(context, sweep.trial(spec), sweep.store, sweep.observer)
        sweep.observer.trial_finished(spec, record, resumed=False)


def run_in_process(
    context: multiprocessing.context.BaseContext, job: TrialJob, store: RunStore, observer: Any
) -> dict[str, Any]:
    spec = job.spec
    points_in, points_out = context.Pipe(duplex=False)
    alive_in, alive_out = context.Pipe(duplex=False)  # closes when this process dies
    process = context.Process(
        target=trial_process, args=(job, str(store.root), points_out, alive_in), name=f"trial {spec.id}"
    )
    process.start()
    points_out.close()
    alive_in.close()
    try:
        record = relay(points_in, spec, observer)
        process.join()
    except KeyboardInterrupt:
        stop(process)
        store.remove_partial_writes(spec.id)
        record = store.read_trial(spec.id)
        if record is None or record.get("status") == "running":
            store.write_trial(job.ended("interrupted", "interrupted by the user"))
        raise
    finally:
        alive_out.close()
    if record is None:  # the process died without a word: killed, out of memory, a crash in native code
        record = lost_record(job, store, process.exitcode)
    return record


def lost_record(job: TrialJob, store: RunStore, exit_code: int | None) -> dict[str, Any]:
    """What a trial whose process died holds: its own record if it finished writing one, else `failed`."""
    store.remove_partial_writes(job.spec.id)
    if store.has_ended(job.spec.id):
        return store.read_trial(job.spec.id)
    record = job.ended("failed", f"the trial's process died (exit code {exit_code})")
    store.write_trial(record)
    return record


def relay(points: Connection, spec: TrialSpec, observer: Any) -> dict[str, Any] | None:
    """Pass metric points to the observer until the trial sends its record (or its process ends)."""
    while True:
        try:
            kind, payload = points.recv()
        except EOFError:
            return None
        if kind == "record":
            return payload
        observer.trial_point(spec, payload)


def stop(process: multiprocessing.process.BaseProcess) -> None:
    """Ctrl-C reached this process (the trial's has a process group of its own): let the
    trial record itself as interrupted, then make sure it is gone."""
    if process.is_alive() and process.pid is not None:
        os.kill(process.pid, signal.SIGINT)
    process.join(INTERRUPT_GRACE_SECONDS)
    if process.is_alive():
        process.kill()
        process.join()


def trial_process(job: TrialJob, run_root: str, points: Connection, alive: Connection) -> None:
    """The body of a trial's process: train, write the trial's files, send points and the record."""
    from minigpt.trial import failure

    if hasattr(os, "setpgrp"):
        os.setpgrp()  # Ctrl-C at a terminal reaches the sweep's process, which passes on exactly one
    # The sweep stops this process with SIGINT, so it must never inherit an ignored SIGINT (a sweep
    # started as a background job, or under a CI runner, has one, and the server passes it on).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=exit_with_parent, args=(alive,), daemon=True).start()
    store = RunStore(run_root)
    try:
        record = begin_and_train(job, store, points)
    except KeyboardInterrupt:
        record = job.ended("interrupted", "interrupted by the user")
        store.write_trial(record)
    except Exception as error:  # before or around training (a plugin gone since the sweep began): recorded
        record = {**job.ended("failed", ""), **failure(error)}
        store.write_trial(record)
    points.send(("record", record))


def begin_and_train(job: TrialJob, store: RunStore, points: Connection) -> dict[str, Any]:
    from minigpt.trial import begin_record
    from minigpt.variants import discover

    discover(job.settings.plugins)  # a plugin's components must be registered before the model is built
    record = begin_record(job.spec, job.settings)
    store.write_trial(record)
    if record["status"] == "skipped":
        return record
    return train_into_store(record, job, store, points)


def train_into_store(record: dict[str, Any], job: TrialJob, store: RunStore, points: Connection) -> dict[str, Any]:
    from minigpt.trial import train_trial

    trial = job.spec.id
    with store.metrics_log(trial) as log:

        def on_point(point: dict[str, Any]) -> None:
            append_point(log, point)
            points.send(("point", point))

        try:
            return train_trial(record, job, store.trial_dir(trial), on_point)
        except KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the record short
            return record
        finally:
            store.write_trial(record)


def exit_with_parent(alive: Connection) -> None:
    try:
        alive.recv()
    except EOFError:
        os._exit(1)
