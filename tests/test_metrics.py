"""The metric schema: declared once, consistent, and the only list the report and the terminal read."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from minigpt import metrics
from minigpt.progress import trials_table as terminal_table
from minigpt.report import build, summary_columns, trial_columns, variant_summary_table, write_report
from minigpt.report.frames import COMPARISON_COLUMNS, STATUSES
from minigpt.report.speed_results import SPEED_VALUES
from tests.test_report import make_run, write_speed

# trial.json summary fields DESIGN.md promises: each one a declared trial metric
CONTRACT = (
    "params", "best_val_loss", "final_val_loss", "steps", "tokens", "wall_seconds", "tokens_per_sec", "step_ms_p50",
    "step_ms_p90", "peak_memory_mb", "flops_per_token", "mfu", "time_to_target_s",
)  # fmt: skip
REPORT_HEADERS = {  # the summary table's columns that are not metrics
    "variant", "device", "changes", "precision", "completed", "Δ vs baseline [adjusted]", "Δ %", "adjusted p",
    "verdict", "speed vs baseline [interval], interleaved",
}  # fmt: skip


@pytest.mark.parametrize("level", ["trial", "point"])
def test_every_metric_is_declared_once_with_valid_fields(level: metrics.Level) -> None:
    declared = metrics.declared(level)
    assert len(metrics.names(level)) == len(set(metrics.names(level)))
    for index, metric in enumerate(declared):
        assert metric.level == level and metric.label and metric.description and metric.unit is not None
        assert metric.kind in ("size", "quality", "progress", "cost", "corpus")
        assert metric.aggregate in ("interval", "mean", "max", "none")
        assert metric.format(1.5) != "–" and metric.format(None) == "–" and metric.format(float("nan")) == "–"
        if metric.derivation is not None:  # computed in order: its inputs come before it
            assert set(metric.derivation.inputs) <= {m.name for m in declared[:index]}, metric.name
        if metric.count_column or metric.in_report or metric.terminal:
            assert level == "trial"
        if metric.in_report:
            assert metric.aggregate != "none", f"{metric.name} is in the report's table but summary.csv lacks it"


def test_the_on_disk_contract_fields_are_declared() -> None:
    assert set(CONTRACT) <= set(metrics.names("trial"))
    assert {"step", "tokens", "seconds", "train_loss", "val_loss", "lr", "tokens_per_sec"} <= set(
        metrics.names("point")
    )


def test_every_summary_column_is_a_declared_metric_or_a_fixed_column() -> None:
    columns = summary_columns()
    assert len(columns) == len(set(columns))
    declared = {column for m in metrics.TRIAL_METRICS for column in m.summary_columns()}
    fixed = {
        "variant",
        "device",
        "size",
        "trials",
        "precision",
        "changed",
        "description",
        *STATUSES,
        *COMPARISON_COLUMNS,
    }
    assert set(columns) == declared | fixed | set(SPEED_VALUES)
    # the speed contract (DESIGN.md) and the columns this schema replaced keep their names
    assert {"speed_ratio", "speed_ratio_low", "speed_ratio_high", "speed_verdict", "best_val_loss_low",
            "tokens_per_sec_during_training", "step_ms_p50_during_training", "reached_target"} <= set(columns)  # fmt: skip


def test_every_column_of_the_report_table_is_declared(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    write_speed(run)
    table = variant_summary_table(build(run))
    headers = {f"{m.label}{suffix}" for m in metrics.TRIAL_METRICS for suffix in ("", " [95%]", " [95%] (seeds)")}
    assert set(table.columns) - REPORT_HEADERS <= headers
    shown = [m for m in metrics.TRIAL_METRICS if m.in_report and not m.same_as]
    assert len(table.columns) - len(REPORT_HEADERS) == len(shown)


def test_results_csv_holds_every_trial_metric(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_report(make_run(tmp_path / "run"), out)
    results = pd.read_csv(out / "results.csv")
    assert list(results.columns) == trial_columns()
    assert set(metrics.names("trial")) <= set(results.columns)


def test_derived_metrics_are_computed_in_order_from_their_inputs() -> None:
    doubled = metrics.Derivation(("a",), lambda a: 2 * a)
    assert doubled({"a": 1.5}) == 3.0 and doubled({"a": None}) is None and doubled({}) is None


LOSS_X2 = metrics.Metric(
    "loss_x2", "trial", "quality", "nats/char", ".3f", "loss x2", "twice the best validation loss (a test metric)",
    aggregate="interval", lower_is_better=True, derivation=metrics.Derivation(("best_val_loss",), lambda x: 2 * x),
    in_report=True, terminal=("x2", ".2f"),
)  # fmt: skip
RECORDED = metrics.Metric(
    "grad_norm", "trial", "cost", "", ".2f", "grad norm", "a measured test metric", aggregate="mean", in_report=True
)


def test_a_metric_added_to_the_schema_flows_through_every_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "TRIAL_METRICS", (*metrics.TRIAL_METRICS, LOSS_X2, RECORDED))
    run = make_run(tmp_path / "run", failed=False)
    for trial in (run / "trials").iterdir():  # as the trainer would record a measured metric
        record = json.loads((trial / "trial.json").read_text())
        (trial / "trial.json").write_text(json.dumps({**record, "grad_norm": 0.5 + record["seed"]}))
    out = tmp_path / "out"
    write_report(run, out)

    results = pd.read_csv(out / "results.csv")
    assert (results["loss_x2"] == 2 * results["best_val_loss"]).all()
    assert set(results["grad_norm"]) == {0.5, 1.5}
    summary = pd.read_csv(out / "summary.csv").set_index("variant")
    assert {"loss_x2", "loss_x2_low", "loss_x2_high", "grad_norm"} <= set(summary.columns)
    assert summary.at["wide", "loss_x2"] == pytest.approx(2 * summary.at["wide", "best_val_loss"])
    assert summary.at["wide", "loss_x2_high"] == pytest.approx(2 * summary.at["wide", "best_val_loss_high"])
    assert summary.at["wide", "grad_norm"] == 1.0
    markdown = (out / "report.md").read_text()
    assert "loss x2 \\[95%\\]" in markdown and "| grad norm |" in markdown
    assert "| 4.630 \\[4.249, 5.011\\] |" in markdown  # wide: 2 x (2.30, 2.33)

    console = Console(width=120, record=True, color_system=None)
    console.print(terminal_table([json.loads(p.read_text()) for p in sorted(run.glob("trials/*/trial.json"))]))
    line = next(line for line in console.export_text().splitlines() if line.startswith("wide--cpu--s0"))
    assert line.split()[-1] == "4.60"


def test_a_metric_declared_the_same_as_another_is_shown_only_where_they_differ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    same = replace(LOSS_X2, name="same_loss", label="same loss", same_as="best_val_loss", terminal=None)
    same = replace(same, derivation=metrics.Derivation(("best_val_loss",), lambda x: x))
    monkeypatch.setattr(metrics, "TRIAL_METRICS", (*metrics.TRIAL_METRICS, same))
    run = make_run(tmp_path / "run", failed=False)
    markdown = write_report(run, tmp_path / "out").with_name("report.md").read_text()
    assert "same loss \\[95%\\]" not in markdown
    assert "Same loss is left out of the table: it equals best val loss for every variant here" in markdown
    assert "same_loss_low" in pd.read_csv(tmp_path / "out" / "summary.csv").columns  # the CSV keeps every column


# --- bits per character -----------------------------------------------------------------------


def test_bits_per_character_is_the_loss_over_ln2_in_trial_json(tmp_path: Path) -> None:
    from minigpt.config import Config
    from minigpt.data import Corpus
    from minigpt.train import Budget
    from minigpt.trial import TrialJob, TrialSettings, TrialSpec, begin_record, train_trial
    from tests.conftest import SHAKESPEARE, TINY

    config = Config(**TINY, warmup_steps=2, eval_interval=5, eval_batches=2)
    spec = TrialSpec("baseline", "the reference", "cpu", 0, config, {})
    settings = TrialSettings("tiny-shakespeare", Budget(max_steps=8), None)
    corpus = Corpus.from_text(SHAKESPEARE.read_text()[:20_000], "head")
    record = train_trial(
        begin_record(spec, settings), TrialJob(spec, settings, corpus, {"fp32": 1e11}), tmp_path, lambda p: None
    )
    assert record["status"] == "completed"
    assert record["best_val_bpc"] == pytest.approx(record["best_val_loss"] / math.log(2), rel=1e-12)
    assert record["final_val_bpc"] == pytest.approx(record["final_val_loss"] / math.log(2), rel=1e-12)
    assert record["val_bytes_per_char"] == 1.0 and record["best_val_bpb"] == record["best_val_bpc"]  # ASCII
    json.dumps(record)  # trial.json holds it as it is


def test_bits_per_character_is_the_loss_over_ln2_in_both_csv_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_report(make_run(tmp_path / "run"), out)
    results = pd.read_csv(out / "results.csv")
    assert results["best_val_bpc"].to_numpy() == pytest.approx(results["best_val_loss"] / math.log(2), nan_ok=True)
    assert results["final_val_bpc"].to_numpy() == pytest.approx(results["final_val_loss"] / math.log(2), nan_ok=True)
    summary = pd.read_csv(out / "summary.csv")
    for suffix in ("", "_low", "_high"):
        bpc, loss = summary[f"best_val_bpc{suffix}"], summary[f"best_val_loss{suffix}"]
        assert bpc.to_numpy() == pytest.approx(loss / math.log(2), nan_ok=True)
    markdown = (out / "report.md").read_text()
    assert "| 2.0100 \\[1.8829, 2.1371\\] | 2.8998 \\[2.7165, 3.0831\\] |" in markdown  # bpc beside the loss
    assert "Lowest best validation loss: baseline (2.0100 nats/char, 2.8998 bits/char)" in markdown


# --- bits per byte ----------------------------------------------------------------------------


def test_bytes_per_character_of_the_validation_split() -> None:
    from minigpt.data import Corpus

    assert Corpus.from_text("abcd" * 100, "ascii").val_bytes_per_char == 1.0
    # é is two bytes and € three: the last tenth (40 characters) holds 10 of each and 20 ASCII
    assert Corpus.from_text("ab" * 180 + "é€ab" * 10, "utf8").val_bytes_per_char == (10 * 2 + 10 * 3 + 20) / 40
    cut = Corpus.from_text("a" * 300 + "b" * 60 + "xyz" * 20, "cut", max_vocab=3)  # x, y, z become U+FFFD
    assert cut.val_bytes_per_char is None  # their bytes are gone
    assert Corpus.from_text("a" * 300 + "xyz" * 20 + "b" * 60, "cut early", max_vocab=3).val_bytes_per_char == 1.0


def test_bits_per_byte_are_shown_only_where_the_text_is_not_ascii(tmp_path: Path) -> None:
    ascii_run = make_run(tmp_path / "ascii")
    markdown = write_report(ascii_run, tmp_path / "ascii_out").with_name("report.md").read_text()
    assert "best val bpb" not in markdown.split("## Summary")[1].split("\n\n")[1]  # not a column of the table
    assert "Best val bpb is left out of the table: it equals best val bpc for every variant here" in markdown
    results = pd.read_csv(tmp_path / "ascii_out" / "results.csv")
    assert (results["best_val_bpb"].dropna() == results["best_val_bpc"].dropna()).all()

    utf8_run = make_run(tmp_path / "utf8", failed=False)
    for path in utf8_run.glob("trials/*/trial.json"):
        path.write_text(json.dumps({**json.loads(path.read_text()), "val_bytes_per_char": 1.25}))
    markdown = write_report(utf8_run, tmp_path / "utf8_out").with_name("report.md").read_text()
    assert "| best val bpc \\[95%\\] | best val bpb \\[95%\\] |" in markdown
    assert "left out of the table" not in markdown
    summary = pd.read_csv(tmp_path / "utf8_out" / "summary.csv")
    assert summary["best_val_bpb"].to_numpy() == pytest.approx(summary["best_val_bpc"] / 1.25)
    assert summary["best_val_bpb_high"].to_numpy() == pytest.approx(summary["best_val_bpc_high"] / 1.25)
