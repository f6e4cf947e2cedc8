"""The report of a run: pandas frames from the store -> summary tables -> seaborn figures ->
report.md, a self-contained report.html, results.csv (one row per trial) and summary.csv
(one row per variant and device).

    from minigpt.report import write_report
    write_report("runs/default", "reports/default")  # returns reports/default/report.html

Every mean over seeds comes with a 95% Student's t interval. A variant's verdict against the
baseline (on the same device) is better, worse, equivalent (within the margin) or undecided,
read from one interval of its paired difference whose error rate is split over the variants
and, for `run --seeds auto`, over the looks (minigpt.decide): at most 5% chance of any wrong
verdict per device. Speed is compared only through the interleaved speed phase (speed.json):
ratios paired within rounds, judged the same way.

Which columns the CSV files and tables hold comes from the metric schema (minigpt.metrics).

Modules, each depending only on those above it (and on minigpt.stats and minigpt.decide: intervals,
p-values, verdicts),
speed_results (speed.json), frames (run directory -> pandas), figures (seaborn), findings (sentences,
measurement warnings), floors (the corpus's floors and the budget warnings), size_gaps (Δ's trend
across a size ladder), document (blocks: tables), fair (tuning, sizes, FLOPs, Pareto), lengths,
render (Markdown, HTML, CSV, write_report).
"""

from minigpt.report.document import Block, Table, document, overview, variant_summary_table
from minigpt.report.figures import BASELINE_COLOUR, PLOTS, variant_palette, write_figures
from minigpt.report.findings import findings, measurement_warnings
from minigpt.report.frames import (
    BENCH_COLUMNS,
    STATUSES,
    ReportError,
    RunReport,
    describe_changes,
    load_bench,
    load_frames,
    point_columns,
    summarize_variants,
    summary_columns,
    trial_columns,
    variant_order,
)
from minigpt.report.render import build, default_report_dir, render_html, render_markdown, write_report
from minigpt.report.speed_results import SPEED_COLUMNS, SpeedPhase, load_speed
from minigpt.stats import (
    NO_CLEAR_DIFFERENCE,
    Interval,
    difference_interval,
    holm,
    mean_interval,
    t_cdf,
    t_quantile_975,
    two_sided_p,
    verdict,
)

__all__ = [
    "BASELINE_COLOUR", "BENCH_COLUMNS", "NO_CLEAR_DIFFERENCE", "PLOTS", "SPEED_COLUMNS", "STATUSES", "Block",
    "Interval", "ReportError", "RunReport", "SpeedPhase", "Table", "build", "default_report_dir", "describe_changes",
    "difference_interval", "document", "findings", "holm", "load_bench", "load_frames", "load_speed",
    "mean_interval", "measurement_warnings", "overview", "point_columns", "render_html", "render_markdown",
    "summarize_variants", "summary_columns", "variant_summary_table", "t_cdf", "t_quantile_975", "trial_columns", "two_sided_p",
    "variant_order", "variant_palette", "verdict", "write_figures", "write_report",
]  # fmt: skip
