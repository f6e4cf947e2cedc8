"""The GPU targets, measured with the harness on this machine's CUDA GPU:

    python benchmarks/targets/gpu_targets.py              # about 10 minutes on one H100
    python benchmarks/targets/gpu_targets.py --quick      # about 3 minutes: checks the script, measures little

1. The reference recipe at nanoGPT's size (6 layers, 6 heads, 384 wide, block 256, batch 64,
   dropout 0.2, AdamW 1e-3 -> 1e-4, bf16, compiled), 2000 steps: the median training step, the
   tokens/s it gives, and the best validation loss by step 1750.
2. `--preset gpu-fast`: the whole process until the first evaluation reaching val loss 1.47.
3. The default tiny model with the cpu-fast recipe on the GPU: the median step, with bf16 and
   compile=reduce-overhead and without, as alternating whole processes (their ratio is paired).

The reference table (an H100 running the reference implementation) is printed beside as context:
it comes from another run, so it is never the other side of a ratio. On a machine without a CUDA
GPU the script says so in one line and exits 0. Writes report.md and results.json to --out
(default reports/gpu-targets; with --quick runs/gpu-targets-quick, which git ignores).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import runner

from minigpt import interleave

# The reference implementation on an H100, from another run: context, never a ratio's other side.
REFERENCE = {"step_ms": 14.3, "tokens_per_sec": 1.14e6, "best_val_by_1750": 1.4650, "whole_process_s": 97.6}
GOALS = {"step_ms": 5.7, "best_val_by_1750": 1.47, "gpu_fast_s": 25.0, "tiny_step_ms": 3.0}
LOSS_STEP = 1750
NANOGPT_SIZE = {
    "n_layer": 6, "n_head": 6, "n_embd": 384, "block_size": 256, "batch_size": 64, "dropout": 0.2,
    "lr": 1e-3, "min_lr": 1e-4, "beta2": 0.99, "warmup_steps": 100, "precision": "bf16",
    "compile": "reduce-overhead", "eval_interval": 250, "eval_batches": 200,
}  # fmt: skip
FAST_GPU = {"precision": "bf16", "compile": "reduce-overhead"}


@dataclass(frozen=True, kw_only=True)
class Settings(runner.Settings):
    steps: int  # steps of the nanoGPT-size run
    eval_interval: int
    gpu_fast_target: float
    tiny_steps: int
    tiny_pairs: int  # plain/compiled pairs of the tiny model


FULL = Settings(steps=2000, eval_interval=250, gpu_fast_target=1.47, tiny_steps=500, tiny_pairs=2, timeout=600)
# --quick: every part once and short; the loss of 1.47 is out of reach in it, so gpu-fast aims at 2.5.
QUICK = Settings(
    steps=200, eval_interval=50, gpu_fast_target=2.5, tiny_steps=100, tiny_pairs=1, timeout=300, quick=True
)


def completed(run: runner.Run, log: runner.Log) -> bool:
    """Whether the run trained to the end; if not, log why in a few lines."""
    failure = run.failure()
    if failure:
        log(f"FAILED ({failure.partition(chr(10))[0]}):\n```\n{run.output_tail}\n```\n")
    return failure is None


def config_sets(values: dict[str, Any], known: set[str], log: runner.Log) -> list[str]:
    """`--set key=value` options for the keys this engine knows; a missing key is logged, not guessed."""
    missing = [key for key in values if key not in known]
    if missing:
        log(f"this engine has no config key {', '.join(missing)}: left out of the command")
    return [item for key, value in values.items() if key in known for item in ("--set", f"{key}={value}")]


def best_val_by(metrics: list[dict[str, Any]], step: int) -> float | None:
    losses = [m["val_loss"] for m in metrics if m.get("val_loss") is not None and m.get("step", 0) <= step]
    return min(losses) if losses else None


def nanogpt_size(
    checkout: runner.Checkout, settings: Settings, known: set[str], tmp: Path, log: runner.Log
) -> dict[str, Any]:
    """1. The reference recipe at nanoGPT's size: step time, tokens/s and loss by step 1750."""
    log("## 1. Reference recipe at nanoGPT size\n")
    values = {**NANOGPT_SIZE, "eval_interval": settings.eval_interval}
    args = ["--variants", "baseline", "--devices", "cuda", "--preset", "reference", *config_sets(values, known, log)]
    run = runner.cli_run(checkout, [*args, "--max-steps", str(settings.steps)], tmp / "nanogpt-size", settings.timeout)
    log(f"```\n{run.command}\n```\n")
    if not completed(run, log):
        return {"run": vars(run)}
    trial = run.trial or {}
    loss_step = min(LOSS_STEP, settings.steps)
    best = best_val_by(run.metrics, loss_step)
    log("| figure | this machine | reference implementation, H100 (context) |")
    log("| --- | --- | --- |")
    log(f"| median step | {runner.against(trial['step_ms_p50'], GOALS['step_ms'], 'ms')} | {REFERENCE['step_ms']} ms |")
    per_second = trial["tokens"] / trial["steps"] / (trial["step_ms_p50"] / 1000)  # tokens a step over its median time
    log(f"| tokens/s from the median step | {per_second / 1e6:.2f}M | {REFERENCE['tokens_per_sec'] / 1e6:.2f}M |")
    log(f"| best val loss by step {loss_step} | {runner.against(best, GOALS['best_val_by_1750'], '', '.4f')} | "
        f"{REFERENCE['best_val_by_1750']:.4f} at step {LOSS_STEP} |")  # fmt: skip
    log(f"| whole process | {run.wall_s:.1f} s ({trial['steps']} steps, precision {trial.get('precision', '-')}, "
        f"compiled {trial.get('compiled', '-')}, MFU {trial.get('mfu') or 0:.1%}) | - |\n")  # fmt: skip
    return {"run": vars(run), "tokens_per_sec": per_second, "best_val_by_step": best, "loss_step": loss_step}


