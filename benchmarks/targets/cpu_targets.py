"""The CPU speed targets, measured against the engine at an older commit on this machine:

    python benchmarks/cpu_targets.py              # about 20 minutes on an idle 2-core CPU
    python benchmarks/cpu_targets.py --quick      # about 2 minutes: checks the script, measures nothing

(a) Step time: the median training step of `run --preset reference` and `--preset cpu-fast`, this
    checkout against the old commit (a temporary `git worktree`), as whole short `run` processes
    alternating old, new, new, old, ...; the median of the paired ratios old/new (> 1: the new
    engine is faster) with a distribution-free 95% interval. Best validation losses at equal steps
    are printed beside, so a faster step that learns less shows.
(b) Time to quality: whole `run` processes that stop at the first evaluation reaching val loss
    1.886 (the old one as it had to be run: the whole validation split per evaluation), in the
    same alternating order; the ratio of median wall times new/old.
(c) Cached decoding: benchmarks/generation_speed.py of this checkout, its output verbatim (cached
    against uncached within one block); then each checkout's whole decoding path, as that script's
    processes alternating old, new, new, old, ...: the median of the paired ratios new/old of
    cached tokens/s within one block.

Each ratio pairs runs taken back to back in one invocation of this script; figures from another
run or machine are context, never the other side of a ratio. Writes report.md and results.json
to --out (default reports/cpu-targets; with --quick runs/cpu-targets-quick, which git ignores).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import targets_common as common

STEP_GOALS = {"reference": 1.12, "cpu-fast": 1.15}  # old ms/step over new ms/step, at least
TIME_GOAL = 0.6  # new whole-process time to the target over old, at most
DECODE_GOAL = 5.0  # cached over uncached decoding within one block, at least
DECODE_SPEEDUP_GOAL = 2.0  # new cached decoding over old, within one block, at least
TARGET_LOSS = 1.886
OLD_TIME_BUDGET = "1536000"  # tokens: the budget the old recipe reached 1.886 within


@dataclass(frozen=True)
class Settings:
    steps: int  # training steps per process in (a)
    rounds: int  # old/new pairs per preset in (a)
    time_pairs: int  # old/new pairs in (b)
    target: float  # validation loss for (b)
    decode_args: tuple[str, ...]  # options for generation_speed.py
    decode_pairs: int  # old/new pairs of whole generation_speed.py processes in (c)
    timeout: float  # seconds any one process may take
    threads: int | None  # torch threads of every process (OMP_NUM_THREADS); None: torch's choice
    quick: bool = False  # a check of the script, not a measurement


FULL = Settings(steps=200, rounds=6, time_pairs=3, target=TARGET_LOSS, decode_args=(), decode_pairs=6, timeout=900, threads=None)  # fmt: skip
# --quick checks the plumbing end to end: one pair each, a loss any run reaches in a few dozen steps,
# one thread per process so that it stays quick on a CPU other work oversubscribes.
QUICK = Settings(steps=20, rounds=1, time_pairs=1, target=3.0, decode_args=("--new-tokens", "40", "--repeats", "1"), decode_pairs=1, timeout=600, threads=1, quick=True)  # fmt: skip


@dataclass
class Checkout:
    """One version of the engine: a source tree and the `run` options its CLI knows."""

    label: str  # "old" or "new"
    root: Path
    commit: str
    options: frozenset[str] = field(default_factory=frozenset)

    def env(self) -> dict[str, str]:
        # Replace PYTHONPATH rather than extend it: the other checkout must never be importable.
        return {**os.environ, "PYTHONPATH": str(self.root), "COLUMNS": "200"}

    def python(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        """Run this checkout's Python, bounded: a process past the timeout ends the whole script."""
        try:
            return common.bounded([sys.executable, *args], cwd=self.root, env=self.env(), timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SystemExit(
                f"the {self.label} checkout's `python {shlex.join(args)}` ran past {timeout:.0f} s"
            ) from None

    def inspect(self) -> None:
        """Learn the run options and check that this checkout's engine is the one imported."""
        found = self.python("-c", "import minigpt; print(minigpt.__file__)", timeout=60).stdout.strip()
        if not Path(found).resolve().is_relative_to(self.root.resolve()):
            raise SystemExit(f"the {self.label} checkout imports minigpt from {found}, not from its own tree")
        usage = self.python(*common.CLI_RUN, "--help", timeout=60).stdout
        self.options = frozenset(re.findall(r"--[a-z][a-z0-9-]*", usage))


@dataclass
class Run:
    """One whole `run` process and the trial it wrote."""

    checkout: str
    command: str
    wall_s: float
    trial: dict[str, Any]


def cli_args(checkout: Checkout, args: list[str], out: Path) -> list[str]:
    """The options of one `run`: ARGS, the output folder, and what skips work the measurement does
    not need, where this engine has the option (the old one lacks some)."""
    wanted = [*args, "--out", str(out), "--quiet"]
    return wanted + [option for option in ("--no-speed", "--no-report") if option in checkout.options]


def shown(checkout: Checkout, args: list[str], tmp: Path) -> str:
    """The command as a reader reruns it: in the named checkout, the temporary folder as $TMP."""
    line = f"[{checkout.label} checkout] PYTHONPATH=. python -m minigpt.cli run {shlex.join(args)}"
    return line.replace(str(tmp), "$TMP")


def cli_run(checkout: Checkout, args: list[str], timeout: float) -> Run:
    """Run `minigpt.cli run ARGS` (ARGS from cli_args) in the checkout; time the whole process."""
    out = Path(args[args.index("--out") + 1])
    began = time.perf_counter()
    done = checkout.python(*common.CLI_RUN, *args, timeout=timeout)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise SystemExit(f"the {checkout.label} engine failed (exit {done.returncode}):\n{tail}")
    (path,) = common.trial_files(out)
    trial = json.loads(path.read_text())
    if trial["status"] != "completed":
        raise SystemExit(f"the {checkout.label} trial ended {trial['status']}: {trial.get('error')}")
    return Run(checkout.label, " ".join(args), wall, trial)


def run_pairs(
    checkouts: dict[str, Checkout], args: dict[str, list[str]], pairs: int, tmp: Path, name: str, timeout: float
) -> list[dict[str, Run]]:
    """Run old and new `pairs` times in alternating order, each into a fresh folder under tmp;
    one {label: Run} per pair. Prints a line per process so a long wait shows progress."""
    results = []
    for index, order in common.alternating(pairs):
        pair = {}
        for label in order:
            options = cli_args(checkouts[label], args[label], tmp / f"{name}-{index}-{label}")
            pair[label] = run = cli_run(checkouts[label], options, timeout)
            print(f"  {name} pair {index + 1} {label}: {run.wall_s:.1f} s, {run.trial['step_ms_p50']:.2f} ms/step, "
                  f"best val {run.trial['best_val_loss']:.4f}", flush=True)  # fmt: skip
        results.append(pair)
    return results


def log_commands(
    checkouts: dict[str, Checkout], args: dict[str, list[str]], tmp: Path, name: str, log: common.Log
) -> None:
    log("```")
    for label in ("old", "new"):
        log(shown(checkouts[label], cli_args(checkouts[label], args[label], tmp / f"{name}-N-{label}"), tmp))
    log("```\n")


def step_speed(checkouts: dict[str, Checkout], settings: Settings, tmp: Path, log: common.Log) -> dict[str, Any]:
    """(a) The median training step, old against new, at both presets."""
    log("## (a) Training step, old engine against new\n")
    results: dict[str, Any] = {}
    for preset, goal in STEP_GOALS.items():
        args = ["--variants", "baseline", "--devices", "cpu", "--preset", preset, "--max-steps", str(settings.steps)]
        name = f"step-{preset}"
        log(f"### --preset {preset}: {settings.rounds} pairs of {settings.steps}-step runs\n")
        log_commands(checkouts, {"old": args, "new": args}, tmp, name, log)
        pairs = run_pairs(checkouts, {"old": args, "new": args}, settings.rounds, tmp, name, settings.timeout)
        results[preset] = report_steps(goal, pairs, log)
    return results


def report_steps(goal: float, pairs: list[dict[str, Run]], log: common.Log) -> dict[str, Any]:
    ratios = [p["old"].trial["step_ms_p50"] / p["new"].trial["step_ms_p50"] for p in pairs]
    median, low, high, coverage = common.median_interval(ratios)
    log("| pair | order | old ms/step (p50) | new ms/step (p50) | old/new | old best val | new best val |")
    log("| --- | --- | --- | --- | --- | --- | --- |")
    for (index, order), pair, ratio in zip(common.alternating(len(pairs)), pairs, ratios, strict=True):
        old, new = pair["old"].trial, pair["new"].trial
        log(f"| {index + 1} | {', '.join(order)} | {old['step_ms_p50']:.2f} | {new['step_ms_p50']:.2f} | "
            f"{ratio:.3f} | {old['best_val_loss']:.4f} | {new['best_val_loss']:.4f} |")  # fmt: skip
    log(f"\nmedian of paired old/new {median:.3f}x (> 1: new is faster), {common.interval_text(low, high, coverage)}; "
        f"goal >= {goal}x: {common.goal_verdict(median, low, high, goal, higher_is_better=True)}")  # fmt: skip
    old_loss = statistics.median(p["old"].trial["best_val_loss"] for p in pairs)
    new_loss = statistics.median(p["new"].trial["best_val_loss"] for p in pairs)
    steps = {p[label].trial["steps"] for p in pairs for label in p}
    log(f"best val loss at equal steps ({', '.join(map(str, sorted(steps)))}), median: old {old_loss:.4f}, "
        f"new {new_loss:.4f}, new - old {new_loss - old_loss:+.4f}")  # fmt: skip
    log_config_differences(pairs[0], log)
    log()
    return {"goal": goal, "ratios": ratios, "median": median, "low": low, "high": high, "coverage": coverage,
            "pairs": [{label: vars(run) for label, run in pair.items()} for pair in pairs]}  # fmt: skip


def log_config_differences(pair: dict[str, Run], log: common.Log) -> None:
    """A per-step ratio compares engines only if both trained the same recipe: say where they did not."""
    old, new = (normalized(pair[label].trial["config"]) for label in ("old", "new"))
    changed = {k: (old[k], new[k]) for k in sorted(old.keys() & new.keys()) if old[k] != new[k]}
    if changed:
        log("configuration differences (old -> new): " + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items()))
    added = sorted(new.keys() - old.keys())
    if added:
        log("keys only the new engine has: " + ", ".join(f"{k}={new[k]}" for k in added))


