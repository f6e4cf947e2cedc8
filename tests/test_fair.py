"""run --tune/--sizes/--max-flops from the command line: mistakes in one line, and a halved
learning rate that tuning shows to be no difference at all."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from minigpt.report import write_report
from tests.conftest import SHAKESPEARE, TINY_SET, run_cli

HALF_LR = (
    "from minigpt import variant\n\n"
    "@variant('half-lr', 'the baseline at half its learning rate schedule')\n"
    "def half_lr(cfg):\n    return cfg.replace(lr=cfg.lr / 2, min_lr=cfg.min_lr / 2)\n"
)


def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple:
    command = ["run", "--devices", "cpu", "--data", str(SHAKESPEARE), "--out", str(tmp_path / "run"), "--quiet",
               "--no-report", "--no-speed", *TINY_SET, *args]  # fmt: skip
    return run_cli(command, monkeypatch, capsys)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tune", "colour"], "not a numeric configuration key"),
        (["--tune", "optimizer"], "not a numeric configuration key"),
        (["--tune", "lr="], "has no values"),
        (["--tune", "lr=-1,1"], "not negative"),
        (["--sizes", "xs,huge"], "unknown size 'huge'"),
        (["--sizes", "n_embd=15"], "size n_embd15 does not fit"),
        (["--max-flops", "0"], "--max-flops must be a positive"),
        (["--tune", "lr", "--seeds", "0,1", "--tune-seeds", "1"], "also an evaluation seed"),
        (["--tune-seeds", "5"], "--tune-seeds needs --tune"),
    ],
)
def test_fair_mistakes_end_in_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    code, _, err = run(tmp_path, monkeypatch, capsys, "--max-steps", "4", *args)
    assert code == 2
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run" / "trials").exists()


@pytest.mark.slow
def test_a_variant_that_only_halves_the_lr_reads_neither_better_nor_worse_once_both_are_tuned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    plugin = tmp_path / "half.py"
    plugin.write_text(HALF_LR)
    code, _, err = run(tmp_path, monkeypatch, capsys, "--variants", "baseline,half-lr", "--plugins", str(plugin),
                       "--seeds", "0,1,2", "--max-steps", "24", "--tune", "lr")  # fmt: skip
    assert code == 0, err
    write_report(tmp_path / "run", tmp_path / "report")
    report = (tmp_path / "report" / "report.md").read_text()
    half = pd.read_csv(tmp_path / "report" / "summary.csv").set_index("variant").loc["half-lr"]
    assert half["verdict"] in ("equivalent", "undecided")  # neither better nor worse once both are tuned
    assert "apart from the evaluation seeds 0, 1, 2" in report
    results = (tmp_path / "report" / "results.csv").read_text()
    assert "tune-short" in results and "tune-full" in results


@pytest.mark.parametrize(
    ("sweep", "text"),
    [
        ({"budget": {"max_tokens": 600000}, "fair": {"max_flops": 5e11}}, "max_flops=5e+11"),
        ({"budget": {"max_tokens": 600000}, "fair": {"token_rule": 600000}}, "token rule (600,000 tokens"),
        ({"budget": {"max_tokens": 600000, "max_steps": None}}, "max_tokens=600000"),
    ],
)
def test_the_report_states_the_budget_the_trials_trained_for(sweep: dict, text: str) -> None:
    from minigpt.report.document import budget_text

    assert text in budget_text(sweep)
    assert "max_tokens" not in budget_text(sweep) or "fair" not in sweep


@pytest.mark.slow
def test_a_ladder_at_equal_flops_reports_each_size_its_front_and_its_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    plugin = tmp_path / "half.py"
    plugin.write_text(HALF_LR)
    code, _, err = run(tmp_path, monkeypatch, capsys, "--variants", "baseline,half-lr", "--plugins", str(plugin),
                       "--seeds", "0,1", "--sizes", "n_embd=16,32", "--max-flops", "3e7")  # fmt: skip
    assert code == 0, err
    write_report(tmp_path / "run", tmp_path / "report")
    report = (tmp_path / "report" / "report.md").read_text()
    assert "max\\_flops=3e+07" in report
    per_size = report.split("## Difference from the baseline per size")[1].split("##")[0]
    assert per_size.count("| n\\_embd16 |") == 2 and per_size.count("| n\\_embd32 |") == 2, per_size
    assert "half-lr on cpu helps at" in per_size
    assert "## Pareto fronts" in report and "the front against FLOPs:" in report
    assert (tmp_path / "report" / "loss_vs_flops.png").stat().st_size > 0
    assert (tmp_path / "report" / "diff_vs_params.png").stat().st_size > 0
