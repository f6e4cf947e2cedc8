"""Run directories written by an earlier version of `run` (tests/fixtures/run-*: a plain sweep and
a tuned one, their checkpoints and metrics stripped) resume with today's code: the same command
into a copy of each retrains nothing and leaves every trial and the plan's identity as they were."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import TINY_SET, run_cli

FIXTURES = Path(__file__).parent / "fixtures"
COMMON = ["--variants", "baseline,token-shift", "--seeds", "0", *TINY_SET, "--devices", "cpu"]
COMMANDS = {
    "run-plain": [*COMMON, "--max-steps", "5"],
    "run-tuned": [*COMMON, "--max-steps", "8", "--tune", "lr=0.002,0.004"],
}


def trial_files(run_dir: Path) -> dict[str, bytes]:
    return {path.parent.name: path.read_bytes() for path in sorted((run_dir / "trials").glob("*/trial.json"))}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_run_directory_written_before_resumes_without_retraining(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    run_dir = tmp_path / name
    shutil.copytree(FIXTURES / name, run_dir)
    before = trial_files(run_dir)
    identity = json.loads((run_dir / "sweep.json").read_text())["identity"]

    args = ["run", *COMMANDS[name], "--out", str(run_dir), "--no-speed", "--no-report", "--quiet"]
    code, out, err = run_cli(args, monkeypatch, capsys)

    assert code == 0, err
    assert trial_files(run_dir) == before  # nothing retrained, nothing rewritten
    sweep = json.loads((run_dir / "sweep.json").read_text())
    assert sweep["identity"] == identity
    assert sorted(sweep["trials"]) == sorted(before)
    assert out.startswith(f"{len(before)} trials, 0 to run")  # tuning trials counted too


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_spec_of_a_run_written_before_reproduces_its_command(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    code, out, err = run_cli(["spec", str(FIXTURES / name)], monkeypatch, capsys)
    assert code == 0, err
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(out)
    run_dir = tmp_path / name
    shutil.copytree(FIXTURES / name, run_dir)
    before = trial_files(run_dir)

    code, out, err = run_cli(["run", "--spec", str(spec_file), "--out", str(run_dir)], monkeypatch, capsys)

    assert code == 0, err
    assert trial_files(run_dir) == before
