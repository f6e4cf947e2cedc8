"""The on-disk layout of a sweep:

    runs/NAME/sweep.json                  what was asked
    runs/NAME/trials/TRIAL_ID/trial.json  config, status, summary metrics
    runs/NAME/trials/TRIAL_ID/metrics.jsonl  one point per log/eval, appended and flushed
    runs/NAME/trials/TRIAL_ID/model.safetensors + model.json  the best checkpoint

Every JSON file is written atomically; metrics.jsonl is flushed line by line. A trial that
failed is run again by a re-run (unless told not to); its record keeps each earlier failed
attempt under `attempts`.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from minigpt import atomic
from minigpt.errors import UserError

RESULTS = ("completed", "diverged", "skipped")  # a re-run keeps these: they are the sweep's findings
ENDED = (*RESULTS, "failed")  # the trial's last record is written; a re-run retries `failed`


class RunLocked(UserError):
    """Another process is running a sweep into this directory."""


def trial_id(variant: str, device: str, seed: int) -> str:
    """VARIANT--DEVICE--sSEED with every character outside [A-Za-z0-9._+-] replaced by '_'."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", f"{variant}--{device}--s{seed}")


class RunStore:
    """A run directory. `retry_failed` is this run's policy for the failed trials it finds: not
    finished (run again, the default), or finished and kept as they are (`run --no-retry`)."""

    def __init__(self, root: str | Path, retry_failed: bool = True) -> None:
        self.root = Path(root)
        self.retry_failed = retry_failed

    @property
    def sweep_path(self) -> Path:
        return self.root / "sweep.json"

    def trial_dir(self, trial: str) -> Path:
        return self.root / "trials" / trial

    def exists(self) -> bool:
        return self.sweep_path.is_file()

    def reset(self) -> None:
        """Start over (--fresh): remove what an earlier sweep left here, lock file aside."""
        for child in self.root.iterdir() if self.root.is_dir() else []:
            if child.name != ".lock":
                shutil.rmtree(child) if child.is_dir() else child.unlink()

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the run directory for the duration of a sweep."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunLocked(
                    f"another minigpt-bench run is writing to {self.root}; wait for it or use another --out"
                ) from None
            handle.write(str(os.getpid()))
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def write_sweep(self, sweep: dict[str, Any]) -> None:
        atomic.write_json(self.sweep_path, sweep)

    def read_sweep(self) -> dict[str, Any]:
        return read_json(self.sweep_path) or {}

    def write_trial(self, record: dict[str, Any]) -> None:
        """Write a trial's record, carrying over the attempts the record it replaces kept: every
        executor writes a retried trial's record from scratch, and none may drop its history."""
        path = self.trial_dir(record["trial_id"]) / "trial.json"
        attempts = earlier_attempts(read_json(path)) if "attempts" not in record else record["attempts"]
        atomic.write_json(path, {**record, "attempts": attempts} if attempts else record)

    def remove_partial_writes(self, trial: str) -> None:
        """Remove what a trial's process, killed mid-write, left of the files it was writing."""
        atomic.remove_temporaries(self.trial_dir(trial))

    def read_trial(self, trial: str) -> dict[str, Any] | None:
        return read_json(self.trial_dir(trial) / "trial.json")

    def failed_trials(self, trials: list[str]) -> list[str]:
        return [t for t in trials if (self.read_trial(t) or {}).get("status") == "failed"]

    def unreadable_trials(self, trials: list[str]) -> list[str]:
        """Those of `trials` whose trial.json exists but cannot be read (cut short by a crash
        of the machine, or edited by hand): they are unfinished and run again."""
        return [t for t in trials if (self.trial_dir(t) / "trial.json").is_file() and self.read_trial(t) is None]

    def trials(self) -> list[dict[str, Any]]:
        trials_root = self.root / "trials"
        if not trials_root.is_dir():
            return []
        records = (read_json(d / "trial.json") for d in sorted(trials_root.iterdir()) if d.is_dir())
        return [r for r in records if r is not None]

    def has_ended(self, trial: str) -> bool:
        """Whether the trial's last record is written (a failure included)."""
        record = self.read_trial(trial)
        return record is not None and record.get("status") in ENDED

    def is_finished(self, trial: str) -> bool:
        """Whether this run keeps the trial as it is (a re-run runs the others): its result, or
        its failure when failures are not retried. No record, an unreadable one, `running` or
        `interrupted` is unfinished."""
        record = self.read_trial(trial)
        status = None if record is None else record.get("status")
        return status in RESULTS or (status == "failed" and not self.retry_failed)

    @contextmanager
    def metrics_log(self, trial: str) -> Iterator[TextIO]:
        """A fresh metrics.jsonl for a trial that (re)starts: a restart never duplicates points."""
        path = self.trial_dir(trial) / "metrics.jsonl"
        with atomic.naming_a_full_disk(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                yield handle

    def read_metrics(self, trial: str) -> list[dict[str, Any]]:
        path = self.trial_dir(trial) / "metrics.jsonl"
        if not path.is_file():
            return []
        points = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                points.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut short by a kill: everything before it stands
        return points


def is_evaluation(record: dict[str, Any]) -> bool:
    """An evaluation trial, whose numbers answer the sweep, not a tuning one (trial.json's `stage`;
    absent in runs from before tuning existed)."""
    return record.get("stage", "eval") == "eval"


def earlier_attempts(record: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The attempts a trial's next record keeps: the ones `record` kept, plus `record` itself
    when it is a failure being retried."""
    if record is None:
        return []
    attempts = list(record.get("attempts", []))
    if record.get("status") == "failed":
        attempts.append({key: record.get(key) for key in ("status", "error", "started_at", "finished_at")})
    return attempts


def append_point(handle: TextIO, point: dict[str, Any]) -> None:
    with atomic.naming_a_full_disk(Path(handle.name)):
        handle.write(json.dumps(point) + "\n")
        handle.flush()


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
