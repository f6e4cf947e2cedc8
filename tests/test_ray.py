"""The Ray executor on a local two-CPU Ray instance: the same runs/ layout as the local
executor, failing and crashing trials, Ctrl-C and resume; and a sweep on a real two-node
cluster started with `ray start` and token authentication, as the README sets one up."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the Ray executor needs the [ray] extra (pip install 'minigpt-bench[ray]')")
pytestmark = pytest.mark.slow  # every test here starts Ray

from typer.testing import CliRunner  # noqa: E402

from minigpt.config import Config  # noqa: E402
from minigpt.progress import concurrency_warning  # noqa: E402
from minigpt.ray_executor import RayOptions, RayUnavailable  # noqa: E402
from minigpt.runner import QuietObserver, run_sweep  # noqa: E402
from minigpt.store import RunStore  # noqa: E402
from minigpt.sweep import plan_sweep  # noqa: E402
from minigpt.train import Budget  # noqa: E402
from minigpt.variants import discover  # noqa: E402

from .conftest import ONE_SEED, TINY_SET, subprocess_env  # noqa: E402

RAY_ONLY_FIELDS = {"node", "concurrent"}  # where and beside whom a Ray trial ran
TINY = Config().replace(
    n_layer=1, n_embd=16, n_head=2, block_size=16, batch_size=4, eval_interval=4, eval_batches=2, warmup_steps=1
)

PLUGIN = """
import os
from pathlib import Path

from torch import nn

from minigpt import variant
from minigpt.components import mlp

ATTEMPTS = Path({attempts!r})


@mlp.register("ray-test-boom")
class Boom(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)

    def forward(self, x):
        raise RuntimeError("boom in forward")


@mlp.register("ray-test-crash")
class Crash(Boom):
    def forward(self, x):
        with ATTEMPTS.open("a") as handle:
            handle.write("attempt\\n")
        os._exit(1)  # the worker process dies, as when the kernel kills it


@variant("ray-test-boom", "raises in forward")
def boom(cfg):
    return cfg.replace(mlp="ray-test-boom")


@variant("ray-test-crash", "kills its worker in forward")
def crash(cfg):
    return cfg.replace(mlp="ray-test-crash")
"""


@pytest.fixture(scope="module")
def ray_instance():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_worker_niceness", "0")  # as the executor starts Ray: trials at normal priority
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ray")
    (root / "corpus.txt").write_text("To be, or not to be, that is the question.\n" * 60, encoding="utf-8")
    (root / "plugins").mkdir()
    (root / "plugins" / "ray_test_plugin.py").write_text(PLUGIN.format(attempts=str(root / "attempts")))
    return root


@pytest.fixture(autouse=True)
def no_driver_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver's matmul probe is the local executor's MFU denominator, not under test here."""
    monkeypatch.setattr("minigpt.runner.probe_devices", lambda devices, known: {})


@pytest.fixture(scope="module")
def registry(workspace: Path):
    return discover([workspace / "plugins"])  # once: a plugin's components register once per process


def plan(registry, workspace: Path, variants: str):  # noqa: ANN201
    return plan_sweep(
        registry,
        variants,
        ["cpu"],
        [0],
        TINY,
        str(workspace / "corpus.txt"),
        Budget(max_steps=8),
        options={"plugins": [str(workspace / "plugins")]},
    )


