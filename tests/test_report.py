"""The report: frames, every output file, a self-contained HTML
page (checked in headless Chromium where it is installed) and the `report` command's errors."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from minigpt.report import (
    BASELINE_COLOUR,
    NO_CLEAR_DIFFERENCE,
    ReportError,
    load_frames,
    summary_columns,
    trial_columns,
    variant_palette,
    write_report,
)

FIGURES = ("loss_curves.png", "throughput.png", "loss_difference.png", "best_val_loss.png", "speed_vs_quality.png",
           "time_to_target.png")  # fmt: skip
HOSTILE = "wider MLP <script>alert('x')</script> & more"

# best val loss and tokens/s per seed: `wide` is clearly worse, `tiny` overlaps the baseline.
RESULTS = {
    "baseline": {0: (2.00, 1000.0), 1: (2.02, 1100.0)},
    "wide": {0: (2.30, 600.0), 1: (2.33, 650.0)},
    "tiny": {0: (2.05, 1500.0), 1: (1.98, 1400.0)},
}


def write_trial(root: Path, variant: str, seed: int, status: str = "completed", **fields: object) -> None:
    trial_id = f"{variant}--cpu--s{seed}"
    directory = root / "trials" / trial_id
    directory.mkdir(parents=True)
    record = {
        "trial_id": trial_id, "variant": variant, "device": "cpu", "device_name": "test cpu", "seed": seed,
        "status": status, "changed": {} if variant == "baseline" else {"n_embd": 48},
        "description": HOSTILE if variant == "wide" else f"{variant} variant", "error": None,
        "target_loss": 2.1, "params": 1234, **fields,
    }  # fmt: skip
    (directory / "trial.json").write_text(json.dumps(record))
    if status == "completed":
        best = record["best_val_loss"]
        points = [
            {"step": 10, "seconds": 0.5 + seed, "train_loss": 3.0, "val_loss": best + 1.0},
            {"step": 15, "seconds": 0.8 + seed, "train_loss": 2.8, "val_loss": None},  # train-only log point
            {"step": 20, "seconds": 1.0 + seed, "train_loss": 2.6, "val_loss": best + 0.4},
            {"step": 30, "seconds": 1.5 + seed, "train_loss": 2.3, "val_loss": best},
        ]
        lines = [json.dumps({**p, "tokens": p["step"] * 64, "lr": 1e-3, "tokens_per_sec": 900.0}) for p in points]
        (directory / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def completed_fields(best: float, speed: float) -> dict[str, object]:
    return {
        "best_val_loss": best, "final_val_loss": best, "tokens_per_sec": speed, "step_ms_p50": 64_000 / speed,
        "steps": 30, "tokens": 1920, "wall_seconds": 1.5, "time_to_target_s": 1.2 if best <= 2.1 else None,
        "precision": "fp32", "mfu": speed / 80_000, "compile_seconds": None, "val_bytes_per_char": 1.0,
        "drift": {"before": 2.0e11, "after": 2.02e11, "change": 0.01}, "drift_flagged": False,
    }  # fmt: skip


def make_run(root: Path, results: dict = RESULTS, failed: bool = True) -> Path:
    root.mkdir(parents=True)
    (root / "sweep.json").write_text(json.dumps({"variants": list(results), "seeds": [0, 1], "target_loss": 2.1}))
    for variant, seeds in results.items():
        for seed, (best, speed) in seeds.items():
            write_trial(root, variant, seed, **completed_fields(best, speed))
    if failed:
        write_trial(root, "broken", 0, status="failed", error="RuntimeError: boom at step 3")
    return root


def write_speed(root: Path, flagged: bool = False, ratios: dict[str, list[float]] | None = None) -> None:
    """speed.json as the interleaved speed phase wrote it before the four verdicts (no per-round
    ratios): `wide` slower, `tiny` no clear difference; with `ratios`, each round's ratio as it writes now."""

    def entry(ratio: float, low: float, high: float, verdict: str) -> dict[str, object]:
        return {"step_ms_median": 80 / ratio, "tokens_per_sec": 800 * ratio, "speed_ratio": ratio,
                "speed_ratio_low": low, "speed_ratio_high": high, "speed_verdict": verdict}  # fmt: skip

    variants = {
        "baseline": entry(1.0, 1.0, 1.0, "baseline"),
        "wide": entry(0.60, 0.58, 0.62, "slower"),
        "tiny": entry(1.01, 0.98, 1.04, NO_CLEAR_DIFFERENCE),
    }
    for name, rounds in (ratios or {}).items():
        variants[name]["ratios"] = rounds
    drift = {"before": 2.0e11, "after": 2.24e11, "change": 0.12, "flagged": flagged}
    speed = {
        "rounds": 12, "steps_per_round": 3, "warmup_rounds": 2, "measured_at": "2025-01-01T00:00:00",
        "devices": {
            "cpu": {"device_name": "test cpu", "baseline": "baseline", "drift": drift, "variants": variants},
            "cuda": {"skipped": "no CUDA device on this machine"},
        },
    }  # fmt: skip
    (root / "speed.json").write_text(json.dumps(speed))


