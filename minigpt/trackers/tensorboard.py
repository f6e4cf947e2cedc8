"""TensorBoard (`--track tensorboard`): one event-file folder per trial, through PyTorch's
SummaryWriter (which writes with tensorboard's own library), under RUN_DIR/tensorboard unless
--tensorboard-dir names another folder: `tensorboard --logdir RUN_DIR/tensorboard`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from minigpt.trackers import TrackingSettings, tracker


@tracker.register("tensorboard")
class TensorBoardRun:
    extra = "tensorboard"
    library = "tensorboard"

    def __init__(self, settings: TrackingSettings, trial_id: str, params: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(settings.tensorboard_dir) / trial_id
        self.params = params
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def log(self, point: dict[str, Any]) -> None:
        for key, value in point.items():
            if key != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, point["step"])

    def finish(self, summary: dict[str, Any], status: str) -> str:
        """The hyperparameters with the summary as their metrics (TensorBoard's HParams view)."""
        metrics = {f"summary/{key}": value for key, value in summary.items()}
        self.writer.add_hparams({**self.params, "status": status}, metrics, run_name=".")
        self.writer.close()
        return str(self.log_dir)

    @staticmethod
    def publish(settings: TrackingSettings, files: list[Path]) -> None:
        """TensorBoard keeps event logs only, no files: the report stays where it was written."""
