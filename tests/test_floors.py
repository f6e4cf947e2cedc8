"""Floors (minigpt.floors, minigpt.report.floors): unigram and bigram losses against hand counts,
the report's floors sentence on old and new run directories, and its warnings where a budget or
tuning's quarter budget leaves the models too near the bigram."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from minigpt.data import load_corpus
from minigpt.floors import bigram_loss, clear_margin, clearly_past, corpus_floors, run_floors, unigram_loss
from minigpt.report import write_report
from minigpt.report.floors import budget_warning, floors_sentence, tuning_warning
from minigpt.sweep import corpus_digest
from tests.conftest import ONE_SEED, SHAKESPEARE, TINY_SET, run_cli

TRAIN = np.array([0, 1, 0, 1, 0])
VAL = np.array([1, 0, 2])


def test_unigram_is_add_one_smoothed_frequencies_of_the_training_split() -> None:
    # counts 3, 2, 0 of 5 characters over a vocabulary of 3: p = (n + 1) / 8
    expected = -(math.log(3 / 8) + math.log(4 / 8) + math.log(1 / 8)) / 3
    assert unigram_loss(TRAIN, VAL, 3) == pytest.approx(expected)


def test_bigram_is_add_one_smoothed_pair_counts_of_the_training_split() -> None:
    # pairs 01, 10, 01, 10: n(1 0) = 2 of the 2 pairs starting with 1; n(0 2) = 0 of 2 starting with 0
    expected = -(math.log((2 + 1) / (2 + 3)) + math.log((0 + 1) / (2 + 3))) / 2
    assert bigram_loss(TRAIN, VAL, 3) == pytest.approx(expected)


def test_bigram_matches_a_dense_table_on_random_text() -> None:
    rng = np.random.default_rng(0)
    vocab = 7
    train, val = rng.integers(0, vocab, 500), rng.integers(0, vocab, 200)
    table = np.ones((vocab, vocab))
    np.add.at(table, (train[:-1], train[1:]), 1)
    probs = table / table.sum(axis=1, keepdims=True)
    assert bigram_loss(train, val, vocab) == pytest.approx(-np.log(probs[val[:-1], val[1:]]).mean())


def test_tiny_shakespeare_floors_and_what_clearly_past_means() -> None:
    floors = corpus_floors(load_corpus(SHAKESPEARE))
    assert floors["unigram"] == pytest.approx(3.3473, abs=1e-3)
    assert floors["bigram"] == pytest.approx(2.4819, abs=1e-3)  # the "about 2.48"
    margin = clear_margin(floors)
    assert margin == pytest.approx(0.25 * (floors["unigram"] - floors["bigram"]))
    assert clearly_past(2.0, floors) and not clearly_past(2.394, floors)  # the committed ladder's xs baseline


def sweep_of(tmp_path: Path, **extra: object) -> dict:
    corpus = load_corpus(SHAKESPEARE)
    return {"data": str(SHAKESPEARE), "identity": {"corpus": corpus_digest(corpus)}, **extra}


def test_an_old_run_gets_its_floors_from_its_corpus_and_a_changed_corpus_none(tmp_path: Path) -> None:
    floors, note = run_floors(sweep_of(tmp_path))
    assert note is None and floors["bigram"] == pytest.approx(2.4819, abs=1e-3)
    recorded = {"unigram": 9.0, "bigram": 8.0, "smoothing": "add-one (Laplace)"}
    assert run_floors(sweep_of(tmp_path, floors=recorded)) == (recorded, None)  # recorded ones win
    changed = {**sweep_of(tmp_path), "identity": {"corpus": "0" * 64}}
    assert run_floors(changed)[0] is None and "no longer the one" in run_floors(changed)[1]
    missing = run_floors({"data": str(tmp_path / "gone.txt")})
    assert missing[0] is None and "could not be loaded" in missing[1]


FLOORS = {"unigram": 3.3, "bigram": 2.5, "smoothing": "add-one (Laplace)"}  # clearly past: below 2.3


def trials(rows: list[tuple[str, str, float]], stage: str = "eval") -> pd.DataFrame:
    return pd.DataFrame(
        [{"variant": v, "size": s, "device": "cpu", "best_val_loss": loss, "stage": stage} for v, s, loss in rows]
    )


def test_the_floors_sentence_puts_the_baselines_loss_beside_them_at_every_size() -> None:
    frame = trials([("baseline", "xxs", 2.4), ("baseline", "xxs", 2.6), ("baseline", "xs", 1.9), ("adamw", "xs", 2)])
    sentence = floors_sentence(FLOORS, frame)
    assert "unigram predictor scores 3.300 nats/char" in sentence and "a bigram 2.500 nats/char" in sentence
    assert "2.500 at xxs (0.000 below the bigram); 1.900 at xs (0.600 below the bigram)" in sentence


def test_the_budget_warning_names_each_trial_not_clearly_past_the_bigram() -> None:
    frame = trials([("baseline", "xxs", 2.31), ("baseline", "xs", 2.29), ("adamw", "xs", 2.45)])
    (warning,) = budget_warning(FLOORS, frame)
    assert warning.startswith("Budget too short: 2 of 3 evaluation trials ended above 2.300 nats/char, not 0.200")
    assert "baseline at xxs (2.310), adamw at xs (2.450)" in warning and "baseline at xs" not in warning
    assert budget_warning(FLOORS, trials([("baseline", "xs", 2.3)])) == []  # exactly the margin is clear


def test_tuning_is_flagged_where_even_its_best_quarter_budget_trial_is_near_the_bigram() -> None:
    frame = trials([("adamw", "xs", 2.45), ("adamw", "xs", 2.35), ("baseline", "xs", 2.1), ("baseline", "xs", 2.6)],
                   stage="tune-short")  # fmt: skip
    (warning,) = tuning_warning(FLOORS, frame)
    assert "adamw at xs (2.350)" in warning and "baseline" not in warning
    assert tuning_warning(FLOORS, frame[frame["variant"] == "baseline"]) == []


def test_a_short_run_reports_its_floors_and_warns_that_its_budget_is_too_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    command = ["run", "--devices", "cpu", "--data", str(SHAKESPEARE), "--out", str(tmp_path / "run"), "--quiet",
               "--no-report", "--no-speed", *TINY_SET, *ONE_SEED, "--variants", "baseline", "--max-steps", "3"]  # fmt: skip
    code, _, err = run_cli(command, monkeypatch, capsys)
    assert code == 0, err
    sweep = json.loads((tmp_path / "run" / "sweep.json").read_text())
    assert sweep["floors"]["bigram"] == pytest.approx(2.482, abs=1e-3)  # recorded by the run
    sweep.pop("floors")  # as a run from before floors were recorded
    (tmp_path / "run" / "sweep.json").write_text(json.dumps(sweep))
    write_report(tmp_path / "run", tmp_path / "report")
    findings = (tmp_path / "report" / "report.md").read_text().split("## Findings")[1].split("\n## ")[0]
    assert "Floors of this corpus" in findings and "a bigram 2.482 nats/char" in findings
    assert "Budget too short: 1 of 1 evaluation trials" in findings