def layout(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")}


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


class StartsRecorder(QuietObserver):
    def __init__(self) -> None:
        self.started: list[str] = []

    def trial_started(self, spec) -> None:  # noqa: ANN001
        self.started.append(spec.id)


class InterruptAfterFirst(QuietObserver):
    """Ctrl-C as the first trial's result arrives, while the other is still queued or running."""

    def trial_finished(self, spec, record, resumed) -> None:  # noqa: ANN001
        if not resumed:
            raise KeyboardInterrupt


def test_ray_sweep_writes_the_local_layout(ray_instance, registry, workspace: Path, tmp_path: Path) -> None:
    sweep = plan(registry, workspace, "baseline,relu")
    local = run_sweep(sweep, RunStore(tmp_path / "local"))
    on_ray = run_sweep(sweep, RunStore(tmp_path / "ray"), executor=RayOptions())

    assert layout(tmp_path / "ray") == layout(tmp_path / "local")
    assert "trials/relu--cpu--s0/model.safetensors" in layout(tmp_path / "ray")
    for here, there in zip(local, on_ray, strict=True):
        assert there["status"] == "completed"
        assert set(there) - set(here) == RAY_ONLY_FIELDS and set(here) <= set(there)
        assert there["concurrent"] is False  # the default gives each cpu trial the whole node
        assert there["threads"] == 2  # torch used the CPUs Ray assigned
        assert there["best_val_loss"] == pytest.approx(here["best_val_loss"], rel=1e-4)  # same seed, same batches
        trial_dir = Path("trials") / there["trial_id"]
        ray_points = (tmp_path / "ray" / trial_dir / "metrics.jsonl").read_text().splitlines()
        local_points = (tmp_path / "local" / trial_dir / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(p)["step"] for p in ray_points] == [json.loads(p)["step"] for p in local_points]
        ray_meta = read_json(tmp_path / "ray" / trial_dir / "model.json")
        local_meta = read_json(tmp_path / "local" / trial_dir / "model.json")
        assert {**ray_meta, "val_loss": None} == {**local_meta, "val_loss": None}
    assert concurrency_warning(on_ray) is None


def test_a_failing_trial_is_failed_and_the_sweep_goes_on(
    ray_instance, registry, workspace: Path, tmp_path: Path
) -> None:
    sweep = plan(registry, workspace, "ray-test-boom,baseline")
    boom, baseline = run_sweep(sweep, RunStore(tmp_path / "ray"), executor=RayOptions(cpus_per_trial=1))
    run_sweep(sweep, RunStore(tmp_path / "local"))

    assert boom["status"] == "failed"
    assert boom["error"] == "RuntimeError: boom in forward"
    assert "Traceback" in boom["traceback"]
    assert baseline["status"] == "completed"
    assert layout(tmp_path / "ray") == layout(tmp_path / "local")  # failed: metrics.jsonl but no checkpoint
    assert boom["concurrent"] is True and baseline["concurrent"] is True  # one CPU each, two at once
    assert "2 trial(s) ran beside other trials" in concurrency_warning([boom, baseline])


def test_a_worker_that_dies_is_retried_once_then_failed(
    ray_instance, registry, workspace: Path, tmp_path: Path
) -> None:
    (crash,) = run_sweep(plan(registry, workspace, "ray-test-crash"), RunStore(tmp_path / "ray"), executor=RayOptions())

    assert crash["status"] == "failed"
    assert crash["error"].startswith("WorkerCrashedError")
    assert (workspace / "attempts").read_text().splitlines() == ["attempt", "attempt"]


def test_an_interrupted_ray_sweep_resumes(ray_instance, registry, workspace: Path, tmp_path: Path) -> None:
    sweep = plan(registry, workspace, "baseline,relu")
    store = RunStore(tmp_path / "ray")
    with pytest.raises(KeyboardInterrupt):
        run_sweep(sweep, store, InterruptAfterFirst(), executor=RayOptions())
    statuses = {r["trial_id"]: r["status"] for r in store.trials()}
    assert sorted(statuses.values()) == ["completed", "interrupted"]
    finished = next(t for t, s in statuses.items() if s == "completed")
    kept = store.read_trial(finished)

    observer = StartsRecorder()
    records = run_sweep(sweep, store, observer, executor=RayOptions())

    assert observer.started == [t for t, s in statuses.items() if s == "interrupted"]
    assert [r["status"] for r in records] == ["completed", "completed"]
    assert store.read_trial(finished) == kept


def test_cli_refuses_more_cpus_per_trial_than_a_node_has(ray_instance, workspace: Path, tmp_path: Path) -> None:
    from minigpt.cli import app

    args = ["run", "--variants", "baseline", "--devices", "cpu", *ONE_SEED, "--data", str(workspace / "corpus.txt")]
    args += ["--max-steps", "2", "--executor", "ray", "--ray-cpus-per-trial", "3", "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(app, args)

    assert isinstance(result.exception, RayUnavailable)
    assert "no node of the Ray cluster has 3 CPUs (largest: 2)" in str(result.exception)
    assert not (tmp_path / "run").exists()  # refused before anything was written


RAY_CLI = Path(sys.executable).with_name("ray")
START_TIMEOUT_S = 90


@dataclass
class Cluster:
    address: str
    env: dict[str, str]  # what a driver needs to join it: the shared token


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_node(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """`ray start --block` in a process group of its own: stopping that group stops exactly this
    node (`ray stop` would stop every Ray process of this user on the machine, other sessions' too)."""
    with log.open("w") as handle:
        command = [str(RAY_CLI), "start", "--block", "--num-cpus=1", "--object-store-memory=80000000", *args]
        return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


PORT_TRIES = 3


def start_on_free_ports(args: Callable[[], list[str]], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A started node, its ports (and the head's address) chosen afresh by `args` for each try:
    a port free_port() found can be taken by another process before Ray binds it, and a node
    that lost its port does not start."""
    for tries_left in reversed(range(PORT_TRIES)):
        ports = ["--node-ip-address=127.0.0.1", f"--dashboard-agent-listen-port={free_port()}"]
        node = start_node([*args(), *ports], env, log)
        try:
            wait_until_started(node, log)
            return node
        except AssertionError:
            stop_node(node)
            if not tries_left:
                raise
    raise AssertionError("unreachable")


def wait_until_started(node: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while "Ray runtime started" not in log.read_text(errors="replace"):
        if node.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"ray start did not start a node; its log ends:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


def stop_node(node: subprocess.Popen) -> None:
    """SIGTERM makes `ray start --block` take its node down (draining is off in the env); the
    group's SIGKILL is the backstop for a node that does not go in time."""
    try:
        os.killpg(node.pid, signal.SIGTERM)
        node.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(node.pid, signal.SIGKILL)
        node.wait()
    except ProcessLookupError:
        pass


def ray_status(cluster: Cluster, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [str(RAY_CLI), "status", f"--address={cluster.address}"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def wait_for_nodes(cluster: Cluster, count: int) -> tuple[int, str]:
    """The active nodes `ray status` lists, once they are `count` (a new node shows up there a
    few seconds after it started) or the time is up, and its output."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        status = ray_status(cluster, cluster.env)
        active = len(re.findall(r"node_[0-9a-f]+", status.stdout.partition("Active:")[2].partition("Pending:")[0]))
        if active == count or time.monotonic() > deadline:
            return active, status.stdout + status.stderr
        time.sleep(2)


@pytest.fixture
def two_node_cluster() -> Iterator[Cluster]:
    """A head and a second node on this machine, one CPU each, with token authentication: the
    token reaches the second node and the driver only through RAY_AUTH_MODE / RAY_AUTH_TOKEN
    (HOME is empty, so no ~/.ray/auth_token is read or written)."""
    if not RAY_CLI.is_file():
        pytest.skip(f"no ray command beside {sys.executable}")
    # Ray's socket paths must stay short (a Unix socket path holds about 107 bytes)
    root = Path(tempfile.mkdtemp(prefix="mgb-ray-"))
    (root / "home").mkdir()
    env = {
        **subprocess_env(),
        "HOME": str(root / "home"),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
        "RAY_worker_niceness": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    cluster = Cluster("", env)

    def head_args() -> list[str]:
        port = free_port()
        cluster.address = f"127.0.0.1:{port}"
        return ["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={root / 'tmp'}"]

    nodes: list[subprocess.Popen] = []
    try:
        for args, log in (
            (head_args, root / "head.log"),
            (lambda: [f"--address={cluster.address}"], root / "node.log"),
        ):
            nodes.append(start_on_free_ports(args, env, log))
        yield cluster
    finally:
        for node in reversed(nodes):
            stop_node(node)
        shutil.rmtree(root, ignore_errors=True)


def test_a_sweep_runs_on_a_two_node_cluster_with_token_auth(
    two_node_cluster: Cluster, workspace: Path, tmp_path: Path
) -> None:
    active, status = wait_for_nodes(two_node_cluster, 2)
    assert active == 2, status
    stranger = ray_status(two_node_cluster, {**two_node_cluster.env, "RAY_AUTH_TOKEN": secrets.token_hex(32)})
    assert stranger.returncode != 0 and "Authentication token is missing or incorrect" in stranger.stderr
    out = tmp_path / "run"
    args = [
        "run",
        "--variants",
        "baseline,relu,swiglu",
        "--devices",
        "cpu",
        *ONE_SEED,
        "--data",
        str(workspace / "corpus.txt"),
    ]
    args += ["--max-steps", "8", *TINY_SET, "--executor", "ray", "--ray-address", two_node_cluster.address]
    args += ["--out", str(out), "--quiet", "--no-report"]

    done = subprocess.run(
        [sys.executable, "-m", "minigpt.cli", *args],
        env=two_node_cluster.env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr
    store = RunStore(out)
    records = {r["trial_id"]: r for r in store.trials()}
    assert set(records) == {f"{v}--cpu--s0" for v in ("baseline", "relu", "swiglu")}
    for trial, record in records.items():
        assert record["status"] == "completed", record.get("error")
        assert record["steps"] == 8
        assert record["threads"] == 1 and record["concurrent"] is False  # each trial had a whole 1-CPU node
        assert (store.trial_dir(trial) / "model.safetensors").is_file()
