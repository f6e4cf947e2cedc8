"""`run --seeds auto`: the rounds of seeds as a stage of the staged runner, on a fake executor
whose losses are known, then end to end with tiny models."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from minigpt import runner
from minigpt.config import Config
from minigpt.decide import DEFAULT_MAX_SEEDS, looks
from minigpt.report import write_report
from minigpt.runner import QuietObserver, run_sweep
from minigpt.stages import FairOptions
from minigpt.store import RunStore
from minigpt.sweep import plan_sweep
from minigpt.train import Budget
from minigpt.variants import Variant, VariantRegistry
from tests.conftest import SHAKESPEARE, TINY, TINY_SET, Counting, run_cli

BASE = Config(**TINY)
SHIFT = {"baseline": 0.0, "copy": 0.0, "better": -0.05, "noisy": 0.0}


def registry() -> VariantRegistry:
    found = VariantRegistry()
    for name in SHIFT:
        found.add(Variant(name, name, lambda cfg: cfg, "test"))
    return found


class KnownLosses:
    """Each trial's loss: the seed's own draw (shared by every variant, as data order is), the
    variant's shift, and for `noisy` a large draw of its own: it never decides in ten seeds."""

    def __init__(self) -> None:
        self.ran: list = []

    def open(self) -> KnownLosses:
        return self

    def __enter__(self) -> KnownLosses:
        return self

    def __exit__(self, *error: object) -> None:
        pass

    def __call__(self, specs, sweep) -> None:  # noqa: ANN001
        store = sweep.store
        for spec in specs:
            self.ran.append(spec)
            seed_draw = np.random.default_rng(spec.seed).normal(0, 0.05)
            own = np.random.default_rng(1000 + spec.seed).normal(0, 0.2) if spec.variant == "noisy" else 0.0
            loss = 2.0 + seed_draw + SHIFT[spec.variant] + own + (0.001 * spec.seed if spec.variant == "better" else 0)
            store.write_trial({"trial_id": spec.id, "variant": spec.variant, "device": spec.device, "seed": spec.seed,
                               "status": "completed", "best_val_loss": loss, "config": spec.config.to_dict(),
                               "changed": {}, "description": spec.variant, **spec.labels})  # fmt: skip


@pytest.fixture(autouse=True)
def no_device_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "probe_devices", lambda specs, known: {})


def auto_run(
    root: Path, max_seeds: int = DEFAULT_MAX_SEEDS, observer: QuietObserver | None = None
) -> tuple[KnownLosses, list[dict]]:
    plan = plan_sweep(registry(), list(SHIFT), ["cpu"], [0, 1, 2], BASE, str(SHAKESPEARE), Budget(max_steps=4))
    plan.options["spec"] = {"seeds": "auto", "max_seeds": max_seeds}  # what `run` records, for the report
    executor = KnownLosses()
    fair = FairOptions(seeds_auto=True, max_seeds=max_seeds)
    records = run_sweep(replace(plan, fair=fair), RunStore(root), observer or QuietObserver(), executor=executor)
    return executor, records


def test_the_rounds_grow_the_display_and_a_resume_counts_them_held(tmp_path: Path) -> None:
    first = Counting()
    executor, _ = auto_run(tmp_path, observer=first)
    assert first.started == [(len(SHIFT) * 3, len(SHIFT) * 3)]  # the first round; later ones are decided as it goes
    assert first.started[0][0] + first.added == len(executor.ran)
    again = Counting()
    rerun, _ = auto_run(tmp_path, observer=again)
    assert rerun.ran == [] and again.started == [(len(executor.ran), 0)] and again.added == 0


def seeds_of(executor: KnownLosses) -> dict[str, list[int]]:
    ran: dict[str, list[int]] = {}
    for spec in executor.ran:
        ran.setdefault(spec.variant, []).append(spec.seed)
    return ran


def test_only_the_undecided_get_more_seeds_until_the_last_look(tmp_path: Path) -> None:
    executor, records = auto_run(tmp_path)
    ran = seeds_of(executor)
    assert ran["copy"] == [0, 1, 2]  # identical to the baseline: equivalent at the first look
    assert ran["better"] == [0, 1, 2]  # 0.05 better with a tiny spread: decided at once
    assert sorted(ran["noisy"]) == list(range(DEFAULT_MAX_SEEDS))  # undecided: every round, to --max-seeds
    assert sorted(ran["baseline"]) == list(range(DEFAULT_MAX_SEEDS))  # paired with whatever still runs
    assert len(records) == len(executor.ran)
    assert all(r["stage"] == "eval" for r in records)  # ordinary evaluation trials
    sweep_json = RunStore(tmp_path).read_sweep()
    assert sweep_json["seeds"] == list(range(DEFAULT_MAX_SEEDS))
    assert len(sweep_json["trials"]) == len(executor.ran)
    assert sweep_json["fair"] is None  # the same plan as with a list of seeds: either grows the other


def test_each_round_rotates_the_order_within_a_seed(tmp_path: Path) -> None:
    executor, _ = auto_run(tmp_path)
    later = [spec for spec in executor.ran if spec.seed >= 3]
    first_of_seed = {spec.seed: spec.variant for spec in reversed(later)}
    assert set(first_of_seed.values()) == {"baseline", "noisy"}  # neither always runs first


