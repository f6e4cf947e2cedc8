"""`run --equal-time S`: every variant trains the tokens the baseline trains in S seconds, scaled by
the variant's speed ratio to the baseline, measured in interleaved rounds (minigpt.speed) on the
same device, at the same size, before anything trains.

The clock decides nothing while trials train: each budget is a number of tokens, recorded with
its measurement in sweep.json's `equal_time`, so a resumed run trains the very same trials and no
trial is cut short by a minute in which the machine was slow. A variant 1.2x faster than the
baseline gets 1.2x its tokens; one whose speed could not be measured is not trained (its trials
are recorded as failed, saying why).

After the evaluation (and --seeds auto's rounds), every variant trains again on each seed it was
evaluated on, once for the baseline's tokens and once for the tokens the baseline's total FLOPs buy
at the variant's own FLOPs per token (trials of stage `equal-tokens` and `equal-flops`, outside the
verdicts), so the report sets equal time beside equal tokens and equal FLOPs, every figure a
trained trial's.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from minigpt.errors import UserError
from minigpt.stages import COMPARISONS, Group, StageRunner, cells, in_group
from minigpt.train import Budget
from minigpt.trial import TrialSpec, now
from minigpt.variants import BASELINE

if TYPE_CHECKING:
    from minigpt.data import Corpus


class EqualTimeError(UserError):
    """An --equal-time sweep whose baseline cannot be timed."""


def cell_key(cell: list[Group]) -> str:
    """sweep.json's key of one size and device: `xs/cpu`, or `cpu` without a ladder."""
    first = cell[0]
    return "/".join(part for part in (first.size.name if first.size else "", first.device) if part)


def budgets(measured: dict[str, Any], seconds: float) -> dict[str, int]:
    """Each measured variant's tokens: the baseline's tokens/s times `seconds`, times its speed ratio."""
    baseline_tokens = seconds * measured["baseline_tokens_per_sec"]
    return {
        name: max(1, round(baseline_tokens * row["speed_ratio"]))
        for name, row in measured["variants"].items()
        if "speed_ratio" in row
    }


class EqualTime:
    """The first stage of an --equal-time sweep: time every size and device's variants against its
    baseline (or read back the timing a sweep.json records) and give each group its tokens."""

    def __init__(self, groups: list[Group], seconds: float, rounds: int, seed: int) -> None:
        self.groups, self.seconds, self.rounds, self.seed = groups, seconds, rounds, seed

    def count(self, held: dict[str, dict[str, Any]]) -> tuple[int, int]:
        return 0, 0  # it times steps, and trains no trial

    def notes(self) -> list[str]:
        return [
            f"equal time: each variant trains the tokens the baseline trains in {self.seconds:g} s, times its speed "
            f"ratio, timed in {self.rounds} interleaved rounds per size and device before training"
        ]

    def run(self, runner: StageRunner) -> None:
        recorded = runner.sweep().get("equal_time", {}).get("cells", {})
        measured, lines = {}, []
        for cell in cells(self.groups):
            key = cell_key(cell)
            measured[key] = recorded.get(key) or self.measure(cell, runner.job.corpus)
            self.apply(cell, measured[key])
            lines += budget_lines(key, cell, measured[key])
        runner.update_sweep(equal_time={"seconds": self.seconds, "rounds": self.rounds, "cells": measured})
        runner.note(lines)

    def measure(self, cell: list[Group], corpus: Corpus) -> dict[str, Any]:
        """One size and device's interleaved speed ratios, and the baseline's tokens/s."""
        from minigpt.speed import measure_device

        device = cell[0].device
        speed = measure_device({g.variant: g.config for g in cell}, BASELINE, corpus, device, self.seed, self.rounds)
        if speed.get("failed"):
            raise EqualTimeError(f"--equal-time cannot time {cell_key(cell)}: {speed['skipped']}")
        if "skipped" in speed:  # an absent device: its trials are skipped as in any sweep
            return {"skipped": speed["skipped"]}
        rows = speed["variants"]
        fields = ("tokens_per_sec", "speed_ratio", "speed_ratio_low", "speed_ratio_high")
        return {
            "device_name": speed["device_name"],
            "measured_at": now(),
            "drift": speed["drift"],
            "baseline_tokens_per_sec": rows[BASELINE]["tokens_per_sec"],
            "variants": {
                name: {key: row[key] for key in fields} if "error" not in row else {"error": row["error"]}
                for name, row in rows.items()
            },
        }

    def apply(self, cell: list[Group], measured: dict[str, Any]) -> None:
        if "skipped" in measured:
            return
        tokens = budgets(measured, self.seconds)
        for group in cell:
            if group.variant in tokens:
                group.budget = Budget(max_tokens=tokens[group.variant], stop_at_target=group.budget.stop_at_target)
            else:
                error = measured["variants"].get(group.variant, {}).get("error", "not timed")
                group.untuned = f"--equal-time could not time it against the baseline ({error})"


