"""Every metric a sweep records, declared once: its name, unit, display, how seeds aggregate it,
which way is better, and (for a derived metric) how it is computed from others.

trial.json's summary, results.csv and summary.csv, the report's tables and the terminal summary
all read this schema, so a new metric is one declaration here (plus, for a measured one, the
code that measures it). A leaf module: no torch, no pandas.

Levels: a `point` metric is one value per eval/log point (metrics.jsonl), a `trial` metric one
value per trial (trial.json). Kinds place a metric in the per-variant summary and its table:
`size` (what is trained) comes before the completed count, `quality` before the comparison with
the baseline, `cost` after the interleaved speed; `progress` and `corpus` stay per trial.

Aggregation over the seeds of a variant and device (summary.csv):
  interval  mean and 95% Student's t interval over completed trials, as NAME, NAME_low, NAME_high
  mean      mean over completed trials
  max       largest over every trial, finished or not (a size that is the same on every seed)
  none      per trial only
Every declared metric is a non-negative quantity, so an interval is cut at zero.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Level = Literal["point", "trial"]
Kind = Literal["size", "quality", "progress", "cost", "corpus"]
Aggregate = Literal["interval", "mean", "max", "none"]
Formatter = str | Callable[[float], str]  # a format() spec, or a function of the value


@dataclass(frozen=True)
class Derivation:
    """A metric computed from others of the same record: `compute(*values of inputs)`, None
    when any input is missing."""

    inputs: tuple[str, ...]
    compute: Callable[..., float]

    def __call__(self, record: Mapping[str, Any]) -> float | None:
        values = [record.get(name) for name in self.inputs]
        return None if any(value is None for value in values) else self.compute(*values)


@dataclass(frozen=True)
class Metric:
    name: str  # the key in trial.json or metrics.jsonl, the column in results.csv
    level: Level
    kind: Kind
    unit: str
    fmt: Formatter  # how one value reads in the report
    label: str  # short and lower case: a table header or a figure axis
    description: str  # one sentence: what it measures
    aggregate: Aggregate = "none"
    lower_is_better: bool | None = None  # None: neither direction is better (a size, a count)
    derivation: Derivation | None = None
    summary_name: str | None = None  # its summary.csv column, where that differs from `name`
    count_column: str | None = None  # summary.csv column "seeds with a value/completed seeds"
    in_report: bool = False  # a column of the report's summary table
    terminal: tuple[str, Formatter] | None = None  # (header, format) in the terminal summary
    same_as: str | None = None  # a metric it often equals: the report shows it only where they differ

    @property
    def column(self) -> str:
        """Its summary.csv column (the mean, where it has an interval)."""
        return self.summary_name or self.name

    def summary_columns(self) -> tuple[str, ...]:
        if self.aggregate == "none":
            return ()
        columns = (self.column,)
        if self.aggregate == "interval":
            columns += (f"{self.column}_low", f"{self.column}_high")
        return columns + ((self.count_column,) if self.count_column else ())

    def format(self, value: Any, fmt: Formatter | None = None, missing: str = "–") -> str:
        """One value as text in `fmt` (else its own format); `missing` where there is none."""
        fmt = fmt or self.fmt
        if value is None or not math.isfinite(value):
            return missing
        return fmt(value) if callable(fmt) else format(value, fmt)


def si(value: float) -> str:
    """A count in three significant figures with a k/M/G suffix, for narrow columns: 41.2k, 12.3M."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale * 0.9995:  # from where it rounds to 1.00 of this unit
            scaled = value / scale
            decimals = 2 if abs(scaled) < 9.995 else 1 if abs(scaled) < 99.95 else 0
            return f"{scaled:.{decimals}f}{suffix}"
    return f"{value:.0f}"


def bits(nats: float) -> float:
    """A cross-entropy in nats as bits: divided by ln 2."""
    return nats / math.log(2)


def nats(bits: float) -> float:
    return bits * math.log(2)


POINT_METRICS: tuple[Metric, ...] = (
    Metric("step", "point", "progress", "steps", ".0f", "step", "optimizer steps taken so far"),
    Metric("tokens", "point", "progress", "tokens", ",.0f", "tokens", "training tokens seen so far"),
    Metric("seconds", "point", "progress", "s", ".1f", "seconds", "seconds since training started"),
    Metric(
        "train_loss", "point", "quality", "nats/char", ".4f", "train loss",
        "mean training cross-entropy since the previous point", lower_is_better=True,
    ),
    Metric(
        "val_loss", "point", "quality", "nats/char", ".4f", "validation loss",
        "cross-entropy on the validation batches", lower_is_better=True,
    ),
    Metric("lr", "point", "progress", "", ".3g", "learning rate", "learning rate of the last step"),
    Metric(
        "tokens_per_sec", "point", "cost", "tokens/s", ",.0f", "tokens/s",
        "training tokens per second since the previous point", lower_is_better=False,
    ),
)  # fmt: skip

