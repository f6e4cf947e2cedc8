"""MLflow (`--track mlflow`): the sweep is an experiment named after the run directory, each
trial a run in it, through MlflowClient; MLflow's own settings choose the tracking store
(MLFLOW_TRACKING_URI, else MLflow's default)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from minigpt.trackers import TrackingSettings, tracker

PARAM_LENGTH = 6000  # MLflow refuses longer parameter values
FINAL_STATUS = {"completed": "FINISHED", "diverged": "FINISHED", "interrupted": "KILLED"}


def _client_and_experiment(sweep: str) -> tuple[Any, str]:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    experiment = client.get_experiment_by_name(sweep)
    if experiment is not None:
        return client, experiment.experiment_id
    try:
        return client, client.create_experiment(sweep)
    except MlflowException:  # another trial (on Ray) created it first
        return client, client.get_experiment_by_name(sweep).experiment_id


@tracker.register("mlflow")
class MlflowRun:
    extra = "mlflow"
    library = "mlflow"

    def __init__(self, settings: TrackingSettings, trial_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client, self.experiment = _client_and_experiment(settings.sweep)
        run = self.client.create_run(self.experiment, run_name=trial_id, tags={"minigpt.run_dir": settings.run_dir})
        self.run_id = run.info.run_id
        self.client.log_batch(self.run_id, params=[Param(k, str(v)[:PARAM_LENGTH]) for k, v in params.items()])

    def log(self, point: dict[str, Any]) -> None:
        self._metrics({key: value for key, value in point.items() if key != "step"}, point["step"])

    def _metrics(self, values: dict[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        numbers = [Metric(key, float(value), stamp, step) for key, value in values.items()
                   if isinstance(value, (int, float)) and not isinstance(value, bool)]  # fmt: skip
        self.client.log_batch(self.run_id, metrics=numbers)

    def finish(self, summary: dict[str, Any], status: str) -> str:
        self._metrics({f"summary.{key}": value for key, value in summary.items()}, summary.get("steps", 0))
        self.client.set_tag(self.run_id, "status", status)
        self.client.set_terminated(self.run_id, FINAL_STATUS.get(status, "FAILED"))
        return run_link(self.client.tracking_uri, self.experiment, self.run_id)

    @staticmethod
    def publish(settings: TrackingSettings, files: list[Path]) -> None:
        """A run named `report` in the sweep's experiment keeps the report and speed.json."""
        client, experiment = _client_and_experiment(settings.sweep)
        run_id = client.create_run(experiment, run_name="report").info.run_id
        for path in files:
            if path.is_dir():
                client.log_artifacts(run_id, str(path), artifact_path=path.name)
            else:
                client.log_artifact(run_id, str(path))
        client.set_terminated(run_id, "FINISHED")


def run_link(tracking_uri: str, experiment: str, run_id: str) -> str:
    """The run's page on a tracking server, or where the run is kept otherwise."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}"
    return f"{tracking_uri} run {run_id}"
