"""The run directory's promises that no whole sweep shows: --fresh keeps the lock it runs under,
trial IDs are safe folder names, a trial whose process died keeps the record it finished writing,
and the statistics' guards on degenerate input."""

from __future__ import annotations

import errno
import io
import math

import pytest

from minigpt.config import Config
from minigpt.errors import DiskFull
from minigpt.local_executor import lost_record
from minigpt.stats import difference_interval
from minigpt.store import RunLocked, RunStore, append_point, is_evaluation, trial_id
from minigpt.train import Budget
from minigpt.trial import TrialJob, TrialSettings, TrialSpec, ended_record

from .conftest import SHAKESPEARE, TINY


def test_a_fresh_start_keeps_the_lock_so_a_second_run_is_still_refused(tmp_path) -> None:  # noqa: ANN001
    store = RunStore(tmp_path)
    with store.lock():
        (tmp_path / "sweep.json").write_text("{}")
        (tmp_path / "trials" / "a").mkdir(parents=True)
        store.reset()  # --fresh, under the lock the sweep holds
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]
        with pytest.raises(RunLocked, match="another minigpt-bench run is writing to"), RunStore(tmp_path).lock():
            pass  # reached only if reset() had deleted the locked file and the second run made its own


@pytest.mark.parametrize(
    ("variant", "device", "expected"),
    [
        ("baseline", "cuda:1", "baseline--cuda_1--s0"),
        ("../x/y", "cpu", ".._x_y--cpu--s0"),
        ("ok-name_1.5+x", "mps", "ok-name_1.5+x--mps--s0"),
    ],
)
def test_a_trial_id_is_one_safe_folder_name(variant: str, device: str, expected: str) -> None:
    assert trial_id(variant, device, 0) == expected


def spec_and_settings() -> tuple[TrialSpec, TrialSettings]:
    spec = TrialSpec("baseline", "the reference", "cpu", 0, Config(**TINY), {})
    return spec, TrialSettings(str(SHAKESPEARE), Budget(max_steps=4), None)


def test_a_trial_whose_process_died_after_its_last_record_keeps_that_record(tmp_path) -> None:  # noqa: ANN001
    spec, settings = spec_and_settings()
    store = RunStore(tmp_path)
    finished = {**ended_record(spec, settings, "completed", ""), "best_val_loss": 2.5}
    store.write_trial(finished)
    assert lost_record(TrialJob(spec, settings, None), store, -9) == finished
    assert store.read_trial(spec.id) == finished  # not overwritten as failed


def test_a_trial_whose_process_died_mid_training_is_recorded_failed_with_its_exit_code(tmp_path) -> None:  # noqa: ANN001
    spec, settings = spec_and_settings()
    store = RunStore(tmp_path)
    store.write_trial({**ended_record(spec, settings, "running", ""), "error": None})
    record = lost_record(TrialJob(spec, settings, None), store, -9)
    assert record["status"] == "failed" and "the trial's process died (exit code -9)" in record["error"]
    assert store.read_trial(spec.id)["status"] == "failed"


def test_welch_with_no_spread_on_either_side_is_certain_of_the_difference() -> None:
    """Different seeds on each side and every value equal within a side: Welch's degrees of
    freedom would divide zero by zero; the difference is exact instead."""
    difference = difference_interval({0: 2.0, 1: 2.0}, {2: 2.5, 3: 2.5})
    assert (difference.mean, difference.low, difference.high, difference.n) == (-0.5, -0.5, -0.5, 2)
    assert difference.p == 0.0
    same = difference_interval({0: 2.0, 1: 2.0}, {2: 2.0, 3: 2.0})
    assert same.mean == 0.0 and same.p == 1.0 and not math.isnan(same.low)


def test_a_fresh_start_in_a_directory_not_yet_made_does_nothing(tmp_path) -> None:  # noqa: ANN001
    RunStore(tmp_path / "new").reset()
    assert not (tmp_path / "new").exists()


def test_failed_and_unreadable_trials_are_told_apart(tmp_path) -> None:  # noqa: ANN001
    store = RunStore(tmp_path)
    for name, status in (("a", "failed"), ("b", "completed"), ("c", "running")):
        store.write_trial({"trial_id": name, "status": status})
    (store.trial_dir("d")).mkdir(parents=True)
    (store.trial_dir("d") / "trial.json").write_text('{"trial_id": "d", "sta')  # cut short by a crash
    names = ["a", "b", "c", "d", "never-started"]
    assert store.failed_trials(names) == ["a"]
    assert store.unreadable_trials(names) == ["d"]