def write_bench(root: Path) -> None:
    medians = {"baseline": 0.002, "wide": 0.003, "tiny": 0.001}
    benchmarks = [
        {
            "name": f"test_{case}[{variant}-cpu]", "group": case, "params": {"variant": variant},
            "stats": {"median": median * scale * slow, "mean": median * scale * slow * 1.1},
            "extra_info": {"variant": variant, "device": "cpu", "case": case, "round": turn},
        }
        for turn, slow in enumerate((1, 2))  # the machine halves its speed in the second round
        for variant, median in medians.items()
        for case, scale in (("forward", 1), ("train_step", 3), ("decode_cached", 0.5), ("decode_uncached", 2))
    ]  # fmt: skip
    (root / "bench.json").write_text(json.dumps({"benchmarks": benchmarks}))


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = make_run(tmp_path_factory.mktemp("runs") / "demo")
    write_bench(run)
    write_speed(run)
    out = tmp_path_factory.mktemp("reports") / "demo"
    assert write_report(run, out) == out / "report.html"
    return out


def test_every_variant_keeps_one_colour_and_the_baseline_is_dark() -> None:
    palette = variant_palette(["wide", "baseline", "tiny"])
    assert palette["baseline"] == BASELINE_COLOUR
    assert len({tuple(colour) for colour in palette.values()}) == 3


# --- frames and tables -----------------------------------------------------------------------


def test_frames_hold_one_row_per_trial_and_per_metric_point(tmp_path: Path) -> None:
    trials, metrics = load_frames(make_run(tmp_path / "run"))
    assert len(trials) == 7 and set(trials["status"]) == {"completed", "failed"}
    assert len(metrics) == 6 * 4  # the failed trial wrote no points
    assert metrics["val_loss"].isna().sum() == 6  # train-only log points are kept, with no val loss
    assert trials.set_index("trial_id").at["wide--cpu--s0", "changed"] == "n_embd=48"
    assert not trials["concurrent"].any()  # absent in trial.json: the trial had its machine to itself


def test_results_csv_has_one_row_per_trial_with_the_contract_columns(report_dir: Path) -> None:
    results = pd.read_csv(report_dir / "results.csv")
    assert list(results.columns) == trial_columns()
    assert len(results) == 7
    assert {"variant", "device", "seed", "status", "best_val_loss", "tokens_per_sec", "error"} <= set(results.columns)
    failed = results[results["status"] == "failed"].iloc[0]
    assert failed["error"] == "RuntimeError: boom at step 3"


def test_summary_calls_only_clear_differences(report_dir: Path) -> None:
    summary = pd.read_csv(report_dir / "summary.csv").set_index("variant")
    assert list(summary.reset_index().columns) == summary_columns()
    assert summary.at["baseline", "verdict"] == "reference"
    assert summary.at["wide", "verdict"] == "worse"
    assert summary.at["tiny", "verdict"] == "undecided"
    assert summary.at["wide", "diff_vs_baseline"] == pytest.approx(0.305)  # paired: (0.30 + 0.31) / 2
    # differences 0.30, 0.31: t = 0.305 / 0.005 = 61 on 1 df; Holm doubles the smaller of two p-values
    assert summary.at["wide", "p_value"] == pytest.approx(2 / math.pi * math.atan(1 / 61), rel=1e-6)
    assert summary.at["wide", "p_holm"] == pytest.approx(2 * summary.at["wide", "p_value"])
    assert summary.at["tiny", "p_holm"] == pytest.approx(summary.at["tiny", "p_value"])
    assert summary.at["broken", "failed"] == 1 and summary.at["broken", "verdict"] == "no completed trials"


