"""Experiment trackers (`run --track NAME`): every trial also logged where users already look.

A tracker is a module that registers a class under its name (`@tracker.register("mlflow")`).
The class opens one tracker run per trial with the trial's configuration as hyperparameters,
logs each metric point the trainer already yields (outside the timed step: no added host sync)
and its summary at the end, and returns a link or path to that run for trial.json and the report;
its `publish` keeps the sweep's report and speed.json as artifacts where the tracker keeps files.
A new tracker is its module plus its name in TRACKER_MODULES.

Each tracker's library is an optional extra, imported only where a trial runs. A tracker that
fails never fails a trial: the trial's own files come first, and the error is recorded in the
trial's `tracking_errors` for the sweep to warn about once.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from minigpt.errors import UserError
from minigpt.registry import Registry

TRACKER_ENVIRONMENT = ("WANDB_", "MLFLOW_")  # the trackers' own settings, passed on to every trial
TRACKER_MODULES = ("minigpt.trackers.tensorboard", "minigpt.trackers.wandb", "minigpt.trackers.mlflow")


@dataclass(frozen=True)
class TrackingSettings:
    """What a trial's process needs to log it: the trackers, the sweep's name (the tracker's
    group or experiment), the run directory, TensorBoard's log folder, and the trackers' own
    settings from the sweep's environment (WANDB_*, MLFLOW_*): a trial's process may have
    started before them (a forkserver) or on another machine (a Ray worker)."""

    names: tuple[str, ...]
    sweep: str
    run_dir: str
    tensorboard_dir: str
    environment: tuple[tuple[str, str], ...] = ()


class TrialRun(Protocol):
    """One trial's run in one tracker, opened with the trial's ID and hyperparameters."""

    def log(self, point: dict[str, Any]) -> None: ...
    def finish(self, summary: dict[str, Any], status: str) -> str | None: ...


class Tracker(Protocol):
    extra: str  # the optional dependency to install: pip install 'minigpt-bench[EXTRA]'
    library: str  # the module that must import

    def __call__(self, settings: TrackingSettings, trial_id: str, params: dict[str, Any]) -> TrialRun: ...
    def publish(self, settings: TrackingSettings, files: list[Path]) -> None: ...


tracker: Registry[Tracker] = Registry("tracker")


def tracker_names() -> list[str]:
    for module in TRACKER_MODULES:
        importlib.import_module(module)
    return tracker.names()


def tracking_settings(names: Iterable[str], run_dir: Path, tensorboard_dir: str | None) -> TrackingSettings | None:
    """The trackers asked for, each known and installed (one line naming the extra otherwise), or None."""
    chosen = list(dict.fromkeys(names))
    if not chosen:
        return None
    tracker_names()
    for name in chosen:
        wanted = tracker.get(name)  # an unknown name raises with the closest names
        if importlib.util.find_spec(wanted.library) is None:
            raise UserError(
                f"--track {name} needs {wanted.library}: pip install 'minigpt-bench[{wanted.extra}]' "
                f"(or pip install {wanted.library})"
            )
    root = run_dir.resolve()
    logs = Path(tensorboard_dir).resolve() if tensorboard_dir else root / "tensorboard"
    environment = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(TRACKER_ENVIRONMENT)))
    return TrackingSettings(tuple(chosen), root.name, str(root), str(logs), environment)


def flat_params(record: dict[str, Any]) -> dict[str, Any]:
    """A trial's hyperparameters as trackers take them: its configuration and what sets it apart,
    each a number, string or boolean."""
    params = {key: record.get(key) for key in ("variant", "device", "seed", "data", "target_loss", "stage", "size")}
    params.update({f"budget.{key}": value for key, value in (record.get("budget") or {}).items()})
    params.update(record.get("config", {}))
    params.update({f"tuned.{key}": value for key, value in (record.get("tuned") or {}).items()})
    return {key: value if isinstance(value, (int, float, str, bool)) else str(value) for key, value in params.items()}


def summary_of(record: dict[str, Any]) -> dict[str, float]:
    """A finished trial's numeric summary fields (losses, speed, memory, MFU)."""
    skip = {"seed", "target_loss", "threads"}
    return {
        key: float(value)
        for key, value in record.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in skip
    }


class TrialTracking:
    """One trial's runs in every tracker asked for; a tracker that raises is dropped for the
    rest of the trial and its error kept, so the trial trains and records itself regardless."""

    def __init__(self, settings: TrackingSettings | None, trial_id: str, record: dict[str, Any]) -> None:
        self.runs: dict[str, TrialRun] = {}
        self.errors: dict[str, str] = {}
        self.links: dict[str, str] = {}
        if settings:
            os.environ.update(settings.environment)
        for name in settings.names if settings else ():
            self._guarded(name, lambda name=name: self.runs.__setitem__(name, _open(name, settings, trial_id, record)))

    def log(self, point: dict[str, Any]) -> None:
        for name, run in list(self.runs.items()):
            self._guarded(name, lambda run=run: run.log(point))

    def finish(self, record: dict[str, Any]) -> dict[str, Any]:
        """The trial.json fields: each tracker run's link or path, and each tracker's error."""
        for name, run in list(self.runs.items()):
            self._guarded(
                name, lambda name=name, run=run: self._link(name, run.finish(summary_of(record), record["status"]))
            )
        fields: dict[str, Any] = {}
        if self.links:
            fields["tracking"] = self.links
        if self.errors:
            fields["tracking_errors"] = self.errors
        return fields

    def _link(self, name: str, link: str | None) -> None:
        if link:
            self.links[name] = link

    def _guarded(self, name: str, action: Any) -> None:
        try:
            action()
        except Exception as error:  # a tracker's failure must never end the trial
            self.runs.pop(name, None)
            self.errors[name] = f"{type(error).__name__}: {error}".splitlines()[0]


def _open(name: str, settings: TrackingSettings, trial_id: str, record: dict[str, Any]) -> TrialRun:
    tracker_names()
    return tracker.get(name)(settings, trial_id, flat_params(record))


def publish_sweep(settings: TrackingSettings | None, files: list[Path]) -> list[str]:
    """Keep the sweep's files (the report, speed.json) in every tracker that keeps files;
    returns one warning line per tracker that failed."""
    warnings = []
    present = [path for path in files if path.exists()]
    for name in settings.names if settings and present else ():
        try:
            tracker_names()
            tracker.get(name).publish(settings, present)
        except Exception as error:  # the report is written; a tracker's failure loses nothing
            warnings.append(f"warning: --track {name} could not keep the report: {type(error).__name__}: {error}")
    return [line.splitlines()[0] for line in warnings]


def tracking_warnings(records: list[dict[str, Any] | None]) -> list[str]:
    """One warning line per tracker that failed in any trial of the sweep."""
    failed: dict[str, list[str]] = {}
    for record in records:
        for name, error in ((record or {}).get("tracking_errors") or {}).items():
            failed.setdefault(name, []).append(error)
    return [
        f"warning: --track {name} failed in {len(errors)} trial(s) ({errors[0]}); the trials' own files are complete"
        for name, errors in failed.items()
    ]
