"""Plumbing the targets scripts share: bounded processes, trials, git, verdicts on goals, the log and report files."""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CLI_RUN = ("-m", "minigpt.cli", "run")  # after the Python executable: one whole `run` process


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
    return subprocess.CompletedProcess(command, process.returncode, stdout, errors)


def trial_files(out: Path) -> list[Path]:
    """The trial.json files a `run` wrote under OUT; none when the CLI refused the command."""
    return sorted(out.glob("trials/*/trial.json"))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def git(*args: str, check: bool = True) -> str:
    """git in this checkout; a failure ends the script, or with check=False gives empty output."""
    done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


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


def alternating(pairs: int, names: tuple[str, str] = ("old", "new")) -> Iterator[tuple[int, tuple[str, str]]]:
    """A, B, then B, A, ...: a drift of the machine's speed hits both sides alike."""
    for index in range(pairs):
        yield index, names if index % 2 == 0 else (names[1], names[0])


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


def median_interval(values: list[float]) -> tuple[float, float | None, float | None, float | None]:
    """The median with a distribution-free interval: the order statistics x(k), x(n+1-k) with the
    largest k whose coverage, 1 - 2 P(Binomial(n, 1/2) < k), is at least 95%. Returns the median,
    the bounds and their coverage; no bounds when n < 6, as no pair of order statistics reaches 95%."""
    ordered, n = sorted(values), len(values)
    best = None
    for k in range(1, n // 2 + 1):
        coverage = 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2**n
        if coverage < 0.95:
            break
        best = (ordered[k - 1], ordered[n - k], coverage)
    return (statistics.median(ordered), *best) if best else (statistics.median(ordered), None, None, None)


def interval_text(low: float | None, high: float | None, coverage: float | None) -> str:
    if low is None or high is None or coverage is None:
        return "no 95% interval from fewer than 6 pairs"
    return f"interval [{low:.3f}, {high:.3f}] ({coverage:.1%} coverage)"


def goal_verdict(value: float, low: float | None, high: float | None, goal: float, higher_is_better: bool) -> str:
    met = value >= goal if higher_is_better else value <= goal
    if low is None or high is None:
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


# Options and report files: both scripts take --out, --quick and --skip and write report.md and results.json.


def add_report_options(parser: argparse.ArgumentParser, *, out_help: str, quick_help: str, parts: str) -> None:
    parser.add_argument("--out", type=Path, default=None, help=out_help)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--skip", default="", help=f"comma-separated parts to leave out: {parts}")


def report_folder(out: Path | None, quick: bool, name: str) -> Path:
    """--out, else reports/NAME; a --quick run goes to runs/NAME-quick, which git ignores."""
    return out or REPO / (f"runs/{name}-quick" if quick else f"reports/{name}")


def parts_to_skip(skip: str) -> set[str]:
    return set(filter(None, skip.split(",")))


def report_head(title: str, quick_note: str | None, about: list[str], note: str) -> list[str]:
    """The lines above the log in report.md; QUICK_NOTE, when given, says the figures measure little."""
    banner = [f"**{quick_note}**", ""] if quick_note else []
    return [title, "", *banner, *about, "", note, ""]


def settings_text(settings: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in vars(settings).items())


def write_report(out: Path, head: list[str], log: Log, raw: dict[str, Any], temporary: str) -> None:
    """report.md (HEAD, then the log) and results.json (RAW, with folders scrubbed as `anonymous` does)."""
    from minigpt import atomic

    atomic.write_text(out / "report.md", "\n".join(head + log.lines) + "\n")
    text = json.dumps(raw, indent=2, allow_nan=False)
    atomic.write_text(out / "results.json", anonymous(text, temporary) + "\n")


def anonymous(text: str, temporary: str) -> str:
    """Raw results name this machine's folders (trial.json keeps its corpus path): a report is read
    elsewhere, so the checkout reads as `.` and a temporary folder whose name starts with the
    pattern TEMPORARY as $TMP."""
    text = text.replace(str(REPO), ".")
    return re.sub(re.escape(tempfile.gettempdir()) + "/" + temporary + r"[^/\"]+", "$TMP", text)
