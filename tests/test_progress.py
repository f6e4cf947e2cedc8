"""The summary a sweep ends with fits an 80-column terminal without cutting a value."""

from __future__ import annotations

from rich.console import Console

from minigpt.metrics import si
from minigpt.progress import trials_table

WIDEST = {  # the widest values a sweep writes: long names, a cuda index, fast GPUs, slow CPUs
    "trial_id": "attn-looped--cuda:1--s12",
    "status": "interrupted",
    "best_val_loss": 12.34567,
    "tokens_per_sec": 12_345_678.9,
    "step_ms_p50": 1234.56,
    "mfu": 0.999,
    "time_to_target_s": 1234.5,
}
TYPICAL = {
    "trial_id": "sinusoidal-pos--cpu--s0",
    "status": "completed",
    "best_val_loss": 1.6203,
    "tokens_per_sec": 41_234.0,
    "step_ms_p50": 49.7,
    "mfu": 0.0412,
    "time_to_target_s": None,
}
CELLS = [  # bits per character beside the loss (derived from it), tokens/s in three figures
    ["attn-looped--cuda:1--s12", "interrupted", "12.3457", "17.811", "12.3M", "1234.6", "99.9%", "1234.5"],
    ["sinusoidal-pos--cpu--s0", "completed", "1.6203", "2.338", "41.2k", "49.7", "4.1%", "-"],
]


def test_the_summary_fits_80_columns_with_every_cell_whole() -> None:
    console = Console(width=80, record=True, color_system=None)
    console.print(trials_table([WIDEST, TYPICAL]))
    lines = console.export_text().splitlines()

    assert max(len(line) for line in lines) <= 80
    for row in CELLS:
        line = next(line for line in lines if line.startswith(row[0]))
        assert line.split() == row
    assert "…" not in "\n".join(lines)


def test_counts_read_in_three_figures_with_a_unit_suffix() -> None:
    values = (987.0, 999.6, 3_902.0, 41_234.0, 999_400.0, 999_999.0, 12_345_678.9, 2.5e9)
    assert [si(v) for v in values] == ["987", "1.00k", "3.90k", "41.2k", "999k", "1.00M", "12.3M", "2.50G"]
