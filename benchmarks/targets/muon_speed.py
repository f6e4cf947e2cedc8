"""BatchedMuon against torch.optim.Muon on the cpu-fast training step, interleaved:

    python benchmarks/targets/muon_speed.py                  # about 2 minutes on a 2-core CPU

Two copies of the cpu-fast model (same initial weights) train side by side on the same batches,
one with the registered `muon` optimizer (BatchedMuon on the hidden matrices, AdamW on the rest),
one with torch.optim.Muon in its place. Rounds alternate which goes first (minigpt.interleave);
each round times --steps steps of each, and the ratio is paired within the round: its median
with a distribution-free 95% interval (from 6 rounds on). Two figures: optimizer.step() alone
(on fixed gradients) and the whole training step (forward, backward, clipping, step).
"""

from __future__ import annotations

import argparse
import copy
import statistics
from collections.abc import Callable

import torch

from minigpt import components
from minigpt.components.optimizers import OptimizerGroup, adamw, hidden_matrices
from minigpt.config import PRESETS, Config
from minigpt.interleave import measure_rounds, timed
from minigpt.model import GPT
from minigpt.stats import median_interval

CPU = torch.device("cpu")


def torch_muon(model: GPT, cfg: Config) -> OptimizerGroup:
    """The registered `muon` optimizer with torch.optim.Muon instead of BatchedMuon."""
    hidden = hidden_matrices(model)
    hidden_ids = {id(p) for p in hidden}
    muon = torch.optim.Muon(
        hidden, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=0.95, adjust_lr_fn="match_rms_adamw"
    )
    return OptimizerGroup([muon, adamw([p for p in model.parameters() if id(p) not in hidden_ids], cfg, CPU)])


def train_step(model: GPT, optimizer: torch.optim.Optimizer, cfg: Config, batch: tuple[torch.Tensor, ...]) -> None:
    model(*batch)[1].backward()
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def interleaved(new: Callable[[], None], old: Callable[[], None], rounds: int, steps: int) -> tuple[list, list]:
    """Per-round seconds per step of each, the order alternating round by round."""
    timings = measure_rounds({"new": timed(new, steps), "old": timed(old, steps)}, rounds)
    if timings.failed:
        raise SystemExit(f"a step failed: {timings.failed}")
    return [turns[0] for turns in timings.seconds["new"]], [turns[0] for turns in timings.seconds["old"]]


def report(name: str, new_times: list[float], old_times: list[float]) -> None:
    ratios = [old / new for new, old in zip(new_times, old_times, strict=True)]
    found = median_interval(ratios)
    spread = (
        f"95% interval {found.low:.2f}-{found.high:.2f}"
        if found.has_interval
        else f"range {min(ratios):.2f}-{max(ratios):.2f}, too few rounds for an interval"
    )
    print(
        f"{name}: BatchedMuon {statistics.median(new_times) * 1e3:.1f} ms, torch.optim.Muon "
        f"{statistics.median(old_times) * 1e3:.1f} ms; BatchedMuon is {found.median:.2f}x faster "
        f"(median of {len(ratios)} paired rounds, {spread})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=3, help="steps of each per round")
    parser.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's choice]")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = PRESETS["cpu-fast"].config().replace(vocab_size=65)
    torch.manual_seed(0)
    model_new = GPT(cfg)
    model_old = copy.deepcopy(model_new)
    opt_new = components.optimizer.build("muon", model_new, cfg, CPU)
    opt_old = torch_muon(model_old, cfg)
    generator = torch.Generator().manual_seed(0)
    batches = [
        torch.randint(cfg.vocab_size, (cfg.batch_size, cfg.block_size + 1), generator=generator) for _ in range(8)
    ]
    batches = [(ids[:, :-1], ids[:, 1:]) for ids in batches]
    print(
        f"cpu-fast: {cfg.n_layer}x{cfg.n_embd}, batch {cfg.batch_size} x {cfg.block_size}, "
        f"{len(hidden_matrices(model_new))} Muon matrices; torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    for model, opt in ((model_new, opt_new), (model_old, opt_old)):  # warm-up, and gradients for the step figure
        train_step(model, opt, cfg, batches[0])
        model(*batches[1])[1].backward()
    report("optimizer.step()", *interleaved(opt_new.step, opt_old.step, args.rounds, args.steps))
    for opt in (opt_new, opt_old):
        opt.zero_grad(set_to_none=True)
    counter = {"new": 0, "old": 0}

    def step(which: str, model: GPT, opt: torch.optim.Optimizer) -> Callable[[], None]:
        def work() -> None:
            train_step(model, opt, cfg, batches[counter[which] % len(batches)])
            counter[which] += 1

        return work

    new_times, old_times = interleaved(
        step("new", model_new, opt_new), step("old", model_old, opt_old), args.rounds, args.steps
    )
    report("whole training step", new_times, old_times)


if __name__ == "__main__":
    main()
