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
from minigpt.trackers import tracker, tracker_names
from tests.test_spec import TINY_SETS

TRACKERS = [name for name in tracker_names() if importlib.util.find_spec(tracker.get(name).library)]
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

    if not TRACKERS:
        pytest.skip("no tracker extra is installed: pip install 'minigpt-bench[tensorboard,wandb,mlflow]'")

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


def wandb_records(path: Path) -> Iterator[Any]:
    """The records of wandb's transaction log (run-ID.wandb), decoded with wandb's own protobuf
    schema; the framing is LevelDB's log format (7-byte file header, 32 KiB blocks, each chunk
    crc32 + length + type), which wandb 0.31 no longer reads back in Python."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, pending = 7, b""
    while position + 7 <= len(data):
        if 32768 - position % 32768 < 7:  # a block's tail too short for a chunk header is padding
            position += 32768 - position % 32768
            continue
        length, kind = int.from_bytes(data[position + 4 : position + 6], "little"), data[position + 6]
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def key(item: Any) -> str:
    """A logged item's name: wandb keeps some (_step among them) as a nested key."""
    return item.key or "/".join(item.nested_key)


@pytest.mark.slow
def test_wandb_offline_runs_hold_config_history_and_summary_grouped_by_sweep(tracked: Path) -> None:
    needs("wandb")
    for variant in VARIANTS:
        record = trial(tracked, variant)
        folder = Path(record["tracking"]["wandb"])
        assert folder.parent == tracked.parent / "wandb" / "wandb" and folder.name.startswith("offline-run-")
        records = list(wandb_records(next(folder.glob("run-*.wandb"))))
        run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
        assert (run.run_group, run.display_name) == ("sweep", record["trial_id"])
        assert {item.key: json.loads(item.value_json) for item in run.config.update}["n_embd"] == 16
        history = [{key(i): json.loads(i.value_json) for i in r.history.item} for r in records if r.HasField("history")]
        points = [json.loads(line) for line in (tracked / "trials" / record["trial_id"] / "metrics.jsonl").open()]
        assert [(h["_step"], h.get("val_loss")) for h in history] == [(p["step"], p["val_loss"]) for p in points]
        summary = {key(i): i.value_json for r in records if r.HasField("summary") for i in r.summary.update}
        assert json.loads(summary["best_val_loss"]) == pytest.approx(record["best_val_loss"])


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
    from minigpt.trackers import TrialTracking

    class Flaky:
        def log(self, point: dict[str, Any]) -> None:
            raise OSError("server gone")

    tracking = TrialTracking(None, "t", {})
    tracking.runs["mlflow"] = Flaky()
    tracking.log({"step": 1})
    tracking.log({"step": 2})
    assert tracking.finish({"status": "completed"}) == {"tracking_errors": {"mlflow": "OSError: server gone"}}
