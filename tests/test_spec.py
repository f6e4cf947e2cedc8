"""`run --spec FILE.toml` and `minigpt-bench spec RUN_DIR`: a sweep as a file, read back exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minigpt.spec import RunSpec, build_spec, load_spec, spec_options, to_toml
from tests.conftest import ROOT, TINY_SET, run_cli

TINY_SETS = [value for flag, value in zip(TINY_SET[::2], TINY_SET[1::2], strict=True) if flag == "--set"]


def write_spec(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def tiny_spec(tmp_path: Path, out: Path) -> Path:
    sets = ", ".join(json.dumps(s) for s in TINY_SETS)
    return write_spec(
        tmp_path / "sweep.toml",
        f'variants = ["baseline", "nope"]\ndevices = "cpu"\nseeds = [0]\nmax_steps = 4\nset = [{sets}]\n'
        f'out = "{out}"\nno_speed = true\nno_report = true\nquiet = true\n',
    )


NOT_SPEC_KEYS = {"ctx", "spec_file"}  # typer's context, and --spec itself


def test_every_run_option_is_a_spec_key_with_runs_own_default() -> None:
    """Both ways round: a `run` option missing from RunSpec, or a spec key `run` lacks, fails."""
    import inspect

    from minigpt.cli import run

    options = dict(inspect.signature(run).parameters)
    keys = set(spec_options())
    assert set(options) - NOT_SPEC_KEYS == keys
    assert {"ray_address", "ray_cpus_per_trial"} <= keys  # the executors' own options among them
    for key in sorted(keys):
        option = options[key].default
        default = option if not isinstance(option, Path) else str(option)
        assert (default or None) == (RunSpec().values()[key] or None), key


def test_a_file_builds_the_spec_and_the_command_line_wins(tmp_path: Path) -> None:
    path = write_spec(tmp_path / "s.toml", 'variants = ["a", "b"]\nseeds = 7\nset = ["lr=0.01"]\nmax_flops = 1e12\n')
    spec = build_spec(path, {"seeds": "1,2", "track": ["mlflow"]})
    assert (spec.variants, spec.seeds, spec.set, spec.max_flops, spec.track) == (
        "a,b",
        "1,2",
        ("lr=0.01",),
        1e12,
        ("mlflow",),
    )


def test_an_executors_own_options_are_spec_keys_that_read_back(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path / "s.toml", 'executor = "ray"\nray_cpus_per_trial = 2\n'))
    assert spec.executor_options == {"ray_cpus_per_trial": 2}
    assert spec.overridden({"ray_address": "auto"}).executor_options == {"ray_cpus_per_trial": 2, "ray_address": "auto"}
    assert load_spec(write_spec(tmp_path / "back.toml", to_toml(spec))) == spec


def test_a_spec_written_as_toml_reads_back_the_same(tmp_path: Path) -> None:
    spec = RunSpec(variants="a,b", seeds="0,1", max_seconds=2.5, set=("lr=1e-3", 'x="q"'), tune=("lr",), out="runs/é")
    assert load_spec(write_spec(tmp_path / "s.toml", to_toml(spec, "a comment"))) == spec


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sedes = 1\n", "s.toml: unknown key 'sedes'; did you mean seeds"),
        ("max_steps = 1.5\n", "s.toml: key 'max_steps' expects an integer, got a float"),
        ("stop_at_target = 1\n", "s.toml: key 'stop_at_target' expects a boolean, got an integer"),
        ("set = [1]\n", "s.toml: key 'set' expects an array of strings, got an array"),
        ('ray_cpus_per_trial = "2"\n', "s.toml: key 'ray_cpus_per_trial' expects an integer, got a string"),
        ('seeds = "1"\nmax_steps = = 3\n', "s.toml: not valid TOML: Invalid value (at line 2, column 13)"),
    ],
)
def test_a_bad_spec_is_one_line_naming_the_file_and_key_or_line(
    tmp_path: Path, text: str, message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    path = write_spec(tmp_path / "s.toml", text)
    code, _, err = run_cli(["run", "--spec", str(path), "--out", str(tmp_path / "r")], monkeypatch, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "r").exists()


def test_an_unknown_tracker_is_refused_before_any_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    path = tiny_spec(tmp_path, tmp_path / "r")
    code, _, err = run_cli(["run", "--spec", str(path), "--track", "mlfow"], monkeypatch, capsys)
    assert (code, err.strip()) == (2, "error: unknown tracker 'mlfow'; did you mean mlflow?")
    assert not (tmp_path / "r" / "trials").exists()


def test_a_missing_trackers_extra_is_named_before_any_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    path = tiny_spec(tmp_path, tmp_path / "r")
    code, _, err = run_cli(["run", "--spec", str(path), "--track", "wandb"], monkeypatch, capsys)
    assert code == 2
    assert err.strip() == "error: --track wandb needs wandb: pip install 'minigpt-bench[wandb]' (or pip install wandb)"
    assert not (tmp_path / "r" / "trials").exists()


@pytest.mark.slow
def test_spec_of_a_run_resumes_it_into_the_same_out_and_reproduces_it_into_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    first = tmp_path / "first"
    code, _, err = run_cli(["run", "--spec", str(tiny_spec(tmp_path, first)), "--seeds", "1"], monkeypatch, capsys)
    assert code == 0, err
    code, printed, err = run_cli(["spec", str(first)], monkeypatch, capsys)
    assert code == 0, err
    spec = load_spec(write_spec(tmp_path / "back.toml", printed))
    assert (spec.variants, spec.devices, spec.seeds, spec.max_steps, spec.preset) == (
        "baseline,nope",
        "cpu",
        "1",
        4,
        "cpu-fast",
    )
    finished = (first / "trials" / "nope--cpu--s1" / "trial.json").read_text()
    code, out, err = run_cli(["run", "--spec", str(tmp_path / "back.toml")], monkeypatch, capsys)
    assert code == 0, err
    assert (first / "trials" / "nope--cpu--s1" / "trial.json").read_text() == finished  # resumed, not retrained
    again = tmp_path / "again"
    code, _, err = run_cli(["run", "--spec", str(tmp_path / "back.toml"), "--out", str(again)], monkeypatch, capsys)
    assert code == 0, err
    trained = [json.loads((d / "trial.json").read_text()) for d in sorted((again / "trials").iterdir())]
    before = [json.loads((d / "trial.json").read_text()) for d in sorted((first / "trials").iterdir())]
    assert [t["trial_id"] for t in trained] == [t["trial_id"] for t in before]
    assert [t["best_val_loss"] for t in trained] == [t["best_val_loss"] for t in before]


def test_the_example_spec_is_a_valid_spec() -> None:
    spec = load_spec(ROOT / "reports" / "specs" / "example.toml")
    assert spec.variants and spec.seeds


def test_spec_of_a_grown_run_names_every_runs_variants_and_seeds_and_keeps_the_recorded_options(tmp_path: Path) -> None:
    from minigpt.spec import spec_of_run

    recorded = RunSpec(variants="a", seeds="0", tune=("lr",), tune_seeds="9", sizes="xs,s", devices="auto").record()
    sweep = {"variants": ["a", "b"], "devices": ["cpu"], "seeds": [0, 1, 2], "preset": "cpu-fast", "spec": recorded}
    (tmp_path / "sweep.json").write_text(json.dumps(sweep))
    spec = spec_of_run(tmp_path)
    assert (spec.variants, spec.devices, spec.seeds, spec.preset) == ("a,b", "cpu", "0,1,2", "cpu-fast")
    assert (spec.tune, spec.tune_seeds, spec.sizes, spec.out) == (("lr",), "9", "xs,s", str(tmp_path))


def test_spec_of_a_directory_without_a_run_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    code, _, err = run_cli(["spec", str(tmp_path)], monkeypatch, capsys)
    assert (code, err.strip()) == (2, f"error: {tmp_path} holds no sweep.json: not a run directory written by `run`")
