"""`run --track`: every trial logged to TensorBoard, Weights & Biases and MLflow through their own
client libraries, offline, and read back with each tool's own reader."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from minigpt.spec import RunSpec
from tests.test_spec import TINY_SETS

TRACKERS = [name for name in ("tensorboard", "wandb", "mlflow") if importlib.util.find_spec(name)]
VARIANTS = ("baseline", "nope")


def needs(name: str) -> None:
    if name not in TRACKERS:
        pytest.skip(f"the {name} extra is not installed: pip install 'minigpt-bench[{name}]'")


def tiny_run(out: Path, track: tuple[str, ...], **options: Any) -> RunSpec:
    return RunSpec(variants=",".join(VARIANTS), devices="cpu", seeds="0", max_steps=6, set=tuple(TINY_SETS),
                   out=str(out), no_speed=True, quiet=True, track=track, **options)  # fmt: skip


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One tiny sweep logged to every installed tracker, offline; yields its run directory."""
    from minigpt.cli_run import run_spec

    root = tmp_path_factory.mktemp("tracked")
    (root / "wandb").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINIGPT_BENCH_CACHE", str(root / "cache"))
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_DIR", str(root / "wandb"))
        patch.setenv("WANDB_SILENT", "true")
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        patch.chdir(root)  # the report goes to reports/NAME under the current directory
        run_spec(tiny_run(root / "sweep", tuple(TRACKERS)))
        yield root / "sweep"


def trial(run_dir: Path, variant: str) -> dict[str, Any]:
    return json.loads((run_dir / "trials" / f"{variant}--cpu--s0" / "trial.json").read_text())


@pytest.mark.slow
def test_tensorboard_event_files_hold_every_point_and_the_hyperparameters(tracked: Path) -> None:
    needs("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for variant in VARIANTS:
        record = trial(tracked, variant)
        assert record["tracking"]["tensorboard"] == str(tracked / "tensorboard" / record["trial_id"])
        events = EventAccumulator(record["tracking"]["tensorboard"])
        events.Reload()
        points = [json.loads(line) for line in (tracked / "trials" / record["trial_id"] / "metrics.jsonl").open()]
        val = [(event.step, event.value) for event in events.Scalars("val_loss")]
        assert val == [(p["step"], pytest.approx(p["val_loss"])) for p in points if p["val_loss"] is not None]
        assert events.Scalars("summary/best_val_loss")[0].value == pytest.approx(record["best_val_loss"])


@pytest.mark.slow
def test_mlflow_keeps_params_metric_histories_and_the_report(tracked: Path) -> None:
    needs("mlflow")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tracked.parent / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("sweep")
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {f"{v}--cpu--s0" for v in VARIANTS} | {"report"}
    for variant in VARIANTS:
        record = trial(tracked, variant)
        run = runs[record["trial_id"]]
        assert record["tracking"]["mlflow"].endswith(run.info.run_id)
        assert (run.data.params["variant"], run.data.params["n_embd"]) == (variant, "16")
        history = client.get_metric_history(run.info.run_id, "val_loss")
        points = [json.loads(line) for line in (tracked / "trials" / record["trial_id"] / "metrics.jsonl").open()]
        assert [(m.step, m.value) for m in history] == [(p["step"], p["val_loss"]) for p in points if p["val_loss"]]
        assert run.data.metrics["summary.best_val_loss"] == pytest.approx(record["best_val_loss"])
        assert run.info.status == "FINISHED"
    kept = [item.path for item in client.list_artifacts(runs["report"].info.run_id, "sweep")]
    assert "sweep/report.md" in kept


@pytest.mark.slow
def test_the_report_links_each_trial_to_its_tracker_runs(tracked: Path) -> None:
    report = (tracked.parent / "reports" / "sweep" / "report.html").read_text()  # markdown escapes paths' _
    assert "Tracker runs</h2>" in report
    for variant in VARIANTS:
        for where in trial(tracked, variant)["tracking"].values():
            assert where in report


@pytest.mark.slow
def test_wandb_offline_runs_are_kept_in_wandb_dir_grouped_by_sweep(tracked: Path) -> None:
    needs("wandb")
    for variant in VARIANTS:
        record = trial(tracked, variant)
        folder = Path(record["tracking"]["wandb"])
        assert folder.parent == tracked.parent / "wandb" / "wandb" and folder.name.startswith("offline-run-")
        log = next(folder.glob("run-*.wandb")).read_bytes()  # wandb's transaction log: protobuf records
        for text in (record["trial_id"], "sweep", "val_loss", "best_val_loss", "n_embd"):
            assert text.encode() in log


@pytest.mark.slow
def test_a_failing_tracker_warns_once_and_the_sweep_completes(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    needs("tensorboard")
    from minigpt.cli_run import run_spec

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where TensorBoard's folder should be")
    monkeypatch.chdir(tmp_path)
    run_spec(tiny_run(tmp_path / "r", ("tensorboard",), tensorboard_dir=str(blocked), no_report=True))
    warnings = [line for line in capsys.readouterr().err.splitlines() if "tensorboard" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: --track tensorboard failed in 2 trial(s)")
    for variant in VARIANTS:
        record = trial(tmp_path / "r", variant)
        assert record["status"] == "completed" and "tensorboard" in record["tracking_errors"]
        assert (tmp_path / "r" / "trials" / record["trial_id"] / "model.safetensors").is_file()


def test_a_tracker_that_raises_mid_trial_is_dropped_and_its_error_kept() -> None:
    from minigpt.trackers import TrackingSettings, TrialTracking

    class Flaky:
        def log(self, point: dict[str, Any]) -> None:
            raise OSError("server gone")

    tracking = TrialTracking(None, "t", {})
    tracking.runs["mlflow"] = Flaky()
    tracking.log({"step": 1})
    tracking.log({"step": 2})
    assert tracking.finish({"status": "completed"}) == {"tracking_errors": {"mlflow": "OSError: server gone"}}
    assert TrackingSettings  # the settings a trial's process receives are importable without any extra