def gpu_fast(checkout: runner.Checkout, settings: Settings, tmp: Path, log: runner.Log) -> dict[str, Any]:
    """2. The gpu-fast preset, whole process to a confirmed val loss."""
    target = settings.gpu_fast_target
    log(f"## 2. --preset gpu-fast, whole process to val loss <= {target}\n")
    args = ["--variants", "baseline", "--devices", "cuda", "--preset", "gpu-fast"]
    args += ["--target-loss", str(target), "--stop-at-target"]
    run = runner.cli_run(checkout, args, tmp / "gpu-fast", settings.timeout)
    log(f"```\n{run.command}\n```\n")
    if run.returncode == 2 and "preset" in run.output_tail and run.trial is None:
        log(f"skipped: this engine refuses --preset gpu-fast: {run.output_tail.splitlines()[-1]}\n")
        return {"skipped": run.output_tail}
    if not completed(run, log):
        return {"run": vars(run)}
    reached = (run.trial or {}).get("time_to_target_s")
    log(f"whole process {runner.against(run.wall_s, GOALS['gpu_fast_s'], 's', '.1f')}; reference implementation "
        f"(context, H100): {REFERENCE['whole_process_s']} s to val <= 1.47")  # fmt: skip
    log(f"time_to_target_s {'not reached: the time is the budget spent' if reached is None else f'{reached:.1f}'}; "
        f"best val {run.trial['best_val_loss']:.4f} after {run.trial['steps']} steps\n")  # fmt: skip
    return {"run": vars(run), "reached": reached is not None}


