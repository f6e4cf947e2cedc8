"""The micro-benchmark suite runs (at a tiny size, one round each) so it cannot rot; `bench`
stores and summarizes its JSON and turns user mistakes into one line and exit code 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minigpt import bench, bundled
from minigpt.bench import CASES, BenchError, plan_suite, run_bench, summarize_bench
from minigpt.config import PRESETS, Config, resolve_recipe
from minigpt.variants import discover

from .conftest import ONE_SEED, TINY_SET, run_cli

TINY = ["n_layer=1", "n_embd=16", "block_size=8", "batch_size=2"]
ONE_ROUND = ["--benchmark-min-rounds=1", "--benchmark-max-time=0", "-q", "-p", "no:cacheprovider"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minigpt.cli", *args], capture_output=True, text=True, check=False)


def cases_in(report: dict) -> set[tuple[str, str, str]]:
    return {
        (b["extra_info"]["variant"], b["extra_info"]["device"], b["extra_info"]["case"]) for b in report["benchmarks"]
    }


@pytest.mark.slow
def test_suite_times_every_registered_variant_in_every_case(tmp_path: Path) -> None:
    result = run_bench("all", "cpu", overrides=TINY, json_path=tmp_path / "bench.json", extra_args=ONE_ROUND, rounds=2)

    assert result.exit_code == 0
    assert result.saved == [tmp_path / "bench.json"]
    assert json.loads((tmp_path / "bench.json").read_text()) == result.report
    expected = {(name, "cpu", case) for name in discover().names() for case in CASES}
    assert cases_in(result.report) == expected
    for entry in result.report["benchmarks"]:
        info = entry["extra_info"]
        assert entry["group"] == info["case"]
        assert info["config"]["n_embd"] == 16
        assert info["threads"] == torch.get_num_threads()
        assert info["tokens"] == (1 if info["case"].startswith("decode") else 2 * 8)
        assert entry["stats"]["median"] > 0
    rounds = [b["extra_info"]["round"] for b in result.report["benchmarks"] if b["extra_info"]["case"] == "forward"]
    names = [b["extra_info"]["variant"] for b in result.report["benchmarks"] if b["extra_info"]["case"] == "forward"]
    half = len(names) // 2
    assert rounds == [0] * half + [1] * half
    assert names[half:] == names[:half][::-1]  # the second round runs the variants in reverse order


def recorded_run(run_dir: Path, preset: str = "cpu-fast", overrides: list[str] = TINY) -> Config:
    """A run directory whose sweep.json records the base configuration `run` would have used."""
    base = resolve_recipe(preset, ["cpu"], overrides).config
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "sweep.json").write_text(json.dumps({"preset": preset, "base_config": base.to_dict()}))
    return base


@pytest.mark.slow
def test_cli_passes_pytest_options_through_and_stores_the_json_in_the_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "demo"
    recorded_run(run_dir)
    sets = [arg for pair in TINY for arg in ("--set", pair)]
    args = ["--variants", "baseline,attn-looped", "--devices", "cpu,cuda", *sets, "--json", str(tmp_path / "b.json")]

    # the --set options repeat what the run recorded: allowed
    done = cli("bench", *args, "--run", str(run_dir), "--rounds", "2", "--", *ONE_ROUND, "-k", "forward", "-rs")

    assert done.returncode == 0, done.stderr
    report = json.loads((run_dir / "bench.json").read_text())
    assert (tmp_path / "b.json").read_text() == (run_dir / "bench.json").read_text()
    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    assert cases_in(report) == {(v, d, "forward") for v in ("baseline", "attn-looped") for d in devices}
    if not torch.cuda.is_available():
        assert "SKIPPED" in done.stdout and "no CUDA device" in done.stdout
    assert "batched vs looped heads (baseline vs attn-looped, cpu): forward" in done.stdout


@pytest.mark.slow
def test_a_failing_plugin_variant_fails_the_run_with_pytests_exit_code(tmp_path: Path) -> None:
    plugin = tmp_path / "broken.py"
    plugin.write_text(
        "from torch import nn\n"
        "from minigpt import variant\n"
        "from minigpt.components import mlp\n\n\n"
        "@mlp.register('broken')\n"
        "class Broken(nn.Module):\n"
        "    def __init__(self, cfg):\n"
        "        super().__init__()\n\n"
        "    def forward(self, x):\n"
        "        raise RuntimeError('broken on purpose')\n\n\n"
        "@variant('broken-mlp', 'an MLP that always fails')\n"
        "def broken_mlp(cfg):\n"
        "    return cfg.replace(mlp='broken')\n"
    )

    result = run_bench(
        "baseline,broken-mlp",
        "cpu",
        [plugin],
        TINY,
        tmp_path / "b.json",
        extra_args=[*ONE_ROUND, "-k", "forward"],
        rounds=1,
    )

    assert result.exit_code == 1
    assert cases_in(result.report) == {("baseline", "cpu", "forward")}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--variants", "baseline,swigl"], "unknown variant 'swigl'; did you mean swiglu"),
        (["--devices", "gpu"], "unknown device 'gpu'"),
        (["--set", "n_embd=30"], "n_embd (30) must be divisible by n_head (4)"),
        (["--run", "no/such/run"], "run directory no/such/run does not exist"),
    ],
)
def test_user_mistakes_end_in_one_line_and_exit_code_2(args: list[str], message: str) -> None:
    done = cli("bench", *args)

    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stdout == ""


def test_bench_starts_from_the_preset_run_chooses_for_the_devices_then_set_then_the_variant() -> None:
    registry = discover()
    on_cpu = plan_suite("baseline,swiglu", "cpu", overrides=["n_layer=2"])
    assert on_cpu.preset == "cpu-fast"
    cpu_fast = PRESETS["cpu-fast"].config().replace(n_layer=2)
    assert on_cpu.configs == {name: registry.get(name).configure(cpu_fast) for name in ("baseline", "swiglu")}
    assert on_cpu.configs["baseline"].optimizer == "muon" and on_cpu.configs["baseline"].batch_size == 32
    assert plan_suite("baseline", "cuda").preset == "gpu-fast"  # as run: every device a GPU
    assert plan_suite("baseline", "cpu,cuda").preset == "cpu-fast"
    named = plan_suite("baseline", "cuda", preset="reference")
    assert named.preset == "reference" and named.configs["baseline"].position == "learned"


@pytest.mark.slow
def test_bench_benchmarks_the_configurations_run_trained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    args = [
        "run",
        "--variants",
        "baseline,swiglu",
        "--devices",
        "cpu",
        "--max-steps",
        "1",
        "--out",
        str(out),
        *ONE_SEED,
    ]
    code, _, err = run_cli([*args, *TINY_SET, "--quiet", "--no-speed", "--no-report"], monkeypatch, capsys)
    assert code == 0, err
    trained = {
        record["variant"]: Config.from_dict(record["config"])
        for record in (json.loads(path.read_text()) for path in out.glob("trials/*/trial.json"))
    }
    sets = TINY_SET[1::2]

    assert plan_suite("baseline,swiglu", "cpu", overrides=sets).configs == trained
    assert plan_suite("baseline,swiglu", "cpu", run_dir=out).configs == trained
    assert plan_suite("baseline,swiglu", "cpu", overrides=sets, preset="cpu-fast", run_dir=out).configs == trained


@pytest.mark.parametrize(
    ("preset", "sets", "message"),
    [
        ("auto", ["lr=0.5"], "--set lr=0.5 contradicts RUN's base configuration (lr=0.015 in its sweep.json)"),
        (
            "auto",
            ["n_layer=1", "compile=default"],
            "--set compile=default contradicts RUN's base configuration (compile=false",
        ),
        ("reference", [], "--preset reference contradicts RUN, which ran from preset cpu-fast; leave out --preset"),
    ],
)
def test_a_preset_or_set_that_contradicts_the_runs_base_is_refused(
    tmp_path: Path, preset: str, sets: list[str], message: str
) -> None:
    recorded_run(tmp_path)

    with pytest.raises(BenchError, match=re.escape(message.replace("RUN", str(tmp_path)))):
        plan_suite("baseline", "cpu", overrides=sets, preset=preset, run_dir=tmp_path)


def test_the_cli_refuses_a_contradicting_set_in_one_line_with_exit_code_2(tmp_path: Path) -> None:
    recorded_run(tmp_path)

    done = cli("bench", "--variants", "baseline", "--devices", "cpu", "--run", str(tmp_path), "--set", "lr=0.5")

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(f"error: --set lr=0.5 contradicts {tmp_path}'s base configuration")
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_run_directory_without_a_recorded_sweep_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="holds no sweep.json to take the base configuration from"):
        plan_suite("baseline", "cpu", run_dir=tmp_path)


def test_bench_without_pytest_benchmark_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench.importlib.util, "find_spec", lambda name: None)

    with pytest.raises(BenchError, match=r"pip install 'minigpt-bench\[dev\]'"):
        run_bench("baseline", "cpu")


def entry(variant: str, case: str, median: float, turn: int = 0) -> dict:
    info = {"variant": variant, "device": "cpu", "case": case, "threads": 2, "round": turn}
    return {"extra_info": info, "stats": {"median": median}}


def test_summary_pairs_rounds_into_speed_ratios_with_intervals() -> None:
    # attn-looped takes 2.5x the baseline's time in every round while the machine slows down
    # 2x between rounds: paired within rounds, the speed is exactly 0.40x with no spread
    report = {
        "benchmarks": [
            *(entry("baseline", "forward", 0.002 * slow, turn) for turn, slow in enumerate((1, 2, 1))),
            *(entry("attn-looped", "forward", 0.005 * slow, turn) for turn, slow in enumerate((1, 2, 1))),
            *(
                entry("swiglu", "forward", 0.002 * slow * f, turn)
                for turn, (slow, f) in enumerate(((1, 1.1), (2, 0.9), (1, 1.0)))
            ),
            entry("baseline", "train_step", 0.010),
            {"extra_info": {}, "stats": {"median": 1.0}},  # another suite's benchmark: ignored
        ]
    }

    lines = summarize_bench(report).splitlines()

    assert lines[0].startswith("cpu (2 threads), 3 interleaved round(s): median ms per call, and speed relative")
    assert lines[1].split() == ["variant", "forward", "train_step"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:5]}
    assert rows["baseline"] == ["2.000", "1.00x", "[1.00,1.00]", "10.000", "1.00x", "[1.00,1.00]"]
    assert rows["attn-looped"] == ["5.000", "0.40x", "[0.40,0.40]", "-"]
    assert rows["swiglu"][0] == "2.200" and rows["swiglu"][1] == "1.00x"
    low, high = (float(x) for x in rows["swiglu"][2].strip("[]").split(","))
    assert low < 0.9 and high > 1.1  # that one's rounds disagree: a wide interval
    assert "  batched vs looped heads (baseline vs attn-looped, cpu): forward 2.50x [2.50,2.50]" in lines
    assert not any("sdpa vs manual" in line for line in lines)


def test_bench_rows_carry_the_verdict() -> None:
    report = {"benchmarks": [entry("baseline", "forward", 0.002 * (1 + t % 2), t) for t in range(4)]
              + [entry("nope", "forward", 0.0015 * (1 + t % 2), t) for t in range(4)]}  # fmt: skip
    rows = {row["variant"]: row for row in bench.bench_rows(report)}
    assert rows["nope"]["speed_verdict"] == "faster"
    assert rows["nope"]["speed_ratio"] == pytest.approx(4 / 3)
    assert rows["baseline"]["speed_verdict"] == "baseline"


def test_summary_of_a_report_without_timings_says_so() -> None:
    assert "no timings" in summarize_bench({"benchmarks": []})


def test_the_suite_is_the_bundled_one_rooted_at_its_own_folder(tmp_path: Path) -> None:
    command = bench.suite_command("baseline", "cpu", [], [], tmp_path / "b.json")

    assert bench.SUITE == bundled.BENCHMARKS / "test_variants.py" and bench.SUITE.is_file()
    assert command[3:7] == [str(bench.SUITE), f"--rootdir={bench.SUITE.parent}", "-p", "no:cacheprovider"]


def test_a_missing_suite_says_to_reinstall(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "SUITE", tmp_path / "test_variants.py")

    with pytest.raises(BenchError, match="benchmark suite .* is missing: reinstall minigpt-bench"):
        run_bench("baseline", "cpu")
