"""What an installed copy relies on: the bundled files are found installed first and in the
checkout second, the default corpus needs no --data from any folder, `--help` stays light,
and a run refuses an --out it cannot use before anything starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from minigpt import bundled

from .conftest import ROOT, TINY_SET, run_cli, subprocess_env


def test_bundled_folders_are_the_installed_copies_first_and_the_checkouts_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "site-packages" / "minigpt"
    (package / "_variants").mkdir(parents=True)
    monkeypatch.setattr(bundled, "PACKAGE", package)
    assert bundled.folder("variants") == package / "_variants"
    assert bundled.folder("benchmarks") == tmp_path / "site-packages" / "benchmarks"


def test_in_a_checkout_the_bundled_files_are_the_checkouts_own() -> None:
    assert bundled.VARIANTS == ROOT / "variants"
    assert bundled.BENCHMARKS == ROOT / "benchmarks"
    assert bundled.TINY_SHAKESPEARE == ROOT / "data" / "input.txt"


def test_help_imports_no_torch_pandas_or_seaborn() -> None:
    script = (
        "import sys\n"
        "from minigpt.cli import main\n"
        "sys.argv = ['minigpt-bench', 'run', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted({'torch', 'pandas', 'seaborn'} & set(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env={**subprocess_env(), "COLUMNS": "200"}
    )
    assert done.returncode == 0, done.stderr
    assert "[default: tiny-shakespeare]" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_run_without_data_trains_on_tiny_shakespeare_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["run", "--variants", "baseline", "--devices", "cpu", "--max-steps", "2", "--out", "runs/r", "--quiet"]
    code, _, err = run_cli([*args, "--no-report", *TINY_SET], monkeypatch, capsys)
    assert code == 0, err
    assert json.loads(Path("runs/r/sweep.json").read_text())["data"] == "tiny-shakespeare"  # no machine path
    assert json.loads(Path("runs/r/trials/baseline--cpu--s0/trial.json").read_text())["status"] == "completed"


def test_an_out_that_is_a_file_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    code, out, err = run_cli(["run", "--out", str(taken)], monkeypatch, capsys)
    assert (code, out) == (2, "")
    assert err == f"error: --out {taken} is a file, not a run directory; choose another path\n"
    assert taken.read_text() == "mine"


def test_the_wheel_lists_every_subpackage_of_minigpt() -> None:
    tomllib = pytest.importorskip("tomllib")
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "minigpt").rglob("__init__.py")}
    assert on_disk <= listed, f"add {sorted(on_disk - listed)} to [tool.setuptools] packages in pyproject.toml"
