"""Where a sweep's trials run: the executor registry.

An executor is a module that registers a frozen dataclass of its options under its name
(`@executor.register("local")`); the options open the executor around a sweep. Each field is a
`run` option (and spec key) named after the executor and the field, its help the field's
metadata: `--ray-address` sets `RayOptions.address`. A new executor is its module plus its name
in EXECUTOR_MODULES.

Executor modules import torch and their own heavy dependencies only when they run, so that
resolving `--executor` costs nothing before the sweep starts.
"""

from __future__ import annotations

import importlib
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from minigpt.errors import UserError
from minigpt.registry import Registry

if TYPE_CHECKING:
    from minigpt.trial import SweepJob, TrialSpec

EXECUTOR_MODULES = ("minigpt.local_executor", "minigpt.ray_executor")  # importing each registers it


class Executor(Protocol):
    """Runs trials (in the order given) into the sweep's store and tells its observer about each."""

    def __call__(self, specs: list[TrialSpec], sweep: SweepJob) -> None: ...


class ExecutorOptions(Protocol):
    """One executor's options: a frozen dataclass, validated when built."""

    def prepare(self) -> None:
        """Start what can start while the sweep is still being planned (it must not block)."""

    def open(self) -> AbstractContextManager[Executor]:
        """The executor, ready to run trials for as long as the context lasts."""


executor: Registry[ExecutorOptions] = Registry("executor")


def executor_names() -> list[str]:
    for module in EXECUTOR_MODULES:
        importlib.import_module(module)
    return executor.names()


def executor_options(name: str, flags: dict[str, Any]) -> ExecutorOptions:
    """The options of executor `name` from its command-line flags, named NAME_FIELD (None where
    left out); a flag given that belongs to another executor is a mistake, not silently ignored."""
    names = executor_names()
    options_class = executor.get(name)  # an unknown name raises with the closest names
    for flag, value in flags.items():
        owner = next((other for other in names if flag.startswith(f"{other}_")), None)
        if value is not None and owner != name:
            option = "--" + flag.replace("_", "-")
            raise UserError(f"{option} is an option of --executor {owner}, not {name}; add --executor {owner}")
    prefix = f"{name}_"
    given = {flag.removeprefix(prefix): value for flag, value in flags.items() if value is not None}
    return options_class(**given)