TRIAL_METRICS: tuple[Metric, ...] = (
    Metric(
        "params", "trial", "size", "parameters", ",.0f", "params", "trainable parameters of the model",
        aggregate="max", in_report=True,
    ),
    Metric(
        "val_bytes_per_char", "trial", "corpus", "bytes/char", ".4f", "bytes per char",
        "UTF-8 bytes per character of the validation split (empty where characters were cut by max_vocab)",
    ),
    Metric(
        "best_val_loss", "trial", "quality", "nats/char", ".4f", "best val loss",
        "lowest validation cross-entropy of the trial (its checkpoint's)", aggregate="interval",
        lower_is_better=True, in_report=True, terminal=("best\nval", ".4f"),
    ),
    Metric(
        "best_val_bpc", "trial", "quality", "bits/char", ".4f", "best val bpc",
        "the best validation loss in bits per character (loss / ln 2)", aggregate="interval", lower_is_better=True,
        derivation=Derivation(("best_val_loss",), bits), in_report=True, terminal=("bpc", ".3f"),
    ),
    Metric(
        "best_val_bpb", "trial", "quality", "bits/byte", ".4f", "best val bpb",
        "the best validation loss in bits per UTF-8 byte: bits per character over bytes per character, the same "
        "on ASCII text", aggregate="interval", lower_is_better=True, in_report=True, same_as="best_val_bpc",
        derivation=Derivation(("best_val_bpc", "val_bytes_per_char"), lambda bpc, ratio: bpc / ratio),
    ),
    Metric("best_step", "trial", "progress", "steps", ".0f", "best step", "the step of the best validation loss"),
    Metric(
        "final_val_loss", "trial", "quality", "nats/char", ".4f", "final val loss",
        "validation cross-entropy at the last evaluation", lower_is_better=True,
    ),
    Metric(
        "final_val_bpc", "trial", "quality", "bits/char", ".4f", "final val bpc",
        "the final validation loss in bits per character (loss / ln 2)", lower_is_better=True,
        derivation=Derivation(("final_val_loss",), bits),
    ),
    Metric(
        "final_val_bpb", "trial", "quality", "bits/byte", ".4f", "final val bpb",
        "the final validation loss in bits per UTF-8 byte", lower_is_better=True,
        derivation=Derivation(("final_val_bpc", "val_bytes_per_char"), lambda bpc, ratio: bpc / ratio),
    ),
    Metric("steps", "trial", "progress", "steps", ",.0f", "steps", "optimizer steps taken"),
    Metric("tokens", "trial", "progress", "tokens", ",.0f", "tokens", "training tokens seen"),
    Metric("wall_seconds", "trial", "cost", "s", ".1f", "wall s", "seconds from building the trainer to the end"),
    Metric("train_seconds", "trial", "cost", "s", ".1f", "train s", "seconds spent in training steps"),
    Metric("eval_seconds", "trial", "cost", "s", ".1f", "eval s", "seconds spent evaluating"),
    Metric(
        "tokens_per_sec", "trial", "cost", "tokens/s", ",.0f", "tokens/s during training",
        "tokens per median training step, measured while the trial trained (not comparable across trials)",
        aggregate="interval", lower_is_better=False, summary_name="tokens_per_sec_during_training",
        terminal=("tok/s", si),
    ),
    Metric(
        "step_ms_p50", "trial", "cost", "ms", ".1f", "step ms p50", "median training step time",
        aggregate="mean", lower_is_better=True, summary_name="step_ms_p50_during_training",
        terminal=("step\nms", ".1f"),
    ),
    Metric("step_ms_p90", "trial", "cost", "ms", ".1f", "step ms p90", "90th percentile of the training step time"),
    Metric(
        "peak_memory_mb", "trial", "cost", "MB", ",.0f", "peak memory MB", "peak device memory while training",
        aggregate="mean", lower_is_better=True,
    ),
    Metric("flops_per_token", "trial", "size", "FLOPs/token", ".3g", "FLOPs/token", "model FLOPs per trained token"),
    Metric(
        "total_flops_per_token", "trial", "size", "FLOPs/token", ".3g", "total FLOPs/token",
        "FLOPs a training step computes per token (minigpt.flops): model matmuls, the whole attention square "
        "the kernel computes, normalizations, and the optimizer's step spread over the step's tokens",
    ),
    Metric(
        "total_flops_per_step", "trial", "size", "FLOPs/step", ".3g", "total FLOPs/step",
        "FLOPs one training step computes: total FLOPs per token x tokens per step (the optimizer's once)",
    ),
    Metric(
        "optimizer_flops_per_step", "trial", "size", "FLOPs/step", ".3g", "optimizer FLOPs/step",
        "the optimizer's own arithmetic per step: its elementwise update, Muon's Newton-Schulz iterations, "
        "gradient clipping",
    ),
    Metric(
        "model_flops", "trial", "progress", "FLOPs", ".3g", "model FLOPs", "model FLOPs per token x tokens trained",
        derivation=Derivation(("flops_per_token", "tokens"), lambda per_token, tokens: per_token * tokens),
    ),
    Metric(
        "total_flops", "trial", "progress", "FLOPs", ".3g", "total FLOPs",
        "total FLOPs per token x tokens trained: what --max-flops budgets",
        derivation=Derivation(("total_flops_per_token", "tokens"), lambda per_token, tokens: per_token * tokens),
    ),
    Metric(
        "mfu", "trial", "cost", "fraction of peak", ".2%", "MFU",
        "model FLOPs per second during training over this device's measured peak in the trial's precision",
        aggregate="mean", lower_is_better=False, in_report=True, terminal=("MFU", ".1%"),
    ),
    Metric(
        "time_to_target_s", "trial", "cost", "s", ".1f", "time to target s",
        "seconds from training start until the validation loss first reached the target (empty: never)",
        aggregate="interval", lower_is_better=True, count_column="reached_target", in_report=True,
        terminal=("target\ns", ".1f"),
    ),
    Metric("compile_seconds", "trial", "cost", "s", ".1f", "compile s", "torch.compile warm-up, outside other times"),
    Metric("checkpoint_seconds", "trial", "cost", "s", ".1f", "checkpoint s", "seconds spent saving checkpoints"),
    Metric("peak_flops", "trial", "cost", "FLOP/s", ".3g", "peak FLOP/s", "measured matmul peak of the device"),
)  # fmt: skip


