"""`run` of a spec, and the interleaved speed phase with its progress bar: what the `run` and
`speed` commands do once their options are parsed (imported when a command runs, not for --help)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from minigpt.cli_shared import console, discover_variants
from minigpt.errors import UserError
from minigpt.executors import executor_options
from minigpt.interrupts import exit_code
from minigpt.spec import RunSpec


def run_spec(spec: RunSpec) -> None:
    """`run` of a spec: plan, sweep, summarize, measure speed and report (see `run`)."""
    out = Path(spec.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a run directory; choose another path")
    chosen_executor = executor_options(
        spec.executor, {"ray_address": spec.ray_address, "ray_cpus_per_trial": spec.ray_cpus_per_trial}
    )
    chosen_executor.prepare()  # what it starts now overlaps this process's imports and the planning
    from minigpt.progress import (
        LogObserver,
        RichObserver,
        concurrency_warning,
        failures_line,
        retry_line,
        summary_table,
        unreadable_warnings,
    )
    from minigpt.spec import plan_run
    from minigpt.speed import check_rounds
    from minigpt.stages import run_fair_sweep
    from minigpt.store import RunStore
    from minigpt.sweep import run_sweep
    from minigpt.trackers import publish_sweep, tracking_warnings

    if not spec.no_speed:
        check_rounds(spec.speed_rounds, "--speed-rounds")
    registry = discover_variants([Path(p) for p in spec.plugins])
    plan, fair = plan_run(spec, registry)
    store = RunStore(out, retry_failed=not spec.no_retry)
    retrying = [] if spec.fresh or spec.no_retry else store.failed_trials([t.id for t in plan.trials])
    for line in [] if spec.fresh else unreadable_warnings(store, [t.id for t in plan.trials]):
        print(line, file=sys.stderr)
    observer = LogObserver(console) if spec.quiet else RichObserver(console)
    try:
        if fair.active:
            records = run_fair_sweep(registry, plan, fair, store, observer, spec.fresh, chosen_executor)
        else:
            records = run_sweep(plan, store, observer, spec.fresh, chosen_executor)
    except KeyboardInterrupt as interrupt:
        observer.close()
        console.print(summary_table(store.trials()))
        console.print(f"interrupted: finished trials are kept in {out}; run the same command again to resume")
        raise typer.Exit(exit_code(interrupt)) from None
    observer.close()
    console.print(summary_table(records))
    for line in filter(None, (retry_line(records, retrying), concurrency_warning(records))):
        console.print(line, style="yellow", markup=False)
    for line in tracking_warnings(records):
        print(line, file=sys.stderr)
    console.print(f"results: {out}")
    if not spec.no_speed:
        try:
            measure_speed(out, spec.speed_rounds, show=False)  # its verdicts end the run, with the loss verdicts
        except Exception as error:  # the trials are done and kept: the report must still be written
            print(f"warning: the speed comparison failed ({type(error).__name__}: {error}); "
                  f"retry with `minigpt-bench speed {out}`", file=sys.stderr)  # fmt: skip
    kept = [out / "speed.json"]
    if not spec.no_report:
        from minigpt.report import default_report_dir, write_report

        console.print(f"report: {write_report(out, default_report_dir(out))}", soft_wrap=True)
        kept.append(default_report_dir(out))
    for line in publish_sweep(plan.tracking, kept):
        print(line, file=sys.stderr)
    print_verdicts(out)
    failures = failures_line(records, out)
    if failures:
        sys.stdout.flush()  # the last line, also where stdout and stderr go to one pipe
        print(f"error: {failures}", file=sys.stderr)
        raise typer.Exit(1)


def print_verdicts(run_dir: Path) -> None:
    """The answer the run was for: per device the loss verdict table, then the speed one, as the
    report's Findings open with them."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from minigpt.report.document import loss_verdict_table, speed_verdict_table
    from minigpt.report.render import build

    try:
        report = build(run_dir)
    except UserError as error:  # no trial completed: nothing to judge
        console.print(f"verdicts: none ({error})", markup=False, highlight=False, soft_wrap=True)
        return
    titles = (f"±{report.design.margin:g} nats", f"±{100 * report.design.speed_margin:g}%")
    for device in report.devices:
        for kind, margin, verdicts in (
            ("loss", titles[0], loss_verdict_table(report, device)),
            ("speed", titles[1], speed_verdict_table(report, device)),
        ):
            if verdicts is None or not verdicts.rows:
                continue
            # the report's table less its last column (smallest detectable), to fit 80 columns
            shown = TERMINAL_COLUMNS.get(kind, len(verdicts.columns))
            title = f"{kind} vs baseline on {device}, equivalent within {margin}"
            table = Table(
                title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), collapse_padding=True
            )
            for column in verdicts.columns[:shown]:
                verdict = column == "verdict"
                table.add_column(column.replace("adjusted p", "adj. p"), no_wrap=not verdict,
                                 min_width=len("equivalent") if verdict else None,
                                 justify="left" if column in ("variant", "verdict") else "right")  # fmt: skip
            for row in verdicts.rows:
                table.add_row(*map(escape, row[:shown]))
            console.print(table)


TERMINAL_COLUMNS = {"loss": 7}


def measure_speed(run_dir: Path, rounds: int, show: bool = True) -> dict:
    """The interleaved speed phase with a progress bar, then its table (one line when no device
    has two variants to compare) unless not `show`; returns what speed.json holds."""
    from rich.progress import Progress

    from minigpt.progress import speed_table
    from minigpt.speed import WARMUP_ROUNDS, measure_run_speed, run_contenders, untimed_devices
    from minigpt.store import RunStore

    store = RunStore(run_dir)
    _, devices, _ = run_contenders(store)
    untimed = untimed_devices(store, devices)
    if len(untimed) == len(devices):
        speed = measure_run_speed(run_dir, rounds)  # speed.json says why, for the report
        reasons = "; ".join(untimed.values())
        console.print(f"interleaved speed: not measured ({reasons})", markup=False, highlight=False, soft_wrap=True)
        return speed
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("interleaved speed", total=(rounds + WARMUP_ROUNDS) * (len(devices) - len(untimed)))
        speed = measure_run_speed(run_dir, rounds, on_round=lambda: progress.advance(task))
    if show:
        console.print(speed_table(speed))
    return speed
