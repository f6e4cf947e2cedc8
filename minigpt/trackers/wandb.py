"""Weights & Biases (`--track wandb`): each trial a run in the project (WANDB_PROJECT, else
minigpt-bench), grouped by sweep (the run directory's name). wandb's own settings apply:
WANDB_MODE=offline keeps runs in WANDB_DIR for `wandb sync` later."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from minigpt.trackers import TrackingSettings, tracker

DEFAULT_PROJECT = "minigpt-bench"


def _start(settings: TrackingSettings, name: str, job_type: str, config: dict[str, Any] | None = None) -> Any:
    import wandb

    return wandb.init(
        project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
        group=settings.sweep,
        name=name,
        job_type=job_type,
        config=config,
        reinit="create_new",
        # the trial's own process: no console capture, no system sampling beside the timed steps
        settings=wandb.Settings(console="off", silent=True, x_disable_stats=True),
    )


@tracker.register("wandb")
class WandbRun:
    extra = "wandb"
    library = "wandb"

    def __init__(self, settings: TrackingSettings, trial_id: str, params: dict[str, Any]) -> None:
        self.run = _start(settings, trial_id, "trial", params)

    def log(self, point: dict[str, Any]) -> None:
        numbers = {k: v for k, v in point.items() if k != "step" and isinstance(v, (int, float))}
        self.run.log(numbers, step=point["step"])

    def finish(self, summary: dict[str, Any], status: str) -> str:
        self.run.summary.update({**summary, "status": status})
        link = self.run.url if not self.run.offline else str(Path(self.run.dir).parent)
        self.run.finish(exit_code=0 if status in ("completed", "diverged") else 1)
        return link

    @staticmethod
    def publish(settings: TrackingSettings, files: list[Path]) -> None:
        """A `report` run in the sweep's group logs the report and speed.json as one artifact."""
        import wandb

        run = _start(settings, f"{settings.sweep}-report", "report")
        artifact = wandb.Artifact(re.sub(r"[^A-Za-z0-9._-]", "_", f"{settings.sweep}-report"), type="report")
        for path in files:
            if path.is_dir():
                artifact.add_dir(str(path), name=path.name)
            else:
                artifact.add_file(str(path))
        run.log_artifact(artifact)
        run.finish()