def normalized(config: dict[str, Any]) -> dict[str, Any]:
    """compile was a bool before it had modes: false and true read as the modes they mean now."""
    modes = {False: "false", True: "default"}
    compile_mode = config.get("compile")
    return {**config, "compile": modes.get(compile_mode, compile_mode)} if "compile" in config else dict(config)


def time_to_target(checkouts: dict[str, Checkout], settings: Settings, tmp: Path, log: common.Log) -> dict[str, Any]:
    """(b) Whole processes to a val loss, the old engine as it had to be run, alternating."""
    log(f"## (b) Whole process to val loss <= {settings.target}: {settings.time_pairs} runs each\n")
    shared = ["--variants", "baseline", "--devices", "cpu", "--target-loss", str(settings.target), "--stop-at-target"]
    args = {"new": shared, "old": [*shared, "--max-tokens", OLD_TIME_BUDGET, "--set", "eval_batches=0"]}
    log_commands(checkouts, args, tmp, "time", log)
    pairs = run_pairs(checkouts, args, settings.time_pairs, tmp, "time", settings.timeout)
    log("| pair | engine | whole process s | time_to_target_s | reached | stop reason | steps | best val |")
    log("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for index, order in common.alternating(len(pairs)):
        for label in order:
            run = pairs[index][label]
            reached = run.trial["time_to_target_s"]
            log(f"| {index + 1} | {label} | {run.wall_s:.1f} | {'-' if reached is None else f'{reached:.1f}'} | "
                f"{'no' if reached is None else 'yes'} | {run.trial.get('stop_reason', '-')} | {run.trial['steps']} | "
                f"{run.trial['best_val_loss']:.4f} |")  # fmt: skip
    medians = {label: statistics.median(pair[label].wall_s for pair in pairs) for label in ("old", "new")}
    ratio = medians["new"] / medians["old"]
    paired = [pair["new"].wall_s / pair["old"].wall_s for pair in pairs]
    all_reached = all(run.trial["time_to_target_s"] is not None for pair in pairs for run in pair.values())
    log(f"\nmedian whole process: old {medians['old']:.1f} s, new {medians['new']:.1f} s; new/old {ratio:.3f} "
        f"(pair by pair: {', '.join(f'{r:.3f}' for r in paired)}); goal <= {TIME_GOAL}: {'met' if ratio <= TIME_GOAL else 'MISSED'}")  # fmt: skip
    budgets = {label: pairs[0][label].trial.get("budget", {}).get("max_tokens") for label in ("old", "new")}
    log(f"token budgets, which set the learning-rate schedule's length: old {budgets['old']}, new {budgets['new']}")
    if not all_reached:
        log("NOT every run reached the target: those wall times are budgets spent, not times to the target")
    log()
    return {"goal": TIME_GOAL, "target": settings.target, "median_s": medians, "ratio": ratio, "paired": paired,
            "all_reached": all_reached, "pairs": [{label: vars(run) for label, run in p.items()} for p in pairs]}  # fmt: skip


def decoding(checkouts: dict[str, Checkout], settings: Settings, log: common.Log) -> dict[str, Any]:
    """(c) This checkout's generation benchmark, verbatim, and its within-block cached/uncached ratio;
    then the old checkout's whole decoding path against the new one."""
    new = checkouts["new"]
    log("## (c) Cached decoding\n")
    args = ["benchmarks/generation_speed.py", *settings.decode_args]
    done = new.python(*args, timeout=settings.timeout)
    if done.returncode != 0:
        raise SystemExit(f"generation_speed.py failed (exit {done.returncode}):\n{done.stderr.strip()}")
    log("```")
    log(f"[new checkout] PYTHONPATH=. python {shlex.join(args)}")
    log(done.stdout.rstrip())
    log("```\n")
    ratio = within_block_ratio(done.stdout)
    if ratio is None:
        log("no median within-block cached/uncached ratio found in the output above")
    else:
        log(f"cached/uncached within one block: {ratio:.2f}x; goal >= {DECODE_GOAL}x: "
            f"{'met' if ratio >= DECODE_GOAL else 'MISSED'}")  # fmt: skip
    log()
    against_old = decoding_against_old(checkouts, settings, log)
    return {"goal": DECODE_GOAL, "ratio": ratio, "output": done.stdout, "against_old": against_old}


def decoding_against_old(checkouts: dict[str, Checkout], settings: Settings, log: common.Log) -> dict[str, Any]:
    """Each checkout's whole decoding path (its generate.py and its model code) on the same
    random model, as whole generation_speed.py processes alternating old, new, new, old, ...:
    the median of the paired ratios of cached tokens/s within one block."""
    tokens = "40" if settings.quick else "255"
    args = {
        "old": ["benchmarks/generation_speed.py", "--new-tokens", tokens, "--repeats", "1"],
        "new": ["benchmarks/generation_speed.py", "--new-tokens", tokens, "--repeats", "1", "--baseline", ""],
    }
    log(f"### Cached decoding, old checkout against new: {settings.decode_pairs} pairs of whole processes\n")
    log("```")
    for label in ("old", "new"):
        log(f"[{label} checkout] PYTHONPATH=. python {shlex.join(args[label])}")
    log("```\n")
    log("| pair | order | old cached tok/s | new cached tok/s | new/old |")
    log("| --- | --- | --- | --- | --- |")
    paired = []
    for index, order in common.alternating(settings.decode_pairs):
        rates = {}
        for label in order:
            done = checkouts[label].python(*args[label], timeout=settings.timeout)
            rates[label] = cached_rate(done.stdout)
            if done.returncode != 0 or rates[label] is None:
                raise SystemExit(f"the {label} checkout's generation_speed.py failed:\n{done.stdout}{done.stderr}")
        paired.append(rates["new"] / rates["old"])
        log(f"| {index + 1} | {', '.join(order)} | {rates['old']:.1f} | {rates['new']:.1f} | {paired[-1]:.3f} |")
    median, low, high, coverage = common.median_interval(paired)
    log(f"\nmedian of paired new/old {median:.3f}x (> 1: new is faster), {common.interval_text(low, high, coverage)}; "
        f"goal >= {DECODE_SPEEDUP_GOAL}x: {common.goal_verdict(median, low, high, DECODE_SPEEDUP_GOAL, True)}\n")  # fmt: skip
    return {"goal": DECODE_SPEEDUP_GOAL, "ratio": median, "low": low, "high": high, "paired": paired}


def cached_rate(output: str) -> float | None:
    """Cached tokens/s within one block, from the median line of generation_speed.py's output."""
    for line in output.splitlines():
        if line.startswith("median") and "one block" in line:
            found = re.findall(r"with cache ([0-9.]+) tok/s", line)
            if found:
                return float(found[0])
    return None


def within_block_ratio(output: str) -> float | None:
    """The ratio on the median line for the first block of new tokens (the cache serves every step
    there); a line comparing against an old decoder is not it."""
    for line in output.splitlines():
        lowered = line.lower()
        if "median" in lowered and "one block" in lowered and "old" not in lowered:
            found = re.findall(r"ratio ([0-9.]+)x", line)
            if found:
                return float(found[-1])
    return None


def machine(checkouts: dict[str, Checkout]) -> dict[str, Any]:
    import torch  # only here: the orchestrating process trains nothing

    return {
        "date": common.utc_now(),
        "cpu": common.cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "load_average_at_start": common.load_average(),
        "new_commit": checkouts["new"].commit,
        "new_tree_dirty": bool(common.git("status", "--porcelain", "--untracked-files=no")),
        "old_commit": checkouts["old"].commit,
    }


def report(out: Path, settings: Settings, info: dict[str, Any], log: common.Log, results: dict[str, Any]) -> None:
    loads = {when: ", ".join(f"{x:.2f}" for x in info[f"load_average_at_{when}"] or ()) for when in ("start", "end")}
    about = [
        f"Date {info['date']}; CPU {info['cpu']} ({info['cpu_count']} cores), torch {info['torch']} with "
        f"{info['torch_threads']} threads, Python {info['python']}; load average (1, 5, 15 min) at start "
        f"{loads['start']}, at end {loads['end']}.",
        f"New: {info['new_commit'][:12]}{' with uncommitted changes' if info['new_tree_dirty'] else ''}; "
        f"old: {info['old_commit'][:12]}. Settings: {common.settings_text(settings)}.",
    ]
    note = (
        "Every ratio pairs processes run back to back in this one invocation, in alternating order "
        "(old, new, then new, old, ...). Commands run in the named checkout; $TMP is a temporary folder."
    )
    quick_note = "--quick: a check that the script works end to end; these figures measure nothing."
    title = "# CPU targets: this engine against an older commit"
    head = common.report_head(title, quick_note if settings.quick else None, about, note)
    raw = {"machine": info, "settings": vars(settings), **results}
    common.write_report(out, head, log, raw, temporary="minigpt-(old|targets)-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", default="1b9df86", help="the commit to compare against [default: 1b9df86]")
    common.add_report_options(
        parser,
        out_help="report folder [default: reports/cpu-targets; with --quick runs/cpu-targets-quick]",
        quick_help="tiny settings: checks the script, measures nothing",
        parts="a, b, c",
    )
    parser.add_argument("--rounds", type=int, default=None, help="old/new pairs per preset in (a) [default: 6]")
    parser.add_argument("--steps", type=int, default=None, help="training steps per process in (a) [default: 200]")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process [default: torch's]")
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    chosen = {"rounds": args.rounds, "steps": args.steps, "threads": args.threads}
    settings = dataclasses.replace(settings, **{key: value for key, value in chosen.items() if value is not None})
    if settings.threads:
        os.environ["OMP_NUM_THREADS"] = str(settings.threads)  # every process started from here inherits it
    out = common.report_folder(args.out, args.quick, "cpu-targets")
    skip = common.parts_to_skip(args.skip)
    log, results = common.Log(), {}
    old_commit = common.git("rev-parse", "--verify", f"{args.old}^{{commit}}")
    with common.old_worktree(old_commit) as old_root, tempfile.TemporaryDirectory(prefix="minigpt-targets-") as tmp:
        checkouts = {
            "old": Checkout("old", old_root, old_commit),
            "new": Checkout("new", common.REPO, common.git("rev-parse", "HEAD")),
        }
        for checkout in checkouts.values():
            checkout.inspect()
        info = machine(checkouts)
        print(f"new {info['new_commit'][:12]} against old {old_commit[:12]} on {info['cpu']}, torch {info['torch']}\n")
        if "a" not in skip:
            results["step_speed"] = step_speed(checkouts, settings, Path(tmp), log)
        if "b" not in skip:
            results["time_to_target"] = time_to_target(checkouts, settings, Path(tmp), log)
        if "c" not in skip:
            results["decoding"] = decoding(checkouts, settings, log)
    info["load_average_at_end"] = common.load_average()
    report(out, settings, info, log, results)
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
