"""The ladder's budget rule (minigpt.sizes: tokens per parameter, at least MIN_STEPS steps, at most
TOKEN_CAP times the preset's tokens), the lines `run` can print per size, and a ladder's report
covering every size: header, Findings, summary.csv and figures."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from minigpt.config import Config
from minigpt.report import write_report
from minigpt.sizes import MIN_STEPS, TOKEN_CAP, budget_lines, parse_sizes, size_tokens
from minigpt.stages import FairOptions, model_counts, plan_groups
from minigpt.sweep import plan_sweep
from minigpt.train import Budget
from minigpt.variants import Variant, VariantRegistry
from tests.conftest import SHAKESPEARE, TINY, TINY_SET, run_cli

PRESET = 600_000
PER_STEP = 32 * 64


@pytest.mark.parametrize(
    ("params", "tokens"),
    [
        (800_000, PRESET),  # the reference size: the preset's own budget
        (1_600_000, 2 * PRESET),  # twice the parameters, twice the tokens
        (300_000, MIN_STEPS * PER_STEP),  # tokens per parameter would give 225k: the minimum steps win
        (8_000_000, TOKEN_CAP * PRESET),  # 10x the parameters: the cap
    ],
)
def test_each_size_trains_tokens_per_parameter_within_a_minimum_of_steps_and_a_cap(params: int, tokens: int) -> None:
    assert size_tokens(params, 800_000, PRESET, PER_STEP) == tokens


def test_the_minimum_of_steps_wins_over_the_cap_and_is_off_without_a_step_size() -> None:
    assert size_tokens(8_000_000, 800_000, 1000, PER_STEP) == MIN_STEPS * PER_STEP
    assert size_tokens(300_000, 800_000, PRESET) == 225_000  # the rule as it was, for callers without steps


def registry() -> VariantRegistry:
    found = VariantRegistry()
    found.add(Variant("baseline", "the reference", lambda cfg: cfg, "test"))
    found.add(Variant("half-lr", "half the lr", lambda cfg: cfg.replace(lr=cfg.lr / 2), "test"))
    return found


def test_budget_lines_give_each_sizes_parameters_tokens_and_steps() -> None:
    base = Config(**TINY)
    plan = plan_sweep(registry(), "baseline,half-lr", ["cpu"], [0], base, str(SHAKESPEARE), Budget(max_tokens=64_000))
    fair = FairOptions(sizes=parse_sizes("n_embd=16,32"), preset_tokens=64_000)
    groups = plan_groups(registry(), plan, fair, vocab_size=65)
    lines = budget_lines(groups)
    assert len(lines) == 2  # one per size, not per variant
    per_step = TINY["batch_size"] * TINY["block_size"]
    for line, group in zip(lines, [g for g in groups if g.variant == "baseline"], strict=True):
        params = model_counts(group.config)[0]
        steps = group.budget.total_steps(per_step)
        assert line.startswith(f"size {group.size.describe()}: {params:,} parameters, ")
        assert f"{steps * per_step:,} tokens ({steps:,} steps of {per_step}, " in line
        assert f"{steps * per_step / params:.2f} tokens per parameter" in line


@pytest.mark.slow
def test_a_ladders_report_covers_every_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    plugin = tmp_path / "half.py"
    plugin.write_text(
        "from minigpt import variant\n\n@variant('half-lr', 'half the lr')\n"
        "def half_lr(cfg):\n    return cfg.replace(lr=cfg.lr / 2, min_lr=cfg.min_lr / 2)\n"
    )
    command = ["run", "--devices", "cpu", "--data", str(SHAKESPEARE), "--out", str(tmp_path / "run"), "--quiet",
               "--no-report", "--no-speed", *TINY_SET, "--variants", "baseline,half-lr", "--plugins", str(plugin),
               "--seeds", "0,1", "--sizes", "n_embd=8,16,32", "--max-steps", "6"]  # fmt: skip
    code, out, err = run_cli(command, monkeypatch, capsys)
    assert code == 0, err
    before_training = out.split(" trials, ")[0]
    for size in ("n_embd8", "n_embd16", "n_embd32"):
        assert f"size {size}" in before_training and "tokens per parameter" in before_training  # printed first
    write_report(tmp_path / "run", tmp_path / "report")
    report = (tmp_path / "report" / "report.md").read_text()
    header = report.split("## Findings")[0]
    assert header.count("\n") < 12 and "12 trials (12 completed)" in header
    for size in ("n\\_embd8", "n\\_embd16", "n\\_embd32"):
        assert f"{size} " in header, header  # each size's budget in the header
    findings = report.split("## Findings")[1].split("\n## ")[0]
    assert "Floors of this corpus" in findings and "Budget too short" in findings
    (sentence,) = [p for p in findings.split("\n\n") if p.startswith("half-lr on cpu, Δ vs the baseline")]
    assert all(f"at n\\_embd{n}" in sentence for n in (8, 16, 32)) and "per doubling of parameters" in sentence
    summary = pd.read_csv(tmp_path / "report" / "summary.csv")
    assert list(summary["size"]) == ["n_embd8"] * 2 + ["n_embd16"] * 2 + ["n_embd32"] * 2
    results = pd.read_csv(tmp_path / "report" / "results.csv")
    assert set(results["size"]) == {"n_embd8", "n_embd16", "n_embd32"}
    assert (results["total_flops"] > results["model_flops"]).all()
    for figure in ("diff_vs_params.png", "loss_vs_flops.png", "loss_curves.png"):
        assert (tmp_path / "report" / figure).stat().st_size > 0
