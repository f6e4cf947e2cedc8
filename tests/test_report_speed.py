"""The report's speed side: interleaved ratios from speed.json, its absence, drift warnings, precision and MFU."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from minigpt.report import load_speed, trial_columns, write_report
from tests.test_report import RESULTS, make_run, write_speed


def report(run: Path, out: Path) -> str:
    return write_report(run, out).with_name("report.md").read_text()


def update_trial(run: Path, trial_id: str, **fields: object) -> None:
    path = run / "trials" / trial_id / "trial.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


def test_summary_takes_speed_from_speed_json_not_from_training(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    write_speed(run)
    write_report(run, tmp_path / "out")
    summary = pd.read_csv(tmp_path / "out" / "summary.csv").set_index("variant")
    wide = summary.loc["wide"]
    assert (wide["speed_ratio"], wide["speed_ratio_low"], wide["speed_ratio_high"]) == (0.60, 0.58, 0.62)
    assert wide["speed_verdict"] == "slower" and wide["interleaved_tokens_per_sec"] == pytest.approx(480.0)
    assert summary.at["tiny", "speed_verdict"] == "no clear difference"
    assert summary.at["baseline", "speed_verdict"] == "baseline" and summary.at["baseline", "speed_ratio"] == 1.0
    assert math.isnan(summary.at["broken", "speed_ratio"])  # not in speed.json
    # the training-time figure stays, labelled, and no longer feeds any ratio (625 / 1050 would be 0.595)
    assert "tokens_per_sec" not in summary.columns
    assert wide["tokens_per_sec_during_training"] == pytest.approx(625.0)


def test_findings_give_each_ratio_its_interval_and_verdict(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    write_speed(run)
    markdown = report(run, tmp_path / "out")
    # a speed.json from before the four verdicts keeps the verdicts it holds
    assert "wide 0.60x \\[0.58, 0.62\\], slower; tiny 1.01x \\[0.98, 1.04\\], no clear difference." in markdown
    assert "interleaved over 12 rounds" in markdown
    assert "On cuda, speed was not measured: no CUDA device on this machine." in markdown
    assert "0.60x \\[0.58, 0.62\\] slower |" in markdown  # the summary table's speed column
    findings = markdown.split("## Findings")[1].split("## Summary")[0]
    training_speeds = {f"{(seeds[0][1] + seeds[1][1]) / 2:,.0f}" for seeds in RESULTS.values()}  # 1,050, 625, 1,450
    assert not any(speed in findings for speed in training_speeds), findings  # no speed from training time
    assert "fastest" not in findings.lower()  # the one speed claim is the interleaved ratio's
    assert (tmp_path / "out" / "throughput.png").is_file() and (tmp_path / "out" / "speed_vs_quality.png").is_file()


def test_a_run_without_speed_json_says_how_to_measure_it(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    out = tmp_path / "out"
    out.mkdir()
    (out / "throughput.png").write_bytes(b"stale figure from an earlier report")
    markdown = report(run, out)
    assert markdown.count("no speed.json") == 1
    assert f"`minigpt-bench speed {run}` measures it" in markdown.replace("\\", "")
    summary = pd.read_csv(out / "summary.csv")
    assert summary[["speed_ratio", "speed_ratio_low", "speed_ratio_high", "speed_verdict"]].isna().all().all()
    assert not (out / "throughput.png").exists() and not (out / "speed_vs_quality.png").exists()
    assert "Measurement warnings" not in markdown  # nothing drifted, nothing shared a machine


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"devices": [', "could not be read"),
        ('{"devices": {"cpu": {"variants": {"wide": {"speed_verdict": "quicker"}}}}}', "'quicker' is not one of"),
        ('{"devices": {"cpu": 3}}', "devices.cpu is not a JSON object"),
    ],
)
def test_a_broken_speed_json_is_noted(tmp_path: Path, content: str, reason: str) -> None:
    (tmp_path / "speed.json").write_text(content)
    phase, note = load_speed(tmp_path)
    assert phase is None and note is not None and reason in note


def test_a_broken_speed_json_is_never_fatal(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", failed=False)
    (run / "speed.json").write_text('{"rounds": 12}')
    assert "speed.json could not be read (devices is not a JSON object)" in report(run, tmp_path / "out")


@pytest.mark.slow
def test_drifted_trials_and_speed_phases_are_listed_with_their_change(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    write_speed(run, flagged=True)
    update_trial(run, "wide--cpu--s1", drift={"before": 2.0e11, "after": 1.72e11, "change": -0.14}, drift_flagged=True)
    markdown = report(run, tmp_path / "out")
    warnings = markdown.split("## Measurement warnings")[1].split("## Summary")[0]
    assert "| wide--cpu--s1 | 200.0 GFLOP/s → 172.0 GFLOP/s | -14.0% |" in warnings
    assert "| speed phase on cpu | 200.0 GFLOP/s → 224.0 GFLOP/s | +12.0% |" in warnings
    assert "wide--cpu--s0" not in warnings  # drift within 10%: not flagged, not listed
    results = pd.read_csv(tmp_path / "out" / "results.csv").set_index("trial_id")
    assert bool(results.at["wide--cpu--s1", "drift_flagged"]) and results.at["wide--cpu--s1", "drift_change"] == -0.14


def test_precision_and_mfu_are_shown_and_a_trial_without_drift_still_reports(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    update_trial(run, "tiny--cpu--s0", precision="bf16")
    path = run / "trials" / "tiny--cpu--s1" / "trial.json"
    record = json.loads(path.read_text())
    for key in ("drift", "drift_flagged"):  # the probe after training failed: recorded, the trial stands
        record.pop(key)
    path.write_text(json.dumps({**record, "closing_error": "RuntimeError: probe failed"}))
    markdown = report(run, tmp_path / "out")
    # baseline: mfu = tokens/s / 80000, mean over seeds 1000 and 1100 -> 1.31%
    assert "| baseline (reference) | cpu | – | fp32 | 1,234 | 2/2 |" in markdown and "| 1.31% |" in markdown
    assert "| tiny | cpu | n\\_embd=48 | bf16, fp32 | 1,234 |" in markdown
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert list(results.columns) == trial_columns()
    probed_once = results.set_index("trial_id").loc["tiny--cpu--s1"]
    assert pd.isna(probed_once["drift_change"]) and not probed_once["drift_flagged"]


def test_a_variant_whose_speed_failed_is_named_and_the_others_still_compare(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    write_speed(run)
    speed = json.loads((run / "speed.json").read_text())
    speed["devices"]["cpu"]["variants"]["tiny"] = {"error": "RuntimeError: out of memory"}
    (run / "speed.json").write_text(json.dumps(speed))
    write_report(run, tmp_path / "out")
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "tiny's speed could not be measured (RuntimeError: out of memory)" in markdown
    assert "wide 0.60x" in markdown


def test_per_round_ratios_are_judged_again_with_the_four_verdicts(tmp_path: Path) -> None:
    """speed.json keeps every round's ratio: the report judges them under the run's speed margin,
    the error rate split over the device's variants, and gives the adjusted p-value."""
    run = make_run(tmp_path / "run")
    wide = [0.60, 0.61, 0.59, 0.60, 0.62, 0.58]
    tiny = [1.001, 0.999, 1.002, 0.998, 1.000, 1.000]
    write_speed(run, ratios={"wide": wide, "tiny": tiny})
    markdown = report(run, tmp_path / "out")
    summary = pd.read_csv(tmp_path / "out" / "summary.csv").set_index("variant")
    assert summary.at["wide", "speed_verdict"] == "slower" and summary.at["wide", "speed_p_adjusted"] < 0.05
    assert summary.at["tiny", "speed_verdict"] == "equivalent"  # within the 2% margin, now a verdict
    logs = [math.log(r) for r in wide]
    assert summary.at["wide", "speed_ratio"] == pytest.approx(math.exp(sum(logs) / len(logs)))
    assert "Speed on cpu, measured interleaved, against the baseline, highest ratio first:" in markdown
    assert "equivalent within ±2%" in markdown
