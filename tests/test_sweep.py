"""`minigpt-bench run`: the plan, every summary field, isolation of failures, divergence,
resume after kill -9, the lock, absent devices, Ctrl-C, refusing another plan and the executors.

Sweeps run in this process (their trials still get processes of their own); only kill -9, which
needs a sweep process to kill, starts `minigpt-bench` as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from minigpt.config import Config
from minigpt.data import Corpus
from minigpt.errors import UserError
from minigpt.executors import executor_options
from minigpt.ray_executor import RayOptions
from minigpt.runner import run_sweep
from minigpt.store import RunStore
from minigpt.sweep import corpus_digest, first_difference, merged_sweep_json, plan_sweep, rotated
from minigpt.train import Budget
from minigpt.trial import ended_record
from minigpt.variants import discover

from .conftest import ONE_SEED, SHAKESPEARE, TINY_SET, run_cli, subprocess_env

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


Sweep = Callable[..., tuple[int, str, str]]  # (out, *args) -> (exit code, stdout, stderr)


@pytest.fixture
def sweep(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> Sweep:
    """`minigpt-bench run` on tiny models, in this process."""

    def run(out: Path, *args: str) -> tuple[int, str, str]:
        command = ["run", "--devices", "cpu", "--data", str(SHAKESPEARE), "--out", str(out), "--quiet", "--no-report",
                   "--no-speed", *ONE_SEED, *TINY_SET, *args]  # fmt: skip
        return run_cli(command, monkeypatch, capsys)

    return run


def trials(out: Path) -> dict[str, dict]:
    return {t["trial_id"]: t for t in RunStore(out).trials()}


@pytest.mark.slow
def test_two_variants_two_seeds_write_four_trials_with_every_summary_field(sweep: Sweep, tmp_path: Path) -> None:
    code, out, err = sweep(tmp_path, "--variants", "baseline,nope", "--seeds", "0,1", "--max-steps", "12",
                           "--target-loss", "9")  # fmt: skip
    assert code == 0, err
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
    assert "results:" in out


@pytest.mark.slow
def test_a_raising_variant_fails_and_the_others_complete(sweep: Sweep, tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "exploding.py").write_text(RAISING_PLUGIN)
    code, _, err = sweep(tmp_path / "run", "--variants", "exploding,baseline", "--max-steps", "6",
                         "--plugins", str(tmp_path / "plugins"))  # fmt: skip
    assert code == 1, err
    assert err.strip().splitlines()[-1].startswith("error: 1 of 2 trials failed; their errors are in")
    found = trials(tmp_path / "run")
    assert found["exploding--cpu--s0"]["status"] == "failed"
    assert "this MLP always fails" in found["exploding--cpu--s0"]["error"]
    assert "Traceback" in found["exploding--cpu--s0"]["traceback"]
    assert found["baseline--cpu--s0"]["status"] == "completed"


@pytest.mark.slow
def test_an_absurd_learning_rate_diverges(sweep: Sweep, tmp_path: Path) -> None:
    code, _, err = sweep(tmp_path, "--variants", "baseline", "--max-steps", "60", "--set", "lr=1e12",
                         "--set", "min_lr=1e12", "--set", "grad_clip=0")  # fmt: skip
    assert code == 0, err
    trial = trials(tmp_path)["baseline--cpu--s0"]
    assert trial["status"] == "diverged"
    assert "nan" in trial["error"] or "inf" in trial["error"]


def test_absent_devices_are_skipped_with_a_reason(sweep: Sweep, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = sweep(tmp_path, "--variants", "baseline", "--max-steps", "3", "--devices", "cuda")
    assert code == 0, err
    trial = trials(tmp_path)["baseline--cuda--s0"]
    assert trial["status"] == "skipped"
    assert "no CUDA device" in trial["error"]


def start_sweep(out: Path, *args: str, sigint_ignored: bool = False) -> subprocess.Popen:
    """`minigpt-bench run` in a process of its own; `sigint_ignored` starts it as a shell starts a
    background job (and as CI runners start test suites): with SIGINT ignored, inherited."""
    command = [sys.executable, "-m", "minigpt.cli", "run", "--devices", "cpu", "--data", str(SHAKESPEARE),
               "--out", str(out), "--quiet", "--no-report", "--no-speed", *ONE_SEED, *TINY_SET, *args]  # fmt: skip
    ignore_sigint = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
    return subprocess.Popen(
        command, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=ignore_sigint,
    )  # fmt: skip


def wait_for(condition, timeout: float = 60) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the sweep never got there")
        time.sleep(0.05)


def statuses(out: Path) -> list[str]:
    return [t["status"] for t in RunStore(out).trials()]


STALLING_PLUGIN = """
import os
import time
from pathlib import Path

