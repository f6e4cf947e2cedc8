"""The acceptance scripts in benchmarks/targets/ take many minutes, so the suite never runs them:
it checks that each still starts (--help) and that their shared runner times a whole `run`
process and reads what it wrote."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, TINY_SET, subprocess_env

TARGETS = ROOT / "benchmarks" / "targets"
SCRIPTS = ("cpu_targets", "gpu_targets", "speed_targets", "muon_speed", "generation_speed")


def script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TARGETS / f"{name}.py"), *args], capture_output=True, text=True, env=subprocess_env()
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_every_acceptance_script_starts_and_explains_itself(name: str) -> None:
    done = script(name, "--help")
    assert done.returncode == 0, done.stderr
    assert f"benchmarks/targets/{name}.py" in done.stdout  # the usage lines name the script where it is


def test_cpu_targets_needs_the_older_commit_named() -> None:
    done = script("cpu_targets")
    assert done.returncode == 2
    assert "the following arguments are required: --old" in done.stderr


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    monkeypatch.syspath_prepend(str(TARGETS))
    import runner

    return runner


@pytest.mark.slow
def test_the_runner_times_a_whole_run_and_reads_its_trial(runner, tmp_path: Path) -> None:  # noqa: ANN001
    checkout = runner.this_checkout()
    checkout.inspect()
    args = ["--variants", "baseline", "--devices", "cpu", "--max-steps", "2", *TINY_SET]

    run = runner.cli_run(checkout, args, tmp_path / "r", timeout=300)

    assert run.failure() is None and run.trial["steps"] == 2 and run.wall_s > 0
    assert run.metrics and run.metrics[-1]["step"] == 2
    assert run.command.startswith("[this checkout] PYTHONPATH=. python -m minigpt.cli run --variants baseline")
    assert run.command.endswith("--out $TMP/r --quiet --no-speed --no-report")


def test_a_run_that_wrote_no_trial_says_why(runner) -> None:  # noqa: ANN001
    refused = runner.Run("new", "run ...", 1.0, 2, "error: unknown variant 'x'", None, [])
    diverged = runner.Run("old", "run ...", 9.0, 0, "", {"status": "diverged", "error": "loss is nan"}, [])

    assert refused.failure() == "exit 2, no trial written\nerror: unknown variant 'x'"
    assert diverged.failure() == "exit 0, diverged: loss is nan\n"