LENGTH_METRIC = re.compile(r"val_loss_at_(\d+)x(_sliding)?")


def length_metric_name(multiple: int, sliding: bool = False) -> str:
    """trial.json's key and results.csv's column for the loss at `multiple` x block_size."""
    return f"val_loss_at_{multiple}x" + ("_sliding" if sliding else "")


def length_metric(multiple: int, sliding: bool = False) -> Metric:
    """The validation loss of the best checkpoint at `multiple` x block_size (run --eval-lengths), one
    metric per length and protocol: declared here for every length a run may ask for."""
    protocol = "sliding windows, the last block_size/2 tokens of each scored" if sliding else "non-overlapping windows"
    return Metric(
        length_metric_name(multiple, sliding), "trial", "quality", "nats/char", ".4f",
        f"val loss at {multiple}x" + (" sliding" if sliding else ""),
        f"validation cross-entropy of the best checkpoint on windows of {multiple} x block_size, {protocol}",
        aggregate="interval", lower_is_better=True,
    )  # fmt: skip


def length_metrics(keys: Iterable[str]) -> list[Metric]:
    """The length metrics among a record's keys, each once, by length, non-overlapping before sliding."""
    found = [LENGTH_METRIC.fullmatch(key) for key in set(keys)]
    keys = sorted((int(match[1]), bool(match[2])) for match in found if match)
    return [length_metric(multiple, sliding) for multiple, sliding in keys]


def declared(level: Level) -> tuple[Metric, ...]:
    """The declared metrics of `level`, read at call time (so an added metric is seen everywhere)."""
    return TRIAL_METRICS if level == "trial" else POINT_METRICS


def find(name: str, level: Level = "trial") -> Metric:
    for metric in declared(level):
        if metric.name == name:
            return metric
    length = LENGTH_METRIC.fullmatch(name)
    if length and level == "trial":
        return length_metric(int(length[1]), bool(length[2]))
    raise KeyError(f"no {level} metric named {name!r}")


def names(level: Level) -> list[str]:
    return [m.name for m in declared(level)]


def with_derived(record: Mapping[str, Any], level: Level = "trial") -> dict[str, Any]:
    """`record` with every derived metric of `level` computed from its inputs, in declaration
    order (so one derived metric may build on another). Computed wherever a record is read, a
    derived value never disagrees with the values it comes from."""
    completed = dict(record)
    for metric in declared(level):
        if metric.derivation is not None:
            completed[metric.name] = metric.derivation(completed)
    return completed


def summarized(kind: Kind) -> Iterator[Metric]:
    """The trial metrics of `kind` that summary.csv aggregates over seeds, in declaration order."""
    return (m for m in TRIAL_METRICS if m.kind == kind and m.aggregate != "none")