from minigpt import variant
from minigpt.components import mlp
from minigpt.components.mlps import GeluMLP

MARKER = Path(__file__).with_name("stall.armed")


@mlp.register("stalling")
class Stalling(GeluMLP):
    \"\"\"A GELU MLP whose first training step waits while the marker exists, its process's ID
    written beside the plugin: a trial that is certainly running for as long as a test needs.\"\"\"

    def forward(self, x):
        if self.training and MARKER.exists():
            MARKER.with_name("stalled.pid").write_text(str(os.getpid()))
            while MARKER.exists():
                time.sleep(0.01)
        return super().forward(x)


@variant("stall", "a GELU MLP that waits at its first step while its marker exists")
def stall(cfg):
    return cfg.replace(mlp="stalling")
"""


def process_ended(pid: int) -> bool:
    """Whether the process is gone (or a zombie: ended, not yet reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
    except OSError:  # no /proc here: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


@pytest.mark.slow
def test_a_sweep_killed_with_sigkill_resumes_and_runs_each_trial_once(sweep: Sweep, tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "stall.py").write_text(STALLING_PLUGIN)
    (plugins / "stall.armed").touch()
    out = tmp_path / "run"
    args = ("--variants", "baseline,stall", "--plugins", str(plugins), "--seeds", "0,1", "--max-steps", "12")
    process = start_sweep(out, *args)
    try:
        wait_for(lambda: (plugins / "stalled.pid").is_file(), timeout=300)  # stall s0 runs, after baseline s0
        process.kill()
        process.wait()
        assert statuses(out) == ["completed", "running"]
        stalled = int((plugins / "stalled.pid").read_text())
        wait_for(lambda: process_ended(stalled), timeout=120)  # its trial's process ended with it
    finally:
        process.kill()
        (plugins / "stall.armed").unlink()  # a trial left behind by a failure goes on and ends
    first_done = {t["trial_id"]: t for t in RunStore(out).trials() if t["status"] == "completed"}
    code, stdout, err = sweep(out, *args)
    assert code == 0, err
    assert "4 trials, 3 to run" in stdout
    found = trials(out)
    assert len(found) == 4 and all(t["status"] == "completed" for t in found.values())
    for trial_id, before in first_done.items():
        assert found[trial_id]["started_at"] == before["started_at"]  # kept, not re-run
    for path in out.rglob("*.json"):
        json.loads(path.read_text())
    for trial_id in found:
        steps = [p["step"] for p in RunStore(out).read_metrics(trial_id)]
        assert steps == sorted(set(steps)) and steps[-1] == 12


def test_a_second_concurrent_run_is_refused(sweep: Sweep, tmp_path: Path) -> None:
    with RunStore(tmp_path).lock():
        code, _, err = sweep(tmp_path, "--variants", "baseline", "--max-steps", "3")
    assert code == 2
    assert "another minigpt-bench run is writing to" in err
    assert len(err.strip().splitlines()) == 1


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt in this process, as in a terminal's foreground process,
    even where the test runner was started with SIGINT ignored (as CI runners and background jobs
    are): otherwise the Ctrl-C this test sends would never arrive."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.slow
@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_marks_the_running_trial_interrupted_and_exits_130(sweep: Sweep, tmp_path: Path) -> None:
    metrics = tmp_path / "trials/baseline--cpu--s0/metrics.jsonl"
    sent = threading.Event()

    def press_ctrl_c_once_training() -> None:
        try:
            wait_for(lambda: metrics.is_file() and metrics.stat().st_size > 0)
        finally:  # even if training never started: the sweep must not run its 100,000 steps
            os.kill(os.getpid(), signal.SIGINT)  # as a terminal does: to the sweep's process, not the trial's
            sent.set()

    threading.Thread(target=press_ctrl_c_once_training, daemon=True).start()
    code, out, _ = sweep(tmp_path, "--variants", "baseline,nope", "--max-steps", "100000")
    assert sent.is_set() and code == 130
    assert trials(tmp_path)["baseline--cpu--s0"]["steps"] < 100_000  # the trial's own record: it stopped
    assert trials(tmp_path)["baseline--cpu--s0"]["status"] == "interrupted"
    assert "nope--cpu--s0" not in trials(tmp_path)
    assert "interrupted" in out


@pytest.mark.slow
def test_max_vocab_reaches_the_corpus_and_the_checkpoint(sweep: Sweep, tmp_path: Path) -> None:
    code, _, err = sweep(tmp_path, "--variants", "baseline", "--max-steps", "3", "--max-vocab", "20")
    assert code == 0, err
    assert json.loads((tmp_path / "sweep.json").read_text())["max_vocab"] == 20
    model_json = json.loads((tmp_path / "trials/baseline--cpu--s0/model.json").read_text())
    assert model_json["config"]["vocab_size"] == 20
    assert len(model_json["vocab"]["chars"]) == 20


@pytest.mark.slow
def test_fresh_starts_the_directory_over(sweep: Sweep, tmp_path: Path) -> None:
    assert sweep(tmp_path, "--variants", "nope", "--max-steps", "3")[0] == 0
    assert sweep(tmp_path, "--variants", "baseline", "--max-steps", "3", "--fresh")[0] == 0
    assert set(trials(tmp_path)) == {"baseline--cpu--s0"}


@pytest.mark.slow
def test_a_rerun_with_another_configuration_is_refused_in_one_line_and_touches_nothing(
    sweep: Sweep, tmp_path: Path
) -> None:
    assert sweep(tmp_path, "--variants", "baseline", "--max-steps", "3")[0] == 0
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file() and path.name != ".lock"}
    code, out, err = sweep(tmp_path, "--variants", "baseline", "--max-steps", "3", "--set", "n_embd=32")
    assert code == 2, out
    assert err.strip().splitlines() == [
        f"error: {tmp_path} holds another sweep (base_config n_embd: 16 there, 32 now); "
        "use --fresh to start over, or another --out"
    ]
    after = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file() and path.name != ".lock"}
    assert after == before


