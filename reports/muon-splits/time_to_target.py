"""Time to quality, the default recipe of this checkout against that of an older commit:

    python reports/muon-splits/time_to_target.py --old main [--pairs 3] [--seed 0] [--set eval_interval=10]

Whole `run` processes (`--variants baseline --devices cpu --target-loss 1.886 --stop-at-target`,
the preset's defaults otherwise: the seed's size, 4 x 128, block 64) alternating old, new, new,
old, ... (minigpt.interleave.rounds), each in a fresh folder; a run stops at the first evaluation
whose loss the whole validation split confirms. Prints each process's wall time and
time_to_target_s, and the medians' ratio new/old. Both sides run on this machine in this one
invocation, so the ratio pairs like with like; the figures themselves drift with the machine's load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "targets"))

import runner  # noqa: E402

from minigpt import interleave  # noqa: E402

PAIR = ("old", "new")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", required=True, metavar="REV", help="the older commit whose default recipe to race")
    parser.add_argument("--pairs", type=int, default=3, help="old/new pairs of whole processes [default: 3]")
    parser.add_argument("--target", type=float, default=1.886, help="validation loss to reach [default: 1.886]")
    parser.add_argument("--seed", default="0", help="the trial's seed [default: 0]")
    parser.add_argument("--timeout", type=float, default=900, help="seconds one process may take [default: 900]")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to both runs")
    args = parser.parse_args()
    run_args = ["--variants", "baseline", "--devices", "cpu", "--seeds", args.seed,
                "--target-loss", str(args.target), "--stop-at-target"]  # fmt: skip
    run_args += [option for assignment in args.set for option in ("--set", assignment)]
    old_commit = runner.commit_of(args.old)
    with runner.old_worktree(old_commit) as old_root, tempfile.TemporaryDirectory(prefix="minigpt-ttq-") as tmp:
        checkouts = {"old": runner.Checkout("old", old_root, old_commit), "new": runner.this_checkout("new")}
        for checkout in checkouts.values():
            checkout.inspect()
        print(f"new {checkouts['new'].commit[:12]} against old {old_commit[:12]}, cpu {runner.cpu_name()}")
        for label in PAIR:
            print(runner.command_line(checkouts[label], run_args, Path(tmp) / f"N-{label}"))
        print("\n| pair | recipe | whole process s | time_to_target_s | steps | best val | muon_split |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        walls: dict[str, list[float]] = {label: [] for label in PAIR}
        for index, order in interleave.rounds(PAIR, args.pairs):
            for label in order:
                run = runner.cli_run(checkouts[label], run_args, Path(tmp) / f"{index}-{label}", args.timeout)
                failure = run.failure()
                if failure:
                    raise SystemExit(f"the {label} run failed: {failure}")
                trial = run.trial
                reached = trial["time_to_target_s"]
                walls[label].append(run.wall_s)
                print(f"| {index + 1} | {label} | {run.wall_s:.1f} | {'not reached' if reached is None else f'{reached:.1f}'} "
                      f"| {trial['steps']} | {trial['best_val_loss']:.4f} | {trial['config'].get('muon_split', '-')} |",
                      flush=True)  # fmt: skip
        medians = {label: statistics.median(walls[label]) for label in PAIR}
        paired = [new / old for old, new in zip(walls["old"], walls["new"], strict=True)]
        print(f"\nmedian whole process: old {medians['old']:.1f} s, new {medians['new']:.1f} s; "
              f"new/old {medians['new'] / medians['old']:.3f} (pair by pair: {', '.join(f'{r:.3f}' for r in paired)})")  # fmt: skip


if __name__ == "__main__":
    main()
