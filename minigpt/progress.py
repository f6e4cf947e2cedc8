"""What a sweep shows while it runs (a rich progress display, or plain log lines) and the
summary table it ends with."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from minigpt import metrics
from minigpt.errors import DiskFull
from minigpt.store import RESULTS
from minigpt.trial import TrialSpec

STATUS_STYLE = {
    "completed": "green",
    "failed": "red",
    "diverged": "magenta",
    "skipped": "yellow",
    "interrupted": "red",
    "running": "cyan",
}


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


class RichObserver:
    """Trials done of total, and the running trial's step, losses and tokens/s."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=True,
        )
        self.sweep_task = None
        self.total = 0
        self.trial_task = None

    def sweep_started(self, total: int, pending: int, notes: Sequence[str] = ()) -> None:
        for line in notes:
            self.console.print(line)
        self.progress.start()
        self.total = total
        self.sweep_task = self.progress.add_task("trials", total=self.total, status=f"{pending} to run")

    def trials_added(self, count: int) -> None:
        """A later stage of a tuned sweep planned `count` more trials: the bar's total grows."""
        self.total += count
        self.progress.update(self.sweep_task, total=self.total)

    def notes_added(self, lines: Sequence[str]) -> None:
        for line in lines:
            self.console.print(line, markup=False, highlight=False)

    def trial_started(self, spec: TrialSpec) -> None:
        self.trial_task = self.progress.add_task(spec.id, total=None, status="starting")

    def trial_point(self, spec: TrialSpec, point: dict[str, Any]) -> None:
        loss = point["val_loss"] if point["val_loss"] is not None else point["train_loss"]
        kind = "val" if point["val_loss"] is not None else "train"
        self.progress.update(
            self.trial_task,
            completed=point["step"],
            status=f"step {point['step']}  {kind} loss {_fmt(loss, '.3f')}  {_fmt(point['tokens_per_sec'], ',.0f')} tok/s",
        )

    def trial_finished(self, spec: TrialSpec, record: dict[str, Any], resumed: bool) -> None:
        if self.trial_task is not None:
            self.progress.remove_task(self.trial_task)
            self.trial_task = None
        self.progress.advance(self.sweep_task)
        if not resumed:
            self.console.log(trial_line(record))

    def close(self) -> None:
        self.progress.stop()