def identity(**changes: object) -> dict:
    """A sweep identity as plan_sweep records it, with `changes` made."""
    same = {
        "base_config": Config().to_dict(), "budget": {"max_steps": 3, "max_tokens": None}, "target_loss": 2.0,
        "corpus": "abc", "max_vocab": None, "plugins": [], "variants": {"baseline": Config().to_dict()},
    }  # fmt: skip
    return {**same, **changes}


def test_every_part_of_a_plan_tells_two_sweeps_apart() -> None:
    assert first_difference(identity(), identity()) is None
    assert first_difference(identity(), identity(budget={"max_steps": 4, "max_tokens": None})) == (
        "budget max_steps: 3 there, 4 now"
    )
    assert first_difference(identity(), identity(target_loss=1.5)) == "target_loss: 2.0 there, 1.5 now"
    assert first_difference(identity(), identity(corpus="abd")) == "corpus: 'abc' there, 'abd' now"
    assert first_difference(identity(), identity(plugins=["/p.py"])) == "plugins: [] there, ['/p.py'] now"
    lr = identity(variants={"baseline": Config(lr=1e-3).to_dict()})
    assert first_difference(identity(), lr) == "variant baseline lr: 0.003 there, 0.001 now"


def test_more_or_fewer_variants_are_the_same_plan() -> None:
    nope = Config(position="none").to_dict()
    more = identity(variants={"baseline": Config().to_dict(), "nope": nope})
    assert first_difference(identity(), more) is None
    assert first_difference(more, identity(variants={"nope": nope})) is None


def test_another_corpus_has_another_digest() -> None:
    text = SHAKESPEARE.read_text()[:20_000]
    digests = {corpus_digest(Corpus.from_text(t, "t")) for t in (text, text, text[:-1] + "?")}
    assert len(digests) == 2


def test_sweep_json_keeps_the_union_of_every_runs_variants_seeds_and_trials() -> None:
    first = {"variants": ["baseline"], "devices": ["cpu"], "seeds": [0], "trials": ["baseline--cpu--s0"], "x": 1}
    nope = Config(position="none").to_dict()
    second = {"variants": ["nope"], "devices": ["cpu"], "seeds": [1], "trials": ["nope--cpu--s1"], "x": 2}
    merged = merged_sweep_json(
        {**first, "identity": identity()}, second, identity(variants={"nope": nope})
    )  # fmt: skip
    assert merged["variants"] == ["baseline", "nope"] and merged["seeds"] == [0, 1] and merged["x"] == 2
    assert merged["trials"] == ["baseline--cpu--s0", "nope--cpu--s1"]
    assert merged["identity"]["variants"] == {"baseline": Config().to_dict(), "nope": nope}