def budget_lines(key: str, cell: list[Group], measured: dict[str, Any]) -> list[str]:
    """What each variant of one size and device trains for, for `run` to print before training."""
    if "skipped" in measured:
        return [f"{key}: not timed ({measured['skipped']})"]
    lines = [f"{key}: the baseline trains {measured['baseline_tokens_per_sec']:,.0f} tokens/s"]
    for group in cell:
        row = measured["variants"].get(group.variant, {})
        if group.untuned or "speed_ratio" not in row:
            lines.append(f"  {group.variant}: not trained, {group.untuned}")
            continue
        if group.variant == BASELINE:
            lines.append(f"  {group.variant}: {group.budget.max_tokens:,} tokens")
            continue
        interval = f"[{row['speed_ratio_low']:.3f}, {row['speed_ratio_high']:.3f}]"
        lines.append(
            f"  {group.variant}: {row['speed_ratio']:.3f}x {interval} the baseline's speed, "
            f"{group.budget.max_tokens:,} tokens"
        )
    return lines


class Comparisons:
    """The last stage of an --equal-time sweep: each variant at the baseline's tokens and FLOPs."""

    def __init__(self, groups: list[Group]) -> None:
        self.groups = groups

    def count(self, held: dict[str, dict[str, Any]]) -> tuple[int, int]:
        """Those held from before; how many more depends on the seeds the evaluation ends with."""
        return sum(r.get("stage") in COMPARISONS and any(in_group(r, g) for g in self.groups) for r in held.values()), 0

    def notes(self) -> list[str]:
        return []

    def run(self, runner: StageRunner) -> None:
        runner.batch([spec for cell in cells(self.groups) for spec in comparison_specs(cell, runner.records)])


def comparison_specs(cell: list[Group], records: dict[str, dict[str, Any]]) -> list[TrialSpec]:
    """One size and device's comparison trials: every variant but the baseline, on each seed both
    completed an evaluation trial on, at the baseline's tokens and at its total FLOPs."""
    from minigpt.flops import count_flops

    baseline = next((g for g in cell if g.variant == BASELINE), None)
    if baseline is None or baseline.budget.max_tokens is None:  # not timed: nothing to compare at
        return []
    tokens = baseline.budget.max_tokens
    flops = tokens * count_flops(baseline.config).total_per_token
    base_seeds = evaluated_seeds(baseline, records)
    specs = []
    for group in cell:
        if group is baseline or group.untuned:
            continue
        by_stage = {
            "equal-tokens": tokens,
            "equal-flops": max(1, round(flops / count_flops(group.config).total_per_token)),
        }
        for seed in sorted(evaluated_seeds(group, records) & base_seeds):
            for stage, budget in by_stage.items():
                specs.append(group.spec(seed, stage, group.chosen, replace(group.budget, max_tokens=budget)))
    return specs


def evaluated_seeds(group: Group, records: dict[str, dict[str, Any]]) -> set[int]:
    return {r["seed"] for r in records.values()
            if r.get("stage") == "eval" and r.get("status") == "completed" and in_group(r, group)}  # fmt: skip