class LogObserver:
    """--quiet: one plain line per finished trial, for logs and CI."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def sweep_started(self, total: int, pending: int, notes: Sequence[str] = ()) -> None:
        for line in notes:
            self.console.print(line)
        self.console.print(f"{total} trials, {pending} to run")

    def trials_added(self, count: int) -> None:
        pass

    def notes_added(self, lines: Sequence[str]) -> None:
        for line in lines:
            self.console.print(line, markup=False, highlight=False)

    def trial_started(self, spec: TrialSpec) -> None:
        pass

    def trial_point(self, spec: TrialSpec, point: dict[str, Any]) -> None:
        pass

    def trial_finished(self, spec: TrialSpec, record: dict[str, Any], resumed: bool) -> None:
        if not resumed:
            self.console.print(trial_line(record), markup=False, highlight=False)

    def close(self) -> None:
        pass


def trial_line(record: dict[str, Any]) -> str:
    text = f"{record['trial_id']}: {record['status']}"
    if record.get("best_val_loss") is not None:
        text += f", best val loss {record['best_val_loss']:.4f}, {_fmt(record.get('tokens_per_sec'), ',.0f')} tok/s"
    if record.get("error"):
        text += f" ({record['error']})"
    return text


def trials_table(records: list[dict[str, Any]]) -> Table:
    """One row per trial, narrow enough for an 80-column terminal: two-line headers, one space
    between columns, and numbers and statuses never cut; only a very long trial id wraps."""
    table = Table(title="sweep summary", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=0)
    table.add_column("trial", overflow="fold")
    table.add_column("status", no_wrap=True)
    shown = [metric for metric in metrics.TRIAL_METRICS if metric.terminal]
    for metric in shown:
        table.add_column(metric.terminal[0], justify="right", no_wrap=True)
    for record in map(metrics.with_derived, records):
        style = STATUS_STYLE.get(record.get("status"), "")
        cells = [metric.format(record.get(metric.name), metric.terminal[1], missing="-") for metric in shown]
        table.add_row(record["trial_id"], f"[{style}]{record.get('status')}[/]", *cells)
    return table


def concurrency_warning(records: list[dict[str, Any]]) -> str | None:
    """The line a summary prints when some trials shared their machine with other trials."""
    shared = [r["trial_id"] for r in records if r.get("concurrent")]
    if not shared:
        return None
    return (
        f"warning: {len(shared)} trial(s) ran beside other trials on one machine (trial.json concurrent: true); "
        "their speed figures (tokens/s, step ms, MFU) are not comparable"
    )


def speed_table(speed: dict[str, Any]) -> Table:
    """The interleaved speed of every variant per device: ratio to the baseline (> 1 is faster)."""
    table = Table(title=f"interleaved speed ({speed['rounds']} rounds)")
    table.add_column("variant", no_wrap=True)
    table.add_column("device", no_wrap=True)
    table.add_column("speed", justify="right", no_wrap=True)
    table.add_column("95% interval", justify="right", no_wrap=True)
    table.add_column("verdict")
    for device, measured in speed["devices"].items():
        if "skipped" in measured:
            table.add_row("-", device, "-", "-", f"skipped: {measured['skipped']}")
            continue
        for name, row in measured["variants"].items():
            if "error" in row:
                table.add_row(name, device, "-", "-", row["error"])
                continue
            interval = f"[{row['speed_ratio_low']:.3f}, {row['speed_ratio_high']:.3f}]"
            table.add_row(name, device, f"{row['speed_ratio']:.3f}x", interval, row["speed_verdict"])
        if measured["drift"]["flagged"]:
            table.caption = f"warning: {device} changed speed by {measured['drift']['change']:+.0%} meanwhile"
    return table


def retry_line(records: list[dict[str, Any]], retried: list[str]) -> str | None:
    """How many failed trials this run retried, and how they ended this time."""
    if not retried:
        return None
    outcomes = Counter(r.get("status") for r in records if r and r["trial_id"] in retried)
    ends = ", ".join(f"{count} {status}" for status, count in outcomes.items())
    return f"retried {len(retried)} failed trial(s): {ends}"


def failures_line(records: list[dict[str, Any] | None], out: Path) -> str | None:
    """The last line of a run that any trial failed: how many, where their errors are, and a
    full disk by name (its message says where and how much space is left)."""
    failed = [r for r in records if r is None or r.get("status") not in RESULTS]
    if not failed:
        return None
    full = next((r["error"] for r in failed if r and DiskFull.__name__ in str(r.get("error"))), None)
    cause = f" ({full.removeprefix(DiskFull.__name__ + ': ')})" if full else ""
    return (
        f"{len(failed)} of {len(records)} trials failed{cause}; their errors are in "
        f"{out / 'trials' / 'TRIAL_ID' / 'trial.json'} (error, traceback); run the same command again to retry them"
    )


def measure_speed(console: Console, run_dir: Path, rounds: int, show: bool = True) -> dict:
    """The interleaved speed phase with a progress bar, then its table (one line when no device
    has two variants to compare) unless not `show`; returns what speed.json holds."""
    from minigpt.speed import WARMUP_ROUNDS, measure_run_speed, run_contenders, untimed_devices
    from minigpt.store import RunStore

    store = RunStore(run_dir)
    _, devices, _ = run_contenders(store)
    untimed = untimed_devices(store, devices)
    timed = len(devices) - len(untimed)
    with Progress(console=console, transient=True, disable=not timed) as progress:
        task = progress.add_task("interleaved speed", total=(rounds + WARMUP_ROUNDS) * timed)
        speed = measure_run_speed(run_dir, rounds, on_round=lambda: progress.advance(task))
    if not timed:  # speed.json says why, for the report
        reasons = "; ".join(untimed.values())
        console.print(f"interleaved speed: not measured ({reasons})", markup=False, highlight=False, soft_wrap=True)
        return speed
    if show:
        console.print(speed_table(speed))
    return speed