@pytest.mark.slow
def test_more_variants_and_seeds_grow_the_same_sweep(sweep: Sweep, tmp_path: Path) -> None:
    assert sweep(tmp_path, "--variants", "baseline", "--max-steps", "3")[0] == 0
    first = trials(tmp_path)["baseline--cpu--s0"]
    code, out, err = sweep(tmp_path, "--variants", "baseline,nope", "--seeds", "0,1", "--max-steps", "3")
    assert code == 0, err
    assert "4 trials, 3 to run" in out
    assert trials(tmp_path)["baseline--cpu--s0"]["started_at"] == first["started_at"]
    sweep_json = json.loads((tmp_path / "sweep.json").read_text())
    assert sweep_json["variants"] == ["baseline", "nope"] and sweep_json["seeds"] == [0, 1]


def test_variant_order_rotates_across_seeds() -> None:
    assert [rotated(["a", "b", "c"], turn) for turn in range(4)] == [
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]
    ]  # fmt: skip


@pytest.mark.slow
def test_peak_memory_is_each_trials_own(sweep: Sweep, tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "wide.py").write_text(
        "from minigpt import variant\n\n\n"
        "@variant('wide', 'a much wider model')\n"
        "def wide(cfg):\n    return cfg.replace(n_embd=1024, batch_size=64, block_size=64)\n"
    )
    # the wide trial runs first: in one process, the tiny one would inherit its high-water mark
    code, _, err = sweep(tmp_path / "run", "--variants", "wide,baseline", "--max-steps", "2",
                         "--plugins", str(tmp_path / "plugins"))  # fmt: skip
    assert code == 0, err
    found = trials(tmp_path / "run")
    assert found["baseline--cpu--s0"]["peak_memory_mb"] < found["wide--cpu--s0"]["peak_memory_mb"] - 100


# --- executors -------------------------------------------------------------------------------


def test_an_unknown_executor_is_one_line_with_the_closest_names(sweep: Sweep, tmp_path: Path) -> None:
    code, _, err = sweep(tmp_path, "--executor", "rey")
    assert code == 2
    assert err.strip().splitlines() == ["error: unknown executor 'rey'; did you mean ray?"]
    assert not tmp_path.joinpath("sweep.json").exists()


def test_executor_flags_reach_their_own_executors_options_only() -> None:
    flags = {"ray_address": "auto", "ray_cpus_per_trial": 2}
    assert executor_options("ray", flags) == RayOptions(address="auto", cpus_per_trial=2)
    assert executor_options("ray", dict.fromkeys(flags)) == RayOptions()
    with pytest.raises(UserError, match="--ray-address is an option of --executor ray, not local"):
        executor_options("local", {**flags, "ray_cpus_per_trial": None})
    with pytest.raises(UserError, match="--ray-cpus-per-trial must be at least 1, got 0"):
        executor_options("ray", {"ray_cpus_per_trial": 0})


class Skipping:
    """An executor of its own: it records every trial as skipped, and what it was given."""

    def __init__(self) -> None:
        self.opened = self.closed = False
        self.ran: list[str] = []

    def prepare(self) -> None:
        pass

    def open(self) -> Skipping:
        return self

    def __enter__(self) -> Skipping:
        self.opened = True
        return self

    def __exit__(self, *error: object) -> None:
        self.closed = True

    def __call__(self, specs, sweep) -> None:  # noqa: ANN001
        store = sweep.store
        for spec in specs:
            self.ran.append(spec.id)
            store.write_trial(ended_record(spec, sweep.settings, "skipped", "run elsewhere"))


def test_run_sweep_runs_the_trials_with_the_executor_its_options_open(tmp_path: Path) -> None:
    plan = plan_sweep(discover([]), "baseline,nope", ["cpu"], [0], Config(n_layer=1, n_embd=16, block_size=16),
                      str(SHAKESPEARE), Budget(max_steps=1))  # fmt: skip
    executor = Skipping()
    records = run_sweep(plan, RunStore(tmp_path), executor=executor)
    assert executor.ran == ["baseline--cpu--s0", "nope--cpu--s0"] and executor.opened and executor.closed
    assert [r["status"] for r in records] == ["skipped", "skipped"]
