"""A trial's start-up: seconds from the moment the local executor starts a trial's process to
the trial's first metric point, which the trainer yields right after its first optimizer step
(eval_interval=1, one validation batch of a tiny model, so the step and its evaluation take
milliseconds and the figure is start-up: the fork, the imports the trial still does, the
drift probe, building the model and optimizer).

    PYTHONPATH=CHECKOUT python benchmarks/targets/trial_startup.py [--trials 6]

PYTHONPATH picks the engine measured, so one copy of this script times two checkouts: run it
alternately against each (A B B A) and compare medians measured back to back.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from minigpt.config import Config
from minigpt.local_executor import LocalOptions
from minigpt.runner import QuietObserver, run_sweep
from minigpt.store import RunStore
from minigpt.sweep import plan_sweep
from minigpt.train import Budget
from minigpt.variants import discover

TINY = {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16, "batch_size": 4}
DATA = Path(__file__).resolve().parents[2] / "data" / "input.txt"


class StartupObserver(QuietObserver):
    """Seconds from each trial's start to its first point."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.seconds: list[float] = []

    def trial_started(self, spec: Any) -> None:
        self.started[spec.id] = time.perf_counter()

    def trial_point(self, spec: Any, point: dict[str, Any]) -> None:
        if spec.id in self.started:
            self.seconds.append(time.perf_counter() - self.started.pop(spec.id))


def measure(trials: int) -> list[float]:
    config = Config(**TINY, warmup_steps=1, eval_interval=1, eval_batches=1)
    registry = discover()
    plan = plan_sweep(registry, "baseline", ["cpu"], list(range(trials)), config, str(DATA), Budget(max_steps=1))
    observer = StartupObserver()
    executor = LocalOptions()
    executor.prepare()
    with tempfile.TemporaryDirectory(prefix="minigpt-startup-") as out:
        run_sweep(plan, RunStore(out), observer, executor=executor)
    return observer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=6, help="trials, one process each")
    args = parser.parse_args()
    seconds = measure(args.trials)
    print(json.dumps({"median_s": statistics.median(seconds), "seconds": [round(s, 3) for s in seconds]}))


if __name__ == "__main__":
    main()
