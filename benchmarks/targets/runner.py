"""What the acceptance scripts share: checkouts and their bounded processes, whole `run` processes
and the trials they wrote, git, settings, verdicts on goals, the log and the report files.

The scripts need a git checkout (they compare commits and write under reports/), so they stay
out of the wheel; their statistics and interleaving come from the library (minigpt.stats,
minigpt.interleave), as the tool's own comparisons do.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from minigpt.stats import MedianInterval

REPO = Path(__file__).resolve().parents[2]
CLI_RUN = ("-m", "minigpt.cli", "run")  # after the Python executable: one whole `run` process
# Options that skip work a measurement does not need; an older engine may lack some.
SKIP_OPTIONS = ("--no-speed", "--no-report")


class Log:
    """Prints as it goes and keeps every line for the report."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)


def bounded(
    command: list[str], *, cwd: Path, env: dict[str, str], timeout: float, merge_stderr: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run a command in its own process group, so that a timeout ends the trial workers a `run`
    starts as well as the `run` itself. Past the timeout the whole group is killed and
    subprocess.TimeoutExpired raised, carrying the output so far; the caller says what that means."""
    stderr = subprocess.STDOUT if merge_stderr else subprocess.PIPE
    with subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True
    ) as process:
        try:
            stdout, errors = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, errors = process.communicate()
            raise subprocess.TimeoutExpired(command, timeout, output=stdout, stderr=errors) from None
        except KeyboardInterrupt:  # its own session does not see the terminal's Ctrl-C: pass it on
            os.killpg(process.pid, signal.SIGKILL)
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, errors or "")


def git(*args: str, check: bool = True) -> str:
    """git in this checkout; a failure ends the script, or with check=False gives empty output."""
    done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def commit_of(revision: str) -> str:
    """The full hash of a revision of this repository; an unknown one ends the script."""
    return git("rev-parse", "--verify", f"{revision}^{{commit}}")


@contextmanager
def old_worktree(commit: str) -> Iterator[Path]:
    """A detached worktree of an older commit in a temporary folder, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="minigpt-old-"))  # `anonymous` knows the prefix
    path = folder / "checkout"
    git("worktree", "add", "--detach", str(path), commit)
    try:
        yield path
    finally:
        git("worktree", "remove", "--force", str(path))
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Checkout:
    """One version of the engine: a source tree, the commit it holds and the `run` options its CLI knows."""

    label: str  # how reports name it: "old", "new", "this"
    root: Path
    commit: str
    options: frozenset[str] = field(default_factory=frozenset)

    def env(self) -> dict[str, str]:
        # Replace PYTHONPATH rather than extend it: another checkout must never be importable.
        return {**os.environ, "PYTHONPATH": str(self.root), "COLUMNS": "200"}

    def python(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        """Run this checkout's Python, bounded: a process past the timeout ends the whole script."""
        try:
            return bounded([sys.executable, *args], cwd=self.root, env=self.env(), timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SystemExit(
                f"the {self.label} checkout's `python {shlex.join(args)}` ran past {timeout:.0f} s"
            ) from None

    def inspect(self) -> None:
        """Learn the run options and check that this checkout's engine is the one imported."""
        found = self.python("-c", "import minigpt; print(minigpt.__file__)", timeout=60).stdout.strip()
        if not Path(found).resolve().is_relative_to(self.root.resolve()):
            raise SystemExit(f"the {self.label} checkout imports minigpt from {found}, not from its own tree")
        usage = self.python(*CLI_RUN, "--help", timeout=60).stdout
        self.options = frozenset(re.findall(r"--[a-z][a-z0-9-]*", usage))

    def script(self, name: str) -> str:
        """The path of an acceptance script in this checkout: benchmarks/targets/ now, benchmarks/ before."""
        moved = Path("benchmarks", "targets", name)
        return str(moved if (self.root / moved).is_file() else Path("benchmarks", name))


def this_checkout(label: str = "this") -> Checkout:
    """The checkout these scripts are in (not yet inspected)."""
    return Checkout(label, REPO, git("rev-parse", "HEAD", check=False) or "unknown")


@dataclass
class Run:
    """One whole `run` process: the command as a reader reruns it, its wall time, exit status and
    output tail, and the first trial it wrote (with its metrics)."""

    checkout: str
    command: str
    wall_s: float
    returncode: int  # 124 when it ran past its time, as `timeout` says
    output_tail: str
    trial: dict[str, Any] | None
    metrics: list[dict[str, Any]]

    def failure(self) -> str | None:
        """Why the run did not train to the end, in a few lines; None when it did."""
        if self.returncode == 0 and self.trial and self.trial.get("status") == "completed":
            return None
        status = self.trial.get("status") if self.trial else "no trial written"
        error = f": {self.trial.get('error')}" if self.trial and self.trial.get("error") else ""
        return f"exit {self.returncode}, {status}{error}\n{self.output_tail}"


def run_options(checkout: Checkout, args: list[str], out: Path, skips: tuple[str, ...] = SKIP_OPTIONS) -> list[str]:
    """The options of one `run`: ARGS, the output folder, and those of SKIPS this engine knows."""
    return [*args, "--out", str(out), "--quiet", *(option for option in skips if option in checkout.options)]


def command_line(checkout: Checkout, args: list[str], out: Path, skips: tuple[str, ...] = SKIP_OPTIONS) -> str:
    """`run` as a reader reruns it: in the named checkout, the temporary folder as $TMP."""
    options = shlex.join(run_options(checkout, args, out, skips))
    return f"[{checkout.label} checkout] PYTHONPATH=. python -m minigpt.cli run {options}".replace(
        str(out.parent), "$TMP"
    )


def cli_run(
    checkout: Checkout, args: list[str], out: Path, timeout: float, skips: tuple[str, ...] = SKIP_OPTIONS
) -> Run:
    """Time one whole `minigpt.cli run ARGS --out OUT` process of the checkout and read what it
    wrote; SKIPS are the options that leave out work the measurement does not need."""
    began = time.perf_counter()
    command = [sys.executable, *CLI_RUN, *run_options(checkout, args, out, skips)]
    try:
        done = bounded(command, cwd=checkout.root, env=checkout.env(), timeout=timeout, merge_stderr=True)
        returncode, output = done.returncode, done.stdout
    except subprocess.TimeoutExpired as expired:
        returncode, output = 124, (expired.output or "") + f"\n(killed after {timeout:.0f} s)"
    wall = time.perf_counter() - began
    trials = sorted(out.glob("trials/*/trial.json"))
    trial = json.loads(trials[0].read_text()) if trials else None
    metrics = read_jsonl(trials[0].parent / "metrics.jsonl") if trials else []
    tail = "\n".join(output.strip().splitlines()[-15:])
    return Run(checkout.label, command_line(checkout, args, out, skips), wall, returncode, tail, trial, metrics)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# Settings: each script's frozen dataclass extends this one with its own fields.


@dataclass(frozen=True, kw_only=True)
class Settings:
    timeout: float  # seconds any one process may take
    quick: bool = False  # a check of the script, not a measurement

    def text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in vars(self).items())


S = TypeVar("S", bound=Settings)


def chosen_settings(full: S, quick: S, args: argparse.Namespace, *options: str) -> S:
    """QUICK with --quick, else FULL, with the named options the command line gave."""
    chosen = quick if args.quick else full
    given = {name: getattr(args, name) for name in options if getattr(args, name) is not None}
    return dataclasses.replace(chosen, **given)


# Machine facts.


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def cpu_name() -> str:
    """The CPU's model name where Linux tells it; platform.processor() is often empty there."""
    cpu = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        cpu = names[0] if names else cpu
    return cpu


def load_average() -> tuple[float, float, float] | None:
    return os.getloadavg() if hasattr(os, "getloadavg") else None


# Verdicts: a figure against its goal, and a median with an interval that says how sure it is.


def interval_text(found: MedianInterval) -> str:
    if not found.has_interval:
        return "no 95% interval from fewer than 6 pairs"
    return f"interval [{found.low:.3f}, {found.high:.3f}] ({found.coverage:.1%} coverage)"


def interval_fields(found: MedianInterval) -> dict[str, float | None]:
    """The median and its interval for results.json: JSON has no NaN, so no interval reads null."""
    return {key: None if math.isnan(value) else value for key, value in dataclasses.asdict(found).items()}


def goal_verdict(found: MedianInterval, goal: float, higher_is_better: bool) -> str:
    value, low, high = found.median, found.low, found.high
    met = value >= goal if higher_is_better else value <= goal
    if not found.has_interval:
        return f"{'met' if met else 'MISSED'} (too few pairs for an interval)"
    if (low >= goal) if higher_is_better else (high <= goal):
        return "met: the whole interval is on the goal's side"
    if (high < goal) if higher_is_better else (low > goal):
        return "MISSED: the whole interval is on the wrong side"
    return f"{'met' if met else 'MISSED'} by the median; the interval straddles the goal"


def against(value: float | None, goal: float, unit: str, fmt: str = ".2f") -> str:
    """`value unit (goal <= G: met)` for a figure where lower is better."""
    if value is None:
        return "not measured"
    unit = f" {unit}" if unit else ""
    return f"{value:{fmt}}{unit} (goal <= {goal:{fmt}}{unit}: {'met' if value <= goal else 'MISSED'})"


# Options and report files: the report scripts take --out, --quick and --skip and write report.md and results.json.


def add_report_options(parser: argparse.ArgumentParser, *, out_help: str, quick_help: str, parts: str) -> None:
    parser.add_argument("--out", type=Path, default=None, help=out_help)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--skip", default="", help=f"comma-separated parts to leave out: {parts}")


def report_folder(out: Path | None, quick: bool, name: str) -> Path:
    """--out, else reports/NAME; a --quick run goes to runs/NAME-quick, which git ignores."""
    return out or REPO / (f"runs/{name}-quick" if quick else f"reports/{name}")


def parts_to_skip(skip: str) -> set[str]:
    return set(filter(None, skip.split(",")))


@dataclass(frozen=True)
class ReportText:
    """The lines above the log in report.md."""

    title: str
    about: list[str]
    note: str
    quick_note: str  # shown on a --quick run: its figures measure little


def write_report(
    out: Path, text: ReportText, settings: Settings, log: Log, raw: dict[str, Any], temporary: str
) -> None:
    """report.md (the head, then the log) and results.json (RAW with the settings, folders scrubbed as `anonymous` does)."""
    from minigpt import atomic

    banner = [f"**{text.quick_note}**", ""] if settings.quick else []
    head = [text.title, "", *banner, *text.about, "", text.note, ""]
    atomic.write_text(out / "report.md", "\n".join(head + log.lines) + "\n")
    results = json.dumps({**raw, "settings": vars(settings)}, indent=2, allow_nan=False)
    atomic.write_text(out / "results.json", anonymous(results, temporary) + "\n")


def anonymous(text: str, temporary: str) -> str:
    """Raw results name this machine's folders (trial.json keeps its corpus path): a report is read
    elsewhere, so the checkout reads as `.` and a temporary folder whose name starts with the
    pattern TEMPORARY as $TMP."""
    text = text.replace(str(REPO), ".")
    return re.sub(re.escape(tempfile.gettempdir()) + "/" + temporary + r"[^/\"]+", "$TMP", text)
