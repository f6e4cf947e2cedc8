"""The speed and time-to-quality targets, measured with the harness on this machine:

    python benchmarks/targets/speed_targets.py                 # about 12 minutes on a 2-core CPU

1. Equal tokens, equal size: the `cpu-fast` preset against the reference recipe (learned
   positions, AdamW lr 1e-3, batch 12 x 64), 1.536M training tokens each, 3 seeds, best
   validation loss on the whole validation split; FLOPs per token of both.
2. Throughput at that configuration: tokens/s from the median training step (evaluation
   excluded) of both, side by side in the same sweep, their ratio and MFU.
3. Time to quality: whole `minigpt-bench run` processes (start-up, evaluation and checkpoints
   included) that stop at the first evaluation reaching val loss 1.886, and 1.65.

Every figure comes from trials written into --out; `minigpt-bench report` shows them too.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import runner

REFERENCE_TOKENS_PER_SEC = 19_000  # the reference implementation on this machine (issue figures)
REFERENCE_WALL_SECONDS = 94.0
TUNING = Path(__file__).resolve().parent / "tuning"  # the reference recipe is one of its plugin variants
TIMEOUT = 3600.0  # seconds any one `run` may take
TIME_TARGETS = (  # (val loss, time budget of the recipe in seconds, evaluation interval in steps)
    (1.886, 30, 100),
    (1.65, 86, 150),
)


def run(checkout: runner.Checkout, args: list[str], out: Path) -> float:
    """One whole `run ARGS --out OUT` process in this checkout; its wall time in seconds."""
    done = runner.cli_run(checkout, args, out.resolve(), TIMEOUT, skips=("--no-report",))
    if done.returncode != 0:
        raise SystemExit(f"`{done.command}` failed (exit {done.returncode}):\n{done.output_tail}")
    return done.wall_s


def trials(run_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(run_dir.glob("trials/*/trial.json"))]


def losses(records: list[dict]) -> str:
    return ", ".join(f"{t['best_val_loss']:.4f}" for t in records)


def equal_tokens(checkout: runner.Checkout, out: Path, seeds: str) -> None:
    run_dir = out / "equal-tokens"
    run(checkout, [
        "--plugins", str(TUNING), "--variants", "baseline,reference", "--seeds", seeds, "--devices", "cpu",
        "--max-tokens", "1536000", "--set", "eval_batches=0", "--set", "eval_interval=250",
    ], run_dir)  # fmt: skip
    by_variant: dict[str, list[dict]] = {}
    for trial in trials(run_dir):
        by_variant.setdefault(trial["variant"], []).append(trial)
    ours, reference = by_variant["baseline"], by_variant["reference"]
    loss = statistics.mean(t["best_val_loss"] for t in ours)
    ref_loss = statistics.mean(t["best_val_loss"] for t in reference)
    speed = statistics.median(t["tokens_per_sec"] for t in ours)
    ref_speed = statistics.median(t["tokens_per_sec"] for t in reference)
    flops, ref_flops = ours[0]["flops_per_token"], reference[0]["flops_per_token"]
    print(f"\n1. equal tokens ({ours[0]['tokens']:,}), equal size, {len(ours)} seeds, whole validation split")
    print(f"   cpu-fast best val loss  {loss:.4f}  (seeds: {losses(ours)})")
    print(f"   reference best val loss {ref_loss:.4f}  (seeds: {losses(reference)})")
    print(f"   target <= 1.70: {'met' if loss <= 1.70 else 'MISSED'}")
    print(
        f"   FLOPs/token {flops:,} vs {ref_flops:,}: {flops / ref_flops - 1:+.1%} (within 5%: {abs(flops / ref_flops - 1) <= 0.05})"
    )
    print("\n2. throughput at that configuration (median step, evaluation excluded)")
    print(f"   cpu-fast {speed:,.0f} tok/s, MFU {statistics.median(t['mfu'] for t in ours):.1%}")
    print(
        f"   reference recipe in the harness {ref_speed:,.0f} tok/s, MFU {statistics.median(t['mfu'] for t in reference):.1%}"
    )
    print(f"   ratio to the reference recipe in the same sweep: {speed / ref_speed:.2f}x")
    print(f"   ratio to the reference implementation's {REFERENCE_TOKENS_PER_SEC:,} tok/s: "
          f"{speed / REFERENCE_TOKENS_PER_SEC:.2f}x (target >= 1.2x)")  # fmt: skip


def time_to_quality(checkout: runner.Checkout, out: Path) -> None:
    print("\n3. time to quality: whole processes, start-up and evaluation included")
    for target, seconds, interval in TIME_TARGETS:
        run_dir = out / f"time-to-{target}"
        wall = run(checkout, [
            "--variants", "baseline", "--devices", "cpu", "--max-seconds", str(seconds), "--target-loss", str(target),
            "--stop-at-target", "--set", "eval_batches=0", "--set", f"eval_interval={interval}", "--fresh",
        ], run_dir)  # fmt: skip
        (trial,) = trials(run_dir)
        reached = trial["time_to_target_s"]
        verdict = f"reached {target} after {reached:.1f} s of training" if reached else f"never reached {target}"
        print(f"   cpu-fast, {seconds} s schedule: {verdict}, best {trial['best_val_loss']:.4f}; "
              f"whole process {wall:.1f} s = {wall / REFERENCE_WALL_SECONDS:.0%} of the reference's {REFERENCE_WALL_SECONDS:.0f} s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/speed-targets"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--skip-equal-tokens", action="store_true")
    parser.add_argument("--skip-time-to-quality", action="store_true")
    args = parser.parse_args()
    checkout = runner.this_checkout()
    checkout.inspect()
    if not args.skip_equal_tokens:
        equal_tokens(checkout, args.out, args.seeds)
    if not args.skip_time_to_quality:
        time_to_quality(checkout, args.out)


if __name__ == "__main__":
    main()