def test_a_rerun_resumes_the_rounds_without_training_anything(tmp_path: Path) -> None:
    auto_run(tmp_path)
    executor, records = auto_run(tmp_path)
    assert executor.ran == [] and len(records) == 3 * 2 + 2 * DEFAULT_MAX_SEEDS


def test_a_larger_max_seeds_grows_the_same_run(tmp_path: Path) -> None:
    auto_run(tmp_path, max_seeds=5)
    executor, _ = auto_run(tmp_path, max_seeds=8)
    assert sorted({spec.seed for spec in executor.ran}) == [5, 6, 7]
    assert {spec.variant for spec in executor.ran} == {"baseline", "noisy"}


def test_the_report_reads_the_verdicts_the_rounds_stopped_on(tmp_path: Path) -> None:
    auto_run(tmp_path / "run")
    write_report(tmp_path / "run", tmp_path / "out")
    summary = pd.read_csv(tmp_path / "out" / "summary.csv").set_index("variant")
    assert summary.at["copy", "verdict"] == "equivalent" and summary.at["copy", "seeds"] == 3
    assert summary.at["better", "verdict"] == "better" and summary.at["better", "p_adjusted"] < 0.05
    assert summary.at["noisy", "verdict"] == "undecided" and summary.at["noisy", "seeds"] == DEFAULT_MAX_SEEDS
    assert summary.at["noisy", "seeds_needed"] > DEFAULT_MAX_SEEDS
    # the interval at the last look spends a share 2/10 of 5%, split over 3 variants
    share = 0.05 * (DEFAULT_MAX_SEEDS - looks(DEFAULT_MAX_SEEDS)[-2]) / DEFAULT_MAX_SEEDS / 3
    assert summary.at["noisy", "confidence"] == pytest.approx(1 - share)
    markdown = (tmp_path / "out" / "report.md").read_text()
    findings = markdown.split("## Findings")[1].split("## ")[0]
    assert findings.index("| better |") < findings.index("| copy |")  # sorted by effect, best first
    assert "Seeds ran in rounds (--seeds auto): after 3, 5, 8, 10 seeds" in markdown.split("## Method")[1]


def test_max_seeds_needs_auto_and_the_margins_must_make_sense(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    code, _, err = run_cli(["run", "--seeds", "0,1", "--max-seeds", "5", "--out", str(tmp_path / "b")],
                           monkeypatch, capsys)  # fmt: skip
    assert code == 2 and "--max-seeds needs --seeds auto" in err
    code, _, err = run_cli(["run", "--seeds", "auto", "--max-seeds", "1", "--out", str(tmp_path / "c")],
                           monkeypatch, capsys)  # fmt: skip
    assert code == 2 and "--max-seeds must be at least 2" in err
    code, _, err = run_cli(["run", "--margin", "-1", "--out", str(tmp_path / "d")], monkeypatch, capsys)
    assert code == 2 and "--margin must be a positive number" in err
    code, _, err = run_cli(["run", "--speed-margin", "1.5", "--out", str(tmp_path / "e")], monkeypatch, capsys)
    assert code == 2 and "--speed-margin must be a fraction" in err
    assert not any((tmp_path / name).exists() for name in "bcde")  # refused before anything was written


def test_auto_without_the_baseline_runs_the_first_round_only(tmp_path: Path) -> None:
    plan = plan_sweep(registry(), ["copy", "noisy"], ["cpu"], [0, 1, 2], BASE, str(SHAKESPEARE), Budget(max_steps=4))
    executor = KnownLosses()
    fair = FairOptions(seeds_auto=True)
    run_sweep(replace(plan, fair=fair), RunStore(tmp_path), QuietObserver(), executor=executor)
    assert sorted((spec.variant, spec.seed) for spec in executor.ran) == [
        (v, s) for v in ("copy", "noisy") for s in range(3)
    ]


PLUGIN = """
from minigpt import variant


@variant("baseline-copy", "the baseline again, under another name")
def baseline_copy(cfg):
    return cfg


@variant("tenth-lr", "a tenth of the learning rate: trains far less in a short budget")
def tenth_lr(cfg):
    return cfg.replace(lr=cfg.lr / 10, min_lr=cfg.min_lr / 10)
"""


@pytest.mark.slow
def test_a_copy_of_the_baseline_reads_equivalent_and_a_real_effect_is_decided(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)  # the report goes to reports/run here
    plugin = tmp_path / "plugin.py"
    plugin.write_text(PLUGIN)
    out = tmp_path / "run"
    args = ["run", "--seeds", "auto", "--max-seeds", "4", "--variants", "baseline,baseline-copy,tenth-lr",
            "--plugins", str(plugin), "--devices", "cpu", "--max-steps", "15", *TINY_SET, "--no-speed",
            "--out", str(out), "--quiet"]  # fmt: skip
    code, stdout, _ = run_cli(args, monkeypatch, capsys)
    assert code == 0
    summary = pd.read_csv(tmp_path / "reports" / "run" / "summary.csv").set_index("variant")
    assert summary.at["baseline-copy", "verdict"] == "equivalent"
    assert summary.at["tenth-lr", "verdict"] == "worse"
    assert "loss vs baseline on cpu" in stdout and "equivalent" in stdout  # the run ends with the verdicts
    assert json.loads((out / "sweep.json").read_text())["spec"]["seeds"] == "auto"
    assert math.isfinite(summary.at["tenth-lr", "detectable"])
