"""Faults a user recovers from: a full disk, a trial's process killed, SIGTERM to `run`, a
trial.json or metrics.jsonl cut short; failed trials are retried and exit codes tell scripts.

Faults are injected where the trial trains (its own process) by plugin variants whose MLP,
once built there, misbehaves while a marker file beside the plugin exists; removing the marker
is the fault going away (space freed, memory back)."""

from __future__ import annotations

import errno
import json
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from safetensors import SafetensorError

from minigpt import checkpoint
from minigpt.bench import command_exit_code
from minigpt.config import Config
from minigpt.data import CharTokenizer
from minigpt.errors import DiskFull, is_disk_full
from minigpt.interrupts import Terminated, exit_code, sigterm_as_interrupt
from minigpt.model import GPT
from minigpt.progress import failures_line, retry_line
from minigpt.speed import failed_measurements
from minigpt.store import RunStore

from .conftest import run_cli
from .test_report import make_run
from .test_sweep import Sweep, start_sweep, sweep, trials, wait_for  # noqa: F401 (sweep is a fixture)

FAULTY_VARIANT = '''
import os
import signal
import time
from pathlib import Path

from minigpt import checkpoint, variant
from minigpt.components import mlp
from minigpt.components.mlps import GeluMLP

MARKER = Path(__file__).with_name("{name}.armed")


@mlp.register("{name}")
class Faulty(GeluMLP):
    """A GELU MLP that injects its fault into the process that builds it (the trial's)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        inject()

    def forward(self, x):
        if self.training and MARKER.exists():
            on_step()
        return super().forward(x)


def on_step():
    pass


def inject():
    pass


{fault}


@variant("{name}", "a GELU MLP with a fault injected while its marker exists")
def faulty(cfg):
    return cfg.replace(mlp="{name}")
'''

KILLED_MID_STEP = """
def on_step():
    os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer does
"""

KILLED_MID_CHECKPOINT = """
def inject():
    def save_model(model, path):
        Path(path).write_bytes(bytes(4096))  # part of the checkpoint made it to its temporary file
        os.kill(os.getpid(), signal.SIGKILL)

    checkpoint.save_model = save_model
"""

DISK_FULL_IN_CHECKPOINT = """
def inject():
    def save_model(model, path):
        if not MARKER.exists():
            return real(model, path)
        Path(path).write_bytes(bytes(4096))  # part of the file made it to disk
        from safetensors import SafetensorError
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                              'message: "No space left on device" })')

    real = checkpoint.save_model
    checkpoint.save_model = save_model
"""

SLOW_CHECKPOINT = """
def inject():
    def save_model(model, path):
        if not MARKER.exists():
            return real(model, path)
        Path(path).write_bytes(bytes(4096))
        MARKER.with_name("writing").touch()
        time.sleep(120)  # the write in progress, until the trial is stopped

    real = checkpoint.save_model
    checkpoint.save_model = save_model
"""


def faulty_plugin(folder: Path, name: str, fault: str) -> Path:
    """A plugin defining variant `name` with `fault`, armed; returns its marker file."""
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(FAULTY_VARIANT.replace("{name}", name).replace("{fault}", fault))
    marker = folder / f"{name}.armed"
    marker.touch()
    return marker


def leftovers(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.name.endswith(".tmp")]


def assert_every_json_whole(root: Path) -> None:
    for path in root.rglob("*.json"):
        json.loads(path.read_text())  # raises on a file cut short


