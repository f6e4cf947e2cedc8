"""`minigpt-bench run`: the plan, every summary field, isolation of failures, divergence,
resume after kill -9, the lock, absent devices and Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from minigpt.store import RunStore

from .conftest import SHAKESPEARE, TINY_SET, cli, subprocess_env

SUMMARY_FIELDS = (
    "variant", "device", "device_name", "seed", "params", "best_val_loss", "final_val_loss", "steps", "tokens",
    "wall_seconds", "tokens_per_sec", "step_ms_p50", "step_ms_p90", "peak_memory_mb", "flops_per_token", "mfu",
    "time_to_target_s", "error", "status", "config", "changed", "threads",
)  # fmt: skip

RAISING_PLUGIN = """
from torch import nn
from minigpt import variant
from minigpt.components import mlp


@mlp.register("exploding")
class Exploding(nn.Module):
    def __init__(self, cfg):
        super().__init__()

    def forward(self, x):
        raise RuntimeError("this MLP always fails")


@variant("exploding", "an MLP that raises")
def exploding(cfg):
    return cfg.replace(mlp="exploding")
"""


def sweep(out: Path, *args: str) -> subprocess.CompletedProcess:
    return cli("run", "--devices", "cpu", "--data", str(SHAKESPEARE), "--out", str(out), "--quiet", "--no-report",
               "--no-speed", *TINY_SET, *args)  # fmt: skip


def trials(out: Path) -> dict[str, dict]:
    return {t["trial_id"]: t for t in RunStore(out).trials()}


def test_two_variants_two_seeds_write_four_trials_with_every_summary_field(tmp_path: Path) -> None:
    result = sweep(tmp_path, "--variants", "baseline,nope", "--seeds", "0,1", "--max-steps", "12", "--target-loss", "9")
    assert result.returncode == 0, result.stderr
    found = trials(tmp_path)
    assert set(found) == {f"{v}--cpu--s{s}" for v in ("baseline", "nope") for s in (0, 1)}
    for trial in found.values():
        assert trial["status"] == "completed"
        missing = [f for f in SUMMARY_FIELDS if f not in trial]
        assert not missing, missing
        assert trial["steps"] == 12 and trial["tokens"] == 12 * 4 * 16
        assert 0 < trial["mfu"] < 1
        assert trial["time_to_target_s"] is not None  # target 9 is reached at the first evaluation
        points = RunStore(tmp_path).read_metrics(trial["trial_id"])
        assert [p["step"] for p in points if p["val_loss"] is not None] == [5, 10, 12]
        assert (tmp_path / "trials" / trial["trial_id"] / "model.safetensors").is_file()
    assert found["nope--cpu--s0"]["changed"] == {"position": "none"}
    sweep_json = json.loads((tmp_path / "sweep.json").read_text())
    assert sweep_json["peak_flops"]["cpu"]["fp32"] > 1e9
    assert all(t["precision"] == "fp32" and t["peak_flops"] == sweep_json["peak_flops"]["cpu"]["fp32"]
               for t in found.values())  # fmt: skip
    assert sweep_json["environment"]["torch"] == torch.__version__
    assert "results:" in result.stdout


def test_a_raising_variant_fails_and_the_others_complete(tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "exploding.py").write_text(RAISING_PLUGIN)
    result = sweep(tmp_path / "run", "--variants", "exploding,baseline", "--max-steps", "6",
                   "--plugins", str(tmp_path / "plugins"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = trials(tmp_path / "run")
    assert found["exploding--cpu--s0"]["status"] == "failed"
    assert "this MLP always fails" in found["exploding--cpu--s0"]["error"]
    assert "Traceback" in found["exploding--cpu--s0"]["traceback"]
    assert found["baseline--cpu--s0"]["status"] == "completed"


def test_an_absurd_learning_rate_diverges(tmp_path: Path) -> None:
    result = sweep(tmp_path, "--variants", "baseline", "--max-steps", "60", "--set", "lr=1e12", "--set", "min_lr=1e12",
                   "--set", "grad_clip=0")  # fmt: skip
    assert result.returncode == 0, result.stderr
    trial = trials(tmp_path)["baseline--cpu--s0"]
    assert trial["status"] == "diverged"
    assert "nan" in trial["error"] or "inf" in trial["error"]


def test_absent_devices_are_skipped_with_a_reason(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = sweep(tmp_path, "--variants", "baseline", "--max-steps", "3", "--devices", "cuda")
    assert result.returncode == 0, result.stderr
    trial = trials(tmp_path)["baseline--cuda--s0"]
    assert trial["status"] == "skipped"
    assert "no CUDA device" in trial["error"]


def start_sweep(out: Path, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "minigpt.cli", "run", "--devices", "cpu", "--data", str(SHAKESPEARE),
               "--out", str(out), "--quiet", "--no-report", "--no-speed", *TINY_SET, *args]  # fmt: skip
    return subprocess.Popen(command, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, timeout: float = 60) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the sweep never got there")
        time.sleep(0.05)


def statuses(out: Path) -> list[str]:
    return [t["status"] for t in RunStore(out).trials()]


def test_a_sweep_killed_with_sigkill_resumes_and_runs_each_trial_once(tmp_path: Path) -> None:
    args = ("--variants", "baseline,nope", "--seeds", "0,1", "--max-steps", "400", "--set", "eval_interval=100")
    process = start_sweep(tmp_path, *args)
    wait_for(lambda: statuses(tmp_path).count("completed") == 1 and "running" in statuses(tmp_path))
    process.kill()
    process.wait()
    running = next(t["trial_id"] for t in RunStore(tmp_path).trials() if t["status"] == "running")
    metrics = tmp_path / "trials" / running / "metrics.jsonl"
    size = metrics.stat().st_size if metrics.exists() else 0
    time.sleep(1.5)
    assert (metrics.stat().st_size if metrics.exists() else 0) == size  # its trial's process ended with it
    first_done = {t["trial_id"]: t for t in RunStore(tmp_path).trials() if t["status"] == "completed"}
    result = sweep(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    assert "4 trials, 3 to run" in result.stdout
    found = trials(tmp_path)
    assert len(found) == 4 and all(t["status"] == "completed" for t in found.values())
    for trial_id, before in first_done.items():
        assert found[trial_id]["started_at"] == before["started_at"]  # kept, not re-run
    for path in tmp_path.rglob("*.json"):
        json.loads(path.read_text())
    for trial_id in found:
        steps = [p["step"] for p in RunStore(tmp_path).read_metrics(trial_id)]
        assert steps == sorted(set(steps)) and steps[-1] == 400


def test_a_second_concurrent_run_is_refused(tmp_path: Path) -> None:
    with RunStore(tmp_path).lock():
        result = sweep(tmp_path, "--variants", "baseline", "--max-steps", "3")
    assert result.returncode == 2
    assert "another minigpt-bench run is writing to" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_ctrl_c_marks_the_running_trial_interrupted_and_exits_130(tmp_path: Path) -> None:
    process = start_sweep(tmp_path, "--variants", "baseline,nope", "--max-steps", "100000")
    wait_for(lambda: (tmp_path / "trials/baseline--cpu--s0/metrics.jsonl").is_file()
             and (tmp_path / "trials/baseline--cpu--s0/metrics.jsonl").stat().st_size > 0)  # fmt: skip
    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 130
    assert trials(tmp_path)["baseline--cpu--s0"]["status"] == "interrupted"
    assert "nope--cpu--s0" not in trials(tmp_path)
    assert "interrupted" in stdout


def test_max_vocab_reaches_the_corpus_and_the_checkpoint(tmp_path: Path) -> None:
    result = sweep(tmp_path, "--variants", "baseline", "--max-steps", "3", "--max-vocab", "20")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "sweep.json").read_text())["max_vocab"] == 20
    model_json = json.loads((tmp_path / "trials/baseline--cpu--s0/model.json").read_text())
    assert model_json["config"]["vocab_size"] == 20
    assert len(model_json["vocab"]["chars"]) == 20


def test_fresh_starts_the_directory_over(tmp_path: Path) -> None:
    assert sweep(tmp_path, "--variants", "nope", "--max-steps", "3").returncode == 0
    assert sweep(tmp_path, "--variants", "baseline", "--max-steps", "3", "--fresh").returncode == 0
    assert set(trials(tmp_path)) == {"baseline--cpu--s0"}


def test_a_rerun_with_another_configuration_is_refused_and_touches_nothing(tmp_path: Path) -> None:
    assert sweep(tmp_path, "--variants", "baseline", "--max-steps", "3").returncode == 0
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file() and path.name != ".lock"}
    for change in (["--set", "n_embd=32"], ["--max-steps", "4"], ["--target-loss", "1.5"], ["--set", "lr=1e-3"]):
        result = sweep(tmp_path, "--variants", "baseline", "--max-steps", "3", *change)
        assert result.returncode == 2, (change, result.stdout)
        assert len(result.stderr.strip().splitlines()) == 1
        assert "another sweep" in result.stderr and "--fresh" in result.stderr
    assert "n_embd: 16 there, 32 now" in sweep(tmp_path, "--variants", "baseline", "--max-steps", "3",
                                               "--set", "n_embd=32").stderr  # fmt: skip
    after = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file() and path.name != ".lock"}
    assert after == before


def test_another_corpus_is_another_sweep(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(SHAKESPEARE.read_text()[:50_000])
    assert sweep(tmp_path / "run", "--variants", "baseline", "--max-steps", "3").returncode == 0
    result = sweep(tmp_path / "run", "--variants", "baseline", "--max-steps", "3", "--data", str(corpus))
    assert result.returncode == 2 and "corpus" in result.stderr


def test_more_variants_and_seeds_grow_the_same_sweep(tmp_path: Path) -> None:
    assert sweep(tmp_path, "--variants", "baseline", "--max-steps", "3").returncode == 0
    first = trials(tmp_path)["baseline--cpu--s0"]
    result = sweep(tmp_path, "--variants", "baseline,nope", "--seeds", "0,1", "--max-steps", "3")
    assert result.returncode == 0, result.stderr
    assert "4 trials, 3 to run" in result.stdout
    assert trials(tmp_path)["baseline--cpu--s0"]["started_at"] == first["started_at"]
    sweep_json = json.loads((tmp_path / "sweep.json").read_text())
    assert sweep_json["variants"] == ["baseline", "nope"] and sweep_json["seeds"] == [0, 1]
    assert sweep(tmp_path, "--variants", "nope", "--max-steps", "3").returncode == 0  # a subset is the same sweep
    assert json.loads((tmp_path / "sweep.json").read_text())["variants"] == ["baseline", "nope"]


def test_variant_order_rotates_across_seeds(tmp_path: Path) -> None:
    from minigpt.sweep import rotated

    assert [rotated(["a", "b", "c"], turn) for turn in range(4)] == [
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]
    ]  # fmt: skip


def test_peak_memory_is_each_trials_own(tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "wide.py").write_text(
        "from minigpt import variant\n\n\n"
        "@variant('wide', 'a much wider model')\n"
        "def wide(cfg):\n    return cfg.replace(n_embd=1024, batch_size=64, block_size=64)\n"
    )
    # the wide trial runs first: in one process, the tiny one would inherit its high-water mark
    result = sweep(tmp_path / "run", "--variants", "wide,baseline", "--max-steps", "2",
                   "--plugins", str(tmp_path / "plugins"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = trials(tmp_path / "run")
    assert found["baseline--cpu--s0"]["peak_memory_mb"] < found["wide--cpu--s0"]["peak_memory_mb"] - 100
