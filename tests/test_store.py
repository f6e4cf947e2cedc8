"""The run directory's promises that no whole sweep shows: --fresh keeps the lock it runs under,
trial IDs are safe folder names, a trial whose process died keeps the record it finished writing,
and the statistics' guards on degenerate input."""

from __future__ import annotations

import math

import pytest

from minigpt.config import Config
from minigpt.local_executor import lost_record
from minigpt.stats import difference_interval
from minigpt.store import RunLocked, RunStore, trial_id
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
