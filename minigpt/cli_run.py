"""`run` of a spec: what the `run` command does once its options are read (imported when it
runs, not for --help)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from minigpt.cli_shared import console
from minigpt.errors import UserError
from minigpt.interrupts import exit_code
from minigpt.spec import RunSpec


def run_spec(spec: RunSpec) -> None:
    """`run` of a spec: plan (every option parsed), sweep, summarize, measure speed, report and
    print the verdicts (see `run`)."""
    from minigpt.progress import (
        LogObserver,
        RichObserver,
        concurrency_warning,
        failures_line,
        measure_speed,
        retry_line,
        trials_table,
    )
    from minigpt.runner import run_sweep
    from minigpt.spec import plan_run
    from minigpt.trackers import publish_sweep, tracking_warnings

    run = plan_run(spec)
    plan, store, out = run.sweep, run.store, run.out
    planned = [] if spec.fresh else [t.id for t in plan.trials]
    retrying = [] if spec.no_retry else store.failed_trials(planned)
    for trial in store.unreadable_trials(planned):  # run again, not silently
        print(f"warning: {store.trial_dir(trial) / 'trial.json'} is unreadable (cut short?); running {trial} again",
              file=sys.stderr)  # fmt: skip
    observer = LogObserver(console) if spec.quiet else RichObserver(console)
    try:
        records = run_sweep(plan, store, observer, spec.fresh, run.executor)
    except KeyboardInterrupt as interrupt:
        observer.close()
        console.print(trials_table(store.trials()))
        console.print(f"interrupted: finished trials are kept in {out}; run the same command again to resume")
        raise typer.Exit(exit_code(interrupt)) from None
    observer.close()
    failures = failures_line(records, out)
    warnings = filter(None, (retry_line(records, retrying), concurrency_warning(records)))
    console.print(trials_table(records))
    for line in warnings:
        console.print(line, style="yellow", markup=False)
    console.print(f"results: {out}")
    if not spec.no_speed:
        try:  # its verdicts end the run, with the loss verdicts
            measure_speed(console, out, spec.speed_rounds, show=False)
        except Exception as error:  # the trials are done and kept: the report must still be written
            print(f"warning: the speed comparison failed ({type(error).__name__}: {error}); "
                  f"retry with `minigpt-bench speed {out}`", file=sys.stderr)  # fmt: skip
    kept = [out / "speed.json"]
    if not spec.no_report:
        from minigpt.report import default_report_dir, write_report

        console.print(f"report: {write_report(out, default_report_dir(out))}", soft_wrap=True)
        kept.append(default_report_dir(out))
    for line in [*tracking_warnings(records), *publish_sweep(plan.tracking, kept)]:
        print(line, file=sys.stderr)
    print_verdicts(out)
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