# --- a full disk -------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 128 kB tmpfs: room for the JSON files, not for a checkpoint of a 64-wide model."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command here to make a small tmpfs (the injected disk-full test stands in)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:  # mounting needs root (or CAP_SYS_ADMIN); CI here runs as root
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the injected disk-full test stands in")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_fails_the_trial_by_name_and_a_rerun_completes_it_once_space_returns(
    sweep: Sweep,  # noqa: F811
    small_disk: Path,
) -> None:
    out = small_disk / "run"
    args = ("--variants", "baseline", "--max-steps", "6", "--set", "n_embd=64")
    code, _, err = sweep(out, *args)
    assert code == 1, err
    record = trials(out)["baseline--cpu--s0"]
    trial_dir = out / "trials" / "baseline--cpu--s0"
    assert record["status"] == "failed"
    assert record["error"].startswith(f"DiskFull: no space left on {trial_dir / 'model.safetensors'} (")
    assert "free there)" in record["error"]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: 1 of 1 trials failed (no space left on {trial_dir / 'model.safetensors'}")
    assert not (trial_dir / "model.safetensors").exists() and not leftovers(out)
    assert_every_json_whole(out)

    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    code, out_text, err = sweep(out, *args)
    assert code == 0, err
    record = trials(out)["baseline--cpu--s0"]
    assert record["status"] == "completed"
    assert [a["error"].split(" (")[0] for a in record["attempts"]] == [
        f"DiskFull: no space left on {trial_dir / 'model.safetensors'}"
    ]
    assert "retried 1 failed trial(s): 1 completed" in out_text
    checkpoint.load_checkpoint(trial_dir)


@pytest.mark.slow
def test_a_write_that_finds_the_disk_full_leaves_nothing_and_the_retry_completes(
    sweep: Sweep,  # noqa: F811
    tmp_path: Path,
) -> None:
    marker = faulty_plugin(tmp_path / "plugins", "fullsave", DISK_FULL_IN_CHECKPOINT)
    args = ("--variants", "fullsave", "--max-steps", "6", "--plugins", str(tmp_path / "plugins"))
    code, _, err = sweep(tmp_path / "run", *args)
    assert code == 1, err
    trial_dir = tmp_path / "run" / "trials" / "fullsave--cpu--s0"
    record = trials(tmp_path / "run")["fullsave--cpu--s0"]
    assert record["error"].startswith(f"DiskFull: no space left on {trial_dir / 'model.safetensors'} (")
    assert not (trial_dir / "model.safetensors").exists() and not leftovers(tmp_path / "run")
    marker.unlink()
    code, _, err = sweep(tmp_path / "run", *args)
    assert code == 0, err
    record = trials(tmp_path / "run")["fullsave--cpu--s0"]
    assert record["status"] == "completed" and len(record["attempts"]) == 1
    assert (trial_dir / "model.safetensors").is_file()


def test_disk_full_names_the_file_and_the_space_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = GPT(Config(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=3))

    def full(model: GPT, path: str) -> None:
        Path(path).write_bytes(bytes(100))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_model", full)
    with pytest.raises(DiskFull) as raised:
        checkpoint.save_checkpoint(tmp_path / "ckpt", model, CharTokenizer("abc"), variant="x")
    assert str(raised.value).startswith(f"no space left on {tmp_path / 'ckpt' / 'model.safetensors'} (")
    assert str(raised.value).endswith(" free there)")
    assert list((tmp_path / "ckpt").iterdir()) == []
    assert is_disk_full(SafetensorError("Error while serializing: No space left on device (os error 28)"))
    assert not is_disk_full(OSError(errno.EIO, "Input/output error"))


# --- a trial's process killed, retries and exit codes -------------------------------------------


@pytest.mark.slow
def test_a_trial_killed_mid_step_is_retried_by_the_next_run_unless_no_retry(
    sweep: Sweep,  # noqa: F811
    tmp_path: Path,
) -> None:
    marker = faulty_plugin(tmp_path / "plugins", "killed", KILLED_MID_STEP)
    args = ("--variants", "killed,baseline", "--max-steps", "6", "--plugins", str(tmp_path / "plugins"))
    out = tmp_path / "run"
    code, _, err = sweep(out, *args)
    assert code == 1, err
    assert err.strip().splitlines()[-1] == (
        f"error: 1 of 2 trials failed; their errors are in {out / 'trials' / 'TRIAL_ID' / 'trial.json'} "
        "(error, traceback); run the same command again to retry them"
    )
    first = trials(out)
    assert first["killed--cpu--s0"]["status"] == "failed" and "exit code -9" in first["killed--cpu--s0"]["error"]
    assert first["baseline--cpu--s0"]["status"] == "completed"

    code, out_text, err = sweep(out, *args, "--no-retry")
    assert code == 1, err
    assert "2 trials, 0 to run" in out_text
    assert trials(out) == first

    marker.unlink()  # the memory is back
    code, out_text, err = sweep(out, *args)
    assert code == 0, err
    assert "2 trials, 1 to run" in out_text and "retried 1 failed trial(s): 1 completed" in out_text
    again = trials(out)
    assert again["killed--cpu--s0"]["status"] == "completed"
    [attempt] = again["killed--cpu--s0"]["attempts"]
    assert attempt["status"] == "failed" and "exit code -9" in attempt["error"] and attempt["finished_at"]
    assert again["baseline--cpu--s0"] == first["baseline--cpu--s0"]  # a result: kept, not re-run
    steps = [p["step"] for p in RunStore(out).read_metrics("killed--cpu--s0")]
    assert steps == sorted(set(steps)) and steps[-1] == 6


def test_store_plans_results_kept_failures_retried_and_attempts_carried(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    for status in ("completed", "diverged", "skipped", "failed", "interrupted", "running"):
        store.write_trial({"trial_id": status, "status": status, "error": None})
    keeping = RunStore(tmp_path, retry_failed=False)
    assert all(store.is_finished(t) for t in ("completed", "diverged", "skipped"))
    assert not store.is_finished("failed") and keeping.is_finished("failed") and store.has_ended("failed")
    assert not any(keeping.is_finished(t) for t in ("interrupted", "running", "never-ran"))
    store.write_trial({"trial_id": "retried", "status": "failed", "error": "boom", "started_at": "t0"})
    store.write_trial({"trial_id": "retried", "status": "running", "error": None})  # the retry starts
    store.write_trial({"trial_id": "retried", "status": "failed", "error": "bang", "started_at": "t1"})
    store.write_trial({"trial_id": "retried", "status": "completed", "error": None})  # the second retry
    record = store.read_trial("retried")
    assert [a["error"] for a in record["attempts"]] == ["boom", "bang"]
    assert [a["started_at"] for a in record["attempts"]] == ["t0", "t1"]
    assert store.read_trial("completed").get("attempts") is None


def test_summary_lines_count_failures_and_retries(tmp_path: Path) -> None:
    records = [
        {"trial_id": "a", "status": "completed"},
        {"trial_id": "b", "status": "diverged"},
        {"trial_id": "c", "status": "skipped"},
    ]
    assert failures_line(records, tmp_path) is None
    full = {"trial_id": "d", "status": "failed", "error": "DiskFull: no space left on /x/y (0 B free there)"}
    assert failures_line([*records, full], tmp_path).startswith(
        "1 of 4 trials failed (no space left on /x/y (0 B free there)); their errors are in"
    )
    assert retry_line([*records, full], ["a", "d"]) == "retried 2 failed trial(s): 1 completed, 1 failed"
    assert retry_line(records, []) is None


def test_speed_failures_are_told_from_devices_with_nothing_to_compare() -> None:
    speed = {
        "devices": {
            "cpu": {"variants": {"baseline": {"speed_ratio": 1.0}, "x": {"error": "RuntimeError: no"}}},
            "cuda": {"skipped": "no CUDA device on this machine"},
            "mps": {"skipped": "the baseline 'baseline' failed to step: boom", "failed": True},
        }
    }
    assert failed_measurements(speed) == ["x on cpu", "mps"]


def test_speed_exits_1_when_a_measurement_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from minigpt import progress

    measured = {"devices": {"cpu": {"variants": {"x": {"error": "RuntimeError: no"}}}}}
    monkeypatch.setattr(progress, "measure_speed", lambda console, run_dir, rounds: measured)
    code, _, err = run_cli(["speed", str(tmp_path)], monkeypatch, capsys)
    assert code == 1
    assert err.strip().splitlines() == ["error: the speed of x on cpu could not be measured"]


@pytest.mark.slow
def test_a_trial_killed_mid_write_leaves_no_temporary_file(sweep: Sweep, tmp_path: Path) -> None:  # noqa: F811
    faulty_plugin(tmp_path / "plugins", "killedsave", KILLED_MID_CHECKPOINT)
    out = tmp_path / "run"
    code, _, err = sweep(out, "--variants", "killedsave", "--max-steps", "6", "--plugins", str(tmp_path / "plugins"))
    assert code == 1, err
    assert "exit code -9" in trials(out)["killedsave--cpu--s0"]["error"]
    assert not leftovers(out)  # the sweep removed what the dead writer left
    assert_every_json_whole(out)


def test_report_exits_0_whatever_the_trials_statuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    run = make_run(tmp_path / "failed", {}, failed=True)
    code, out, err = run_cli(["report", str(run), "--out", str(tmp_path / "report")], monkeypatch, capsys)
    assert code == 0, err
    assert (tmp_path / "report" / "report.html").is_file()


def test_bench_exit_codes_are_the_commands_not_pytests() -> None:
    assert [command_exit_code(code) for code in (0, 1, 2, 3, 4, 5)] == [0, 1, 130, 1, 2, 1]


def test_sigterm_becomes_an_interrupt_with_its_own_exit_code() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), sigterm_as_interrupt():
        signal.raise_signal(signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) == previous
    assert exit_code(Terminated()) == 143 and exit_code(KeyboardInterrupt()) == 130


# --- SIGTERM during a checkpoint, files cut short ------------------------------------------------


@pytest.mark.slow
def test_sigterm_during_a_checkpoint_write_leaves_every_json_whole_and_the_next_run_resumes(
    sweep: Sweep,  # noqa: F811
    tmp_path: Path,
) -> None:
    marker = faulty_plugin(tmp_path / "plugins", "slowsave", SLOW_CHECKPOINT)
    args = ("--variants", "slowsave,baseline", "--max-steps", "6", "--plugins", str(tmp_path / "plugins"))
    out = tmp_path / "run"
    process = start_sweep(out, *args, sigint_ignored=True)  # the trial must not inherit an ignored SIGINT
    try:
        wait_for(lambda: (tmp_path / "plugins" / "writing").exists())
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143, stderr
    assert "run the same command again to resume" in " ".join(stdout.split())
    assert_every_json_whole(out)
    assert not leftovers(out)
    interrupted = trials(out)["slowsave--cpu--s0"]
    assert interrupted["status"] == "interrupted"
    assert interrupted["precision"] == "fp32"  # written by the trial itself, not by the sweep after a kill
    marker.unlink()
    code, out_text, err = sweep(out, *args)
    assert code == 0, err
    assert "2 trials, 2 to run" in out_text
    assert {t["status"] for t in trials(out).values()} == {"completed"}


@pytest.mark.slow
def test_a_truncated_trial_json_is_run_again_with_one_warning(
    sweep: Sweep,  # noqa: F811
    tmp_path: Path,
) -> None:
    record = tmp_path / "trials" / "baseline--cpu--s0" / "trial.json"
    record.parent.mkdir(parents=True)
    record.write_text('{"trial_id": "baseline--cpu--s0", "status": "compl')  # the machine crashed mid-write
    code, out, err = sweep(tmp_path, "--variants", "baseline", "--max-steps", "3")
    assert code == 0, err
    assert [line for line in err.splitlines() if "warning" in line] == [
        f"warning: {record} is unreadable (cut short?); running baseline--cpu--s0 again"
    ]
    assert "1 trials, 1 to run" in out
    assert trials(tmp_path)["baseline--cpu--s0"]["status"] == "completed"


def test_a_metrics_line_cut_short_is_read_without_it(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    path = store.trial_dir("t") / "metrics.jsonl"
    path.parent.mkdir(parents=True)
    points = [{"step": 5, "val_loss": 2.5}, {"step": 10, "val_loss": 2.1}]
    path.write_text("".join(json.dumps(p) + "\n" for p in points) + '{"step": 15, "val_lo')
    assert store.read_metrics("t") == points