def tiny_model(
    checkout: runner.Checkout, settings: Settings, known: set[str], tmp: Path, log: runner.Log
) -> dict[str, Any]:
    """3. The default tiny model and cpu-fast recipe on cuda, plain and bf16 + reduce-overhead,
    as alternating whole processes (plain, fast, then fast, plain, ...)."""
    log("## 3. Default tiny model, cpu-fast recipe, on cuda\n")
    # Named: the default preset on a GPU may be a GPU recipe, and this figure is the CPU recipe's.
    base = ["--variants", "baseline", "--devices", "cuda", "--preset", "cpu-fast", "--max-steps", str(settings.tiny_steps)]  # fmt: skip
    variants = {"plain": base, "bf16+reduce-overhead": [*base, *config_sets(FAST_GPU, known, log)]}
    runs: dict[str, list[runner.Run]] = {name: [] for name in variants}
    for index, order in interleave.rounds(list(variants), settings.tiny_pairs):
        for name in order:
            runs[name].append(runner.cli_run(checkout, variants[name], tmp / f"tiny-{name}-{index}", settings.timeout))
    log("```\n" + "\n".join(runs[name][0].command for name in variants) + "\n```\n")
    if not all(completed(run, log) for name in variants for run in runs[name]):
        return {name: [vars(run) for run in done] for name, done in runs.items()}
    medians = {name: statistics.median(run.trial["step_ms_p50"] for run in done) for name, done in runs.items()}
    for name, done in runs.items():
        each = ", ".join(f"{run.trial['step_ms_p50']:.2f}" for run in done)
        verdict = runner.against(medians[name], GOALS["tiny_step_ms"], "ms")
        log(f"- {name}: median step {verdict}; per process: {each} ms")
    plain, fast = runs["plain"], runs["bf16+reduce-overhead"]
    paired = [p.trial["step_ms_p50"] / f.trial["step_ms_p50"] for p, f in zip(plain, fast, strict=True)]
    log(f"- plain/compiled step time, paired within each pair of processes: {', '.join(f'{r:.2f}x' for r in paired)} "
        f"(median {statistics.median(paired):.2f}x; > 1: bf16 + reduce-overhead is faster)\n")  # fmt: skip
    return {"median_step_ms": medians, "paired_plain_over_fast": paired,
            **{name: [vars(run) for run in done] for name, done in runs.items()}}  # fmt: skip


def cuda_device(checkout: runner.Checkout) -> dict[str, Any] | None:
    """The GPU and software, asked of a separate process so this one never holds a CUDA context."""
    probe = (
        "import json, torch\n"
        "ok = torch.cuda.is_available()\n"
        "print(json.dumps({'gpu': torch.cuda.get_device_name(0) if ok else None, 'torch': torch.__version__,"
        " 'cuda': torch.version.cuda, 'count': torch.cuda.device_count() if ok else 0}))"
    )
    done = checkout.python("-c", probe, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"could not ask torch about CUDA (exit {done.returncode}):\n{done.stderr.strip()}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return found if found["gpu"] else None


def known_keys() -> set[str]:
    from minigpt.config import Config

    return set(Config.keys())


def report(out: Path, settings: Settings, device: dict[str, Any], log: runner.Log, results: dict[str, Any]) -> None:
    text = runner.ReportText(
        title="# GPU targets",
        about=[
            f"Date {device['date']}; GPU {device['gpu']} ({device['count']} visible), torch {device['torch']}, "
            f"CUDA {device['cuda']}; commit {device['commit']}. Settings: {settings.text()}."
        ],
        note="The reference column is the reference implementation on an H100 in another run: context printed "
        "beside, never the other side of a ratio. Commands run in the checkout; $TMP is a temporary folder.",
        quick_note="--quick: a check that the script works end to end; short runs, not the targets' settings.",
    )
    runner.write_report(out, text, settings, log, {"device": device, **results}, temporary="minigpt-gpu-targets-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    runner.add_report_options(
        parser,
        out_help="report folder [default: reports/gpu-targets]",
        quick_help="short runs: checks the script, measures little",
        parts="1, 2, 3",
    )
    args = parser.parse_args()
    checkout = runner.this_checkout()
    device = cuda_device(checkout)
    if device is None:
        print("no CUDA GPU on this machine: the GPU targets need one; nothing measured")
        return
    checkout.inspect()
    settings = runner.chosen_settings(FULL, QUICK, args)
    out = runner.report_folder(args.out, args.quick, "gpu-targets")
    skip = runner.parts_to_skip(args.skip)
    device |= {"date": runner.utc_now(), "commit": checkout.commit[:12]}
    print(f"{device['gpu']}, torch {device['torch']}, CUDA {device['cuda']}\n")
    log, results, known = runner.Log(), {}, known_keys()
    with tempfile.TemporaryDirectory(prefix="minigpt-gpu-targets-") as folder:
        tmp = Path(folder)
        if "1" not in skip:
            results["nanogpt_size"] = nanogpt_size(checkout, settings, known, tmp, log)
        if "2" not in skip:
            results["gpu_fast"] = gpu_fast(checkout, settings, tmp, log)
        if "3" not in skip:
            results["tiny_model"] = tiny_model(checkout, settings, known, tmp, log)
    report(out, settings, device, log, results)
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
