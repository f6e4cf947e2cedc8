"""`variants list` filters by a name glob and groups its table by family (its JSON stays a
flat list); `variants show` prints the configuration change and the file a variant is from."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from minigpt.cli_variants import family_table

from .conftest import run_cli


def test_list_filters_by_glob_and_its_json_is_a_flat_list_with_the_family(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    code, out, err = run_cli(["variants", "list", "attn-*", "--json"], monkeypatch, capsys)
    assert code == 0, err
    rows = json.loads(out)
    assert [row["name"] for row in rows] == ["attn-manual", "attn-looped"]
    assert all(row["family"] == "attention" and not isinstance(row["params"], dict) for row in rows)


def test_a_glob_matching_nothing_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    code, _, err = run_cli(["variants", "list", "zz-*"], monkeypatch, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no variant matches 'zz-*'")


def test_the_table_groups_rows_by_family_in_the_order_families_are_first_found() -> None:
    rows = [
        {"name": name, "family": family, "description": "d", "source": "built-in", "params": 1}
        for name, family in [("a1", "fa"), ("b1", "fb"), ("a2", "fa")]
    ]
    console = Console(record=True, width=120)
    console.print(family_table(rows, "3 variants"))
    lines = [line for line in console.export_text().splitlines() if any(f" {n} " in line for n in ("a1", "a2", "b1"))]
    assert [line.split("│")[2].strip() for line in lines] == ["a1", "a2", "b1"]
    assert [line.split("│")[1].strip() for line in lines] == ["fa", "", "fb"]  # each family named once


def test_show_prints_the_change_and_the_file_it_comes_from(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    code, out, err = run_cli(["variants", "show", "parallel-block"], monkeypatch, capsys)
    assert code == 0, err
    assert "block: 'pre-norm' -> 'parallel'" in out
    defined = next(line for line in out.splitlines() if line.startswith("defined in "))
    assert defined.replace("\\", "/").endswith("variants/blocks.py")
