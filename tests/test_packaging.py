"""What an installed copy relies on: the bundled files are found installed first and in the
checkout second, the default corpus needs no --data from any folder, `--help` stays light,
and a run refuses an --out it cannot use before anything starts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from minigpt import bundled

from .conftest import ONE_SEED, ROOT, TINY_SET, run_cli, subprocess_env


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
    args = [
        "run",
        "--variants",
        "baseline",
        "--devices",
        "cpu",
        "--max-steps",
        "2",
        "--out",
        "runs/r",
        "--quiet",
        *ONE_SEED,
    ]
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


def setuptools_table() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_the_wheel_lists_every_subpackage_of_minigpt() -> None:
    listed = set(setuptools_table()["packages"])
    on_disk = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "minigpt").rglob("__init__.py")}
    assert on_disk <= listed, f"add {sorted(on_disk - listed)} to [tool.setuptools] packages in pyproject.toml"


def test_the_wheel_ships_the_benchmark_suite_and_leaves_the_acceptance_scripts_out() -> None:
    """benchmarks/ maps to minigpt._benchmarks, with no subpackage: the scripts in its subfolders
    compare git commits and write under reports/, so they need a checkout."""
    table = setuptools_table()
    assert table["package-dir"]["minigpt._benchmarks"] == "benchmarks"
    assert not [name for name in table["packages"] if name.startswith("minigpt._benchmarks.")]
    assert {path.name for path in (ROOT / "benchmarks").glob("*.py")} == {"conftest.py", "test_variants.py"}
    assert (ROOT / "benchmarks" / "targets" / "cpu_targets.py").is_file()


@pytest.mark.slow
def test_the_built_wheel_holds_the_suite_but_no_acceptance_script(tmp_path: Path) -> None:
    # built without isolation, so no download: setuptools must be in this venv (the dev extra
    # brings it; a fresh Python 3.12+ venv has none)
    pytest.importorskip("setuptools", reason="the wheel is built without isolation: `make setup` installs setuptools")
    # From a copy: setuptools reuses an in-tree build/ folder, which may hold files deleted since.
    source = tmp_path / "source"
    for name in ("minigpt", "variants", "benchmarks", "data"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    done = subprocess.run([*pip, "-w", str(tmp_path), str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    suite = {name for name in names if name.startswith("minigpt/_benchmarks/")}
    assert suite == {"minigpt/_benchmarks/conftest.py", "minigpt/_benchmarks/test_variants.py"}
    assert not [name for name in names if "targets/" in name]  # the acceptance scripts (benchmarks/targets/) stay out