# --- outputs ---------------------------------------------------------------------------------


def test_every_output_file_is_written(report_dir: Path) -> None:
    for name in ("report.html", "report.md", "results.csv", "summary.csv", *FIGURES, "microbench.png"):
        assert (report_dir / name).stat().st_size > 0, name
    markdown = (report_dir / "report.md").read_text()
    for name in (*FIGURES, "microbench.png"):
        assert f"]({name})" in markdown  # linked relatively, so it renders on a code host


def test_failed_trials_are_listed_with_their_reasons(report_dir: Path) -> None:
    for page in ("report.md", "report.html"):
        text = (report_dir / page).read_text()
        assert "broken--cpu--s0" in text and "RuntimeError: boom at step 3" in text


def test_microbenchmarks_show_milliseconds_and_the_speed_paired_within_rounds(report_dir: Path) -> None:
    markdown = (report_dir / "report.md").read_text()
    assert r"4.500 ms, 0.67x \[0.67, 0.67\]" in markdown  # wide forward: 3 then 6 ms, against 2 then 4 ms
    assert r"0.750 ms, 2.00x \[2.00, 2.00\]" in markdown  # tiny decode_cached: 0.5 then 1 ms, against 1 then 2 ms


def test_html_is_self_contained_and_escapes_every_text(report_dir: Path) -> None:
    page = (report_dir / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert not re.search(r"<script|<link|@import|url\(", page, re.IGNORECASE)
    images = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert len(images) == len(FIGURES) + 1 and all(src.startswith("data:image/png;base64,") for src in images)
    assert "wider MLP &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in page
    assert "<script>" not in (report_dir / "report.md").read_text()


def test_a_single_variant_and_seed_still_reports(tmp_path: Path) -> None:
    run = make_run(tmp_path / "one", {"baseline": {0: (2.0, 1000.0)}}, failed=False)
    (run / "bench.json").write_text('{"benchmarks": [')  # cut short: noted, never fatal
    record_path = run / "trials" / "baseline--cpu--s0" / "trial.json"
    record_path.write_text(json.dumps({**json.loads(record_path.read_text()), "concurrent": True}))
    markdown = write_report(run, tmp_path / "out").with_name("report.md").read_text()
    assert "no intervals" in markdown and "All 1 trials completed." in markdown
    assert "bench.json could not be read" in markdown
    assert "1 trial(s) ran beside other trials" in markdown
    assert (tmp_path / "out" / "best_val_loss.png").is_file()
    assert not (tmp_path / "out" / "microbench.png").exists()


def test_a_run_of_failed_trials_still_reports(tmp_path: Path) -> None:
    run = make_run(tmp_path / "failed", {}, failed=True)
    out = tmp_path / "out"
    markdown = write_report(run, out).with_name("report.md").read_text()
    assert "no trial completed" in markdown and "RuntimeError: boom at step 3" in markdown
    assert not list(out.glob("*.png"))


def test_missing_or_empty_run_directories_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="does not exist"):
        write_report(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="no trials"):
        write_report(tmp_path / "empty", tmp_path / "out")


@pytest.mark.slow
def test_report_command_writes_to_reports_name_and_fails_in_one_line(tmp_path: Path) -> None:
    make_run(tmp_path / "runs" / "mini", {"baseline": {0: (2.0, 1000.0)}}, failed=False)
    command = [sys.executable, "-c", "from minigpt.cli import main; main()", "report"]
    done = subprocess.run([*command, "runs/mini"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "reports" / "mini" / "report.html").is_file()
    missing = subprocess.run([*command, "runs/none"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == ["error: run directory runs/none does not exist"]


def test_chromium_renders_the_figures(report_dir: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (Debian package `chromium`; .ci/run installs it)")
    from PIL import Image

    screenshot = tmp_path / "page.png"
    subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={screenshot}", "--window-size=1200,2000",
            (report_dir / "report.html").as_uri(),
        ],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    image = Image.open(screenshot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20)
    assert len(colours) > 200  # not blank (a blank page is one colour)
    # The figures are the only place where the variants' colours appear: find `wide`'s.
    wide = tuple(round(255 * c) for c in variant_palette(list(RESULTS))["wide"])
    painted = sum(count for count, rgb in colours if all(abs(a - b) <= 12 for a, b in zip(rgb, wide, strict=True)))
    assert painted > 500
