"""The CPU speed targets, measured against the engine at an older commit on this machine:

    python benchmarks/targets/cpu_targets.py --old REV            # about 20 minutes on an idle 2-core CPU
    python benchmarks/targets/cpu_targets.py --old REV --quick    # about 2 minutes: checks the script, measures nothing

REV is the older commit, any revision git knows (a hash, a tag, HEAD~5); reports/cpu-targets/
compares against 1b9df86, the engine before the CPU work.

(a) Step time: the median training step of `run --preset reference` and `--preset cpu-fast`, this
    checkout against the old commit (a temporary `git worktree`), as whole short `run` processes
    alternating old, new, new, old, ...; the median of the paired ratios old/new (> 1: the new
    engine is faster) with a distribution-free 95% interval. Best validation losses at equal steps
    are printed beside, so a faster step that learns less shows.
(b) Time to quality: whole `run` processes that stop at the first evaluation reaching val loss
    1.886 (the old one as it had to be run: the whole validation split per evaluation), in the
    same alternating order; the ratio of median wall times new/old.
(c) Cached decoding: generation_speed.py of this checkout, its output verbatim (cached against
    uncached within one block, and against REV's cached loop); then each checkout's whole decoding
    path, as that script's processes alternating old, new, new, old, ...: the median of the
    paired ratios new/old of cached tokens/s within one block.

Each ratio pairs runs taken back to back in one invocation of this script; figures from another
run or machine are context, never the other side of a ratio. Writes report.md and results.json
to --out (default reports/cpu-targets; with --quick runs/cpu-targets-quick, which git ignores).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import runner

from minigpt import interleave
from minigpt.stats import median_interval

STEP_GOALS = {"reference": 1.12, "cpu-fast": 1.15}  # old ms/step over new ms/step, at least
TIME_GOAL = 0.6  # new whole-process time to the target over old, at most
DECODE_GOAL = 5.0  # cached over uncached decoding within one block, at least
DECODE_SPEEDUP_GOAL = 2.0  # new cached decoding over old, within one block, at least
TARGET_LOSS = 1.886
OLD_TIME_BUDGET = "1536000"  # tokens: the budget the old recipe reached 1.886 within
PAIR = ("old", "new")  # the order of a pair's first turn; interleave alternates it
DECODING = "generation_speed.py"


@dataclass(frozen=True, kw_only=True)
class Settings(runner.Settings):
    steps: int  # training steps per process in (a)
    rounds: int  # old/new pairs per preset in (a)
    time_pairs: int  # old/new pairs in (b)
    target: float  # validation loss for (b)
    decode_args: tuple[str, ...]  # options for generation_speed.py
    decode_pairs: int  # old/new pairs of whole generation_speed.py processes in (c)
    threads: int | None  # torch threads of every process (OMP_NUM_THREADS); None: torch's choice


FULL = Settings(steps=200, rounds=6, time_pairs=3, target=TARGET_LOSS, decode_args=(), decode_pairs=6, timeout=900, threads=None)  # fmt: skip
# --quick checks the plumbing end to end: one pair each, a loss any run reaches in a few dozen steps,
# one thread per process so that it stays quick on a CPU other work oversubscribes.
QUICK = Settings(steps=20, rounds=1, time_pairs=1, target=3.0, decode_args=("--new-tokens", "40", "--repeats", "1"), decode_pairs=1, timeout=600, threads=1, quick=True)  # fmt: skip


def completed(run: runner.Run) -> runner.Run:
    """The run, if it trained to the end: a ratio needs both sides, so a failure ends the script."""
    failure = run.failure()
    if failure:
        raise SystemExit(f"the {run.checkout} engine failed ({failure})")
    return run


def run_pairs(
    checkouts: dict[str, runner.Checkout], args: dict[str, list[str]], pairs: int, tmp: Path, name: str, timeout: float
) -> list[dict[str, runner.Run]]:
    """Run old and new `pairs` times in alternating order, each into a fresh folder under tmp;
    one {label: Run} per pair. Prints a line per process so a long wait shows progress."""
    results = []
    for index, order in interleave.rounds(PAIR, pairs):
        pair = {}
        for label in order:
            out = tmp / f"{name}-{index}-{label}"
            pair[label] = run = completed(runner.cli_run(checkouts[label], args[label], out, timeout))
            print(f"  {name} pair {index + 1} {label}: {run.wall_s:.1f} s, {run.trial['step_ms_p50']:.2f} ms/step, "
                  f"best val {run.trial['best_val_loss']:.4f}", flush=True)  # fmt: skip
        results.append(pair)
    return results


def log_commands(
    checkouts: dict[str, runner.Checkout], args: dict[str, list[str]], tmp: Path, name: str, log: runner.Log
) -> None:
    log("```")
    for label in PAIR:
        log(runner.command_line(checkouts[label], args[label], tmp / f"{name}-N-{label}"))
    log("```\n")


def step_speed(checkouts: dict[str, runner.Checkout], settings: Settings, tmp: Path, log: runner.Log) -> dict[str, Any]:
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


def report_steps(goal: float, pairs: list[dict[str, runner.Run]], log: runner.Log) -> dict[str, Any]:
    ratios = [p["old"].trial["step_ms_p50"] / p["new"].trial["step_ms_p50"] for p in pairs]
    found = median_interval(ratios)
    log("| pair | order | old ms/step (p50) | new ms/step (p50) | old/new | old best val | new best val |")
    log("| --- | --- | --- | --- | --- | --- | --- |")
    for (index, order), pair, ratio in zip(interleave.rounds(PAIR, len(pairs)), pairs, ratios, strict=True):
        old, new = pair["old"].trial, pair["new"].trial
        log(f"| {index + 1} | {', '.join(order)} | {old['step_ms_p50']:.2f} | {new['step_ms_p50']:.2f} | "
            f"{ratio:.3f} | {old['best_val_loss']:.4f} | {new['best_val_loss']:.4f} |")  # fmt: skip
    log(f"\nmedian of paired old/new {found.median:.3f}x (> 1: new is faster), {runner.interval_text(found)}; "
        f"goal >= {goal}x: {runner.goal_verdict(found, goal, higher_is_better=True)}")  # fmt: skip
    old_loss = statistics.median(p["old"].trial["best_val_loss"] for p in pairs)
    new_loss = statistics.median(p["new"].trial["best_val_loss"] for p in pairs)
    steps = {p[label].trial["steps"] for p in pairs for label in p}
    log(f"best val loss at equal steps ({', '.join(map(str, sorted(steps)))}), median: old {old_loss:.4f}, "
        f"new {new_loss:.4f}, new - old {new_loss - old_loss:+.4f}")  # fmt: skip
    log_config_differences(pairs[0], log)
    log()
    return {"goal": goal, "ratios": ratios, **runner.interval_fields(found),
            "pairs": [{label: vars(run) for label, run in pair.items()} for pair in pairs]}  # fmt: skip


def log_config_differences(pair: dict[str, runner.Run], log: runner.Log) -> None:
    """A per-step ratio compares engines only if both trained the same recipe: say where they did not."""
    old, new = (normalized(pair[label].trial["config"]) for label in PAIR)
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


def time_to_target(
    checkouts: dict[str, runner.Checkout], settings: Settings, tmp: Path, log: runner.Log
) -> dict[str, Any]:
    """(b) Whole processes to a val loss, the old engine as it had to be run, alternating."""
    log(f"## (b) Whole process to val loss <= {settings.target}: {settings.time_pairs} runs each\n")
    shared = ["--variants", "baseline", "--devices", "cpu", "--target-loss", str(settings.target), "--stop-at-target"]
    args = {"new": shared, "old": [*shared, "--max-tokens", OLD_TIME_BUDGET, "--set", "eval_batches=0"]}
    log_commands(checkouts, args, tmp, "time", log)
    pairs = run_pairs(checkouts, args, settings.time_pairs, tmp, "time", settings.timeout)
    log("| pair | engine | whole process s | time_to_target_s | reached | stop reason | steps | best val |")
    log("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for index, order in interleave.rounds(PAIR, len(pairs)):
        for label in order:
            run = pairs[index][label]
            reached = run.trial["time_to_target_s"]
            log(f"| {index + 1} | {label} | {run.wall_s:.1f} | {'-' if reached is None else f'{reached:.1f}'} | "
                f"{'no' if reached is None else 'yes'} | {run.trial.get('stop_reason', '-')} | {run.trial['steps']} | "
                f"{run.trial['best_val_loss']:.4f} |")  # fmt: skip
    medians = {label: statistics.median(pair[label].wall_s for pair in pairs) for label in PAIR}
    ratio = medians["new"] / medians["old"]
    paired = [pair["new"].wall_s / pair["old"].wall_s for pair in pairs]
    all_reached = all(run.trial["time_to_target_s"] is not None for pair in pairs for run in pair.values())
    log(f"\nmedian whole process: old {medians['old']:.1f} s, new {medians['new']:.1f} s; new/old {ratio:.3f} "
        f"(pair by pair: {', '.join(f'{r:.3f}' for r in paired)}); goal <= {TIME_GOAL}: {'met' if ratio <= TIME_GOAL else 'MISSED'}")  # fmt: skip
    budgets = {label: pairs[0][label].trial.get("budget", {}).get("max_tokens") for label in PAIR}
    log(f"token budgets, which set the learning-rate schedule's length: old {budgets['old']}, new {budgets['new']}")
    if not all_reached:
        log("NOT every run reached the target: those wall times are budgets spent, not times to the target")
    log()
    return {"goal": TIME_GOAL, "target": settings.target, "median_s": medians, "ratio": ratio, "paired": paired,
            "all_reached": all_reached, "pairs": [{label: vars(run) for label, run in p.items()} for p in pairs]}  # fmt: skip


def decoding(checkouts: dict[str, runner.Checkout], settings: Settings, log: runner.Log) -> dict[str, Any]:
    """(c) This checkout's generation benchmark, verbatim (against the old commit's cached loop
    too), and its within-block cached/uncached ratio; then the old checkout's whole decoding path
    against the new one."""
    new = checkouts["new"]
    log("## (c) Cached decoding\n")
    args = [new.script(DECODING), *settings.decode_args, "--baseline", checkouts["old"].commit[:7]]
    done = new.python(*args, timeout=settings.timeout)
    if done.returncode != 0:
        raise SystemExit(f"{DECODING} failed (exit {done.returncode}):\n{done.stderr.strip()}")
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


def decoding_against_old(checkouts: dict[str, runner.Checkout], settings: Settings, log: runner.Log) -> dict[str, Any]:
    """Each checkout's whole decoding path (its generate.py and its model code) on the same
    random model, as whole generation_speed.py processes alternating old, new, new, old, ...:
    the median of the paired ratios of cached tokens/s within one block."""
    tokens = "40" if settings.quick else "255"
    args = {label: [checkouts[label].script(DECODING), "--new-tokens", tokens, "--repeats", "1"] for label in PAIR}
    log(f"### Cached decoding, old checkout against new: {settings.decode_pairs} pairs of whole processes\n")
    log("```")
    for label in PAIR:
        log(f"[{label} checkout] PYTHONPATH=. python {shlex.join(args[label])}")
    log("```\n")
    log("| pair | order | old cached tok/s | new cached tok/s | new/old |")
    log("| --- | --- | --- | --- | --- |")
    paired = []
    for index, order in interleave.rounds(PAIR, settings.decode_pairs):
        rates = {}
        for label in order:
            done = checkouts[label].python(*args[label], timeout=settings.timeout)
            rates[label] = cached_rate(done.stdout)
            if done.returncode != 0 or rates[label] is None:
                raise SystemExit(f"the {label} checkout's {DECODING} failed:\n{done.stdout}{done.stderr}")
        paired.append(rates["new"] / rates["old"])
        log(f"| {index + 1} | {', '.join(order)} | {rates['old']:.1f} | {rates['new']:.1f} | {paired[-1]:.3f} |")
    found = median_interval(paired)
    log(f"\nmedian of paired new/old {found.median:.3f}x (> 1: new is faster), {runner.interval_text(found)}; "
        f"goal >= {DECODE_SPEEDUP_GOAL}x: {runner.goal_verdict(found, DECODE_SPEEDUP_GOAL, True)}\n")  # fmt: skip
    return {"goal": DECODE_SPEEDUP_GOAL, **runner.interval_fields(found), "paired": paired}


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


def machine(checkouts: dict[str, runner.Checkout]) -> dict[str, Any]:
    import torch  # only here: the orchestrating process trains nothing

    return {
        "date": runner.utc_now(),
        "cpu": runner.cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "load_average_at_start": runner.load_average(),
        "new_commit": checkouts["new"].commit,
        "new_tree_dirty": bool(runner.git("status", "--porcelain", "--untracked-files=no")),
        "old_commit": checkouts["old"].commit,
    }


def report(out: Path, settings: Settings, info: dict[str, Any], log: runner.Log, results: dict[str, Any]) -> None:
    loads = {when: ", ".join(f"{x:.2f}" for x in info[f"load_average_at_{when}"] or ()) for when in ("start", "end")}
    text = runner.ReportText(
        title="# CPU targets: this engine against an older commit",
        about=[
            f"Date {info['date']}; CPU {info['cpu']} ({info['cpu_count']} cores), torch {info['torch']} with "
            f"{info['torch_threads']} threads, Python {info['python']}; load average (1, 5, 15 min) at start "
            f"{loads['start']}, at end {loads['end']}.",
            f"New: {info['new_commit'][:12]}{' with uncommitted changes' if info['new_tree_dirty'] else ''}; "
            f"old: {info['old_commit'][:12]}. Settings: {settings.text()}.",
        ],
        note="Every ratio pairs processes run back to back in this one invocation, in alternating order "
        "(old, new, then new, old, ...). Commands run in the named checkout; $TMP is a temporary folder.",
        quick_note="--quick: a check that the script works end to end; these figures measure nothing.",
    )
    runner.write_report(out, text, settings, log, {"machine": info, **results}, temporary="minigpt-(old|targets)-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--old",
        required=True,
        metavar="REV",
        help="the older commit to compare against: any revision git knows (reports/cpu-targets used 1b9df86)",
    )
    runner.add_report_options(
        parser,
        out_help="report folder [default: reports/cpu-targets; with --quick runs/cpu-targets-quick]",
        quick_help="tiny settings: checks the script, measures nothing",
        parts="a, b, c",
    )
    parser.add_argument("--rounds", type=int, default=None, help="old/new pairs per preset in (a) [default: 6]")
    parser.add_argument("--steps", type=int, default=None, help="training steps per process in (a) [default: 200]")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process [default: torch's]")
    args = parser.parse_args()
    settings = runner.chosen_settings(FULL, QUICK, args, "rounds", "steps", "threads")
    if settings.threads:
        os.environ["OMP_NUM_THREADS"] = str(settings.threads)  # every process started from here inherits it
    out = runner.report_folder(args.out, args.quick, "cpu-targets")
    skip = runner.parts_to_skip(args.skip)
    log, results = runner.Log(), {}
    old_commit = runner.commit_of(args.old)
    with runner.old_worktree(old_commit) as old_root, tempfile.TemporaryDirectory(prefix="minigpt-targets-") as tmp:
        checkouts = {"old": runner.Checkout("old", old_root, old_commit), "new": runner.this_checkout("new")}
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
    info["load_average_at_end"] = runner.load_average()
    report(out, settings, info, log, results)
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