@pytest.mark.parametrize(("record", "expected"), [({}, True), ({"stage": "eval"}, True), ({"stage": "tune"}, False)])
def test_a_trial_is_an_evaluation_unless_it_says_otherwise(record: dict, expected: bool) -> None:
    assert is_evaluation(record) is expected


def test_a_metrics_point_is_one_json_line(tmp_path) -> None:  # noqa: ANN001
    store = RunStore(tmp_path)
    with store.metrics_log("t") as handle:
        append_point(handle, {"step": 1, "val_loss": None})
        append_point(handle, {"step": 2, "val_loss": 2.5})
    assert (store.trial_dir("t") / "metrics.jsonl").read_text() == (
        '{"step": 1, "val_loss": null}\n{"step": 2, "val_loss": 2.5}\n'
    )
    assert store.read_metrics("t") == [{"step": 1, "val_loss": None}, {"step": 2, "val_loss": 2.5}]


def test_a_full_disk_while_appending_a_point_names_the_metrics_file(tmp_path) -> None:  # noqa: ANN001
    class FullDisk(io.StringIO):
        name = str(tmp_path / "trials" / "t" / "metrics.jsonl")

        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFull, match=r"no space left on .*trials/t/metrics\.jsonl"):
        append_point(FullDisk(), {"step": 1})


def test_a_trial_id_keeps_upper_case_letters() -> None:
    assert trial_id("SwiGLU", "CPU", 3) == "SwiGLU--CPU--s3"


def test_a_retried_trial_keeps_each_failed_attempt(tmp_path) -> None:  # noqa: ANN001
    store = RunStore(tmp_path)
    times = {"started_at": "t0", "finished_at": "t1"}
    store.write_trial({"trial_id": "t", "status": "completed"})
    assert "attempts" not in store.read_trial("t")  # nothing failed: no history to keep
    store.write_trial({"trial_id": "t", "status": "failed", "error": "boom", "extra": 1, **times})
    store.write_trial({"trial_id": "t", "status": "running"})  # the retry starts
    first = {"status": "failed", "error": "boom", **times}
    assert store.read_trial("t") == {"trial_id": "t", "status": "running", "attempts": [first]}
    store.write_trial({"trial_id": "t", "status": "failed", "error": "again", **times})
    store.write_trial({"trial_id": "t", "status": "completed"})
    assert store.read_trial("t")["attempts"] == [first, {**first, "error": "again"}]
    given = [{"status": "failed", "error": "as the executor recorded it"}]
    store.write_trial({"trial_id": "t", "status": "completed", "attempts": given})  # a record's own history wins
    assert store.read_trial("t")["attempts"] == given


@pytest.mark.parametrize(
    ("status", "retried", "kept"),
    [("completed", True, True), ("skipped", False, True), ("failed", True, False), ("failed", False, True),
     ("running", True, False), ("running", False, False)],
)  # fmt: skip
def test_a_failure_is_finished_only_when_failures_are_not_retried(
    tmp_path, status: str, retried: bool, kept: bool
) -> None:  # noqa: ANN001
    RunStore(tmp_path).write_trial({"trial_id": "t", "status": status})
    assert RunStore(tmp_path, retry_failed=retried).is_finished("t") is kept
    assert not RunStore(tmp_path, retry_failed=retried).is_finished("never-started")


def test_a_store_retries_failures_unless_told_not_to(tmp_path) -> None:  # noqa: ANN001
    RunStore(tmp_path).write_trial({"trial_id": "t", "status": "failed"})
    assert not RunStore(tmp_path).is_finished("t")


def test_metrics_stop_at_a_line_cut_short(tmp_path) -> None:  # noqa: ANN001
    store = RunStore(tmp_path)
    store.trial_dir("t").mkdir(parents=True)
    (store.trial_dir("t") / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n{"st\n{"step": 4}\n')
    assert store.read_metrics("t") == [{"step": 1}, {"step": 2}]
    assert store.read_metrics("no-such-trial") == []
