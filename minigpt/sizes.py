"""The size ladder of `run --sizes`: named model sizes, or one key's values, and the token budget
each size trains for.

Named sizes (n_layer x n_embd; each about doubles the parameters of the one before; xs is the
presets' 4 x 128):

    xxs 3 x 96 (0.34M)   xs 4 x 128 (0.80M)   s 5 x 160 (1.6M)
    m 7 x 192 (3.1M)     l 8 x 256 (6.3M)     xl 10 x 320 (12M)

(parameters of the baseline on tiny Shakespeare). `--sizes n_embd=128,192,256` instead sets one
numeric key per rung. Every variant's change applies on top of each size.

Token rule, when no --max-steps, --max-tokens, --max-seconds or --max-flops is given: every size
trains the same number of tokens per parameter as the preset's budget gives the xs model (the
cpu-fast preset: 600k tokens for 0.80M parameters, 0.75 tokens per parameter), but at least
MIN_STEPS optimizer steps and at most TOKEN_CAP times the preset's budget (so a large rung stays
affordable). The minimum is what keeps the small rungs past the floors: tokens per parameter
alone gives xxs 255k tokens (125 steps of 32 x 64), a model a few dozen steps out of the bigram's
loss (2.48 nats on tiny Shakespeare; the xxs baseline read 2.24 after 100 steps of a 300-step
schedule, 1.81 at its end, seed 0), while MIN_STEPS keeps it well past the margin minigpt.floors
calls clearly past (0.22 nats below the bigram) and leaves xs at the preset's own budget (293
steps). On cpu-fast: xxs 512k tokens (250 steps), xs 600k, s 1.2M, m 2.3M, l and xl 2.4M (the cap).
`budget_lines` says what each size trains for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from minigpt.config import Config, ConfigError
from minigpt.errors import UserError

NAMED_SIZES = {
    "xxs": {"n_layer": 3, "n_embd": 96},
    "xs": {"n_layer": 4, "n_embd": 128},
    "s": {"n_layer": 5, "n_embd": 160},
    "m": {"n_layer": 7, "n_embd": 192},
    "l": {"n_layer": 8, "n_embd": 256},
    "xl": {"n_layer": 10, "n_embd": 320},
}
REFERENCE_SIZE = "xs"  # the size the presets' token budgets were chosen for
TOKEN_CAP = 4  # a rung trains at most this many times the preset's tokens
MIN_STEPS = 250  # and at least this many optimizer steps, whatever its size


class SizeError(UserError):
    """A --sizes that cannot be used as given."""


@dataclass(frozen=True)
class Size:
    name: str  # xs, or n_embd192 for one key's value: the size's part of trial IDs
    changes: dict[str, Any] = field(default_factory=dict)

    def apply(self, config: Config) -> Config:
        try:
            return config.replace(**self.changes)
        except ConfigError as error:
            raise SizeError(f"size {self.name} does not fit the configuration: {error}") from None

    def describe(self) -> str:
        return f"{self.name} ({', '.join(f'{k}={v}' for k, v in self.changes.items())})"


def sizes_help() -> str:
    return ", ".join(f"{name} {c['n_layer']}x{c['n_embd']}" for name, c in NAMED_SIZES.items())


def parse_sizes(spec: str) -> list[Size]:
    """`xs,s,m` (named sizes) or `KEY=V1,V2,...` (one numeric key)."""
    from minigpt.tune import numeric_keys

    key, sep, raw = (part.strip() for part in spec.partition("="))
    if sep:
        kinds = numeric_keys()
        if key not in kinds:
            raise SizeError(f"--sizes {key}=...: not a numeric configuration key; choose from {', '.join(kinds)}")
        texts = [text.strip() for text in raw.split(",") if text.strip()]
        try:
            values = [int(text) if kinds[key] == "int" else float(text) for text in texts]
        except ValueError:
            raise SizeError(f"--sizes {key} expects {kinds[key]} values, got {raw!r}") from None
        sizes = [Size(f"{key}{value:g}", {key: value}) for value in dict.fromkeys(values)]
    else:
        names = [name.strip() for name in spec.split(",") if name.strip()]
        unknown = [name for name in names if name not in NAMED_SIZES]
        if unknown:
            raise SizeError(f"unknown size {unknown[0]!r}; choose from {sizes_help()}, or give KEY=V1,V2")
        sizes = [Size(name, dict(NAMED_SIZES[name])) for name in dict.fromkeys(names)]
    if not sizes:
        raise SizeError("--sizes is empty; name sizes such as xs,s,m or give KEY=V1,V2")
    return sizes


def size_tokens(params: int, reference_params: int, preset_tokens: int, tokens_per_step: int = 0) -> int:
    """The token rule: the preset's tokens per reference parameter, times this size's parameters, at
    least MIN_STEPS steps of `tokens_per_step` and at most TOKEN_CAP times the preset's tokens."""
    scaled = max(round(preset_tokens * params / reference_params), MIN_STEPS * tokens_per_step)
    return min(scaled, max(TOKEN_CAP * preset_tokens, MIN_STEPS * tokens_per_step))


def budget_lines(groups: list[Any]) -> list[str]:
    """What each size of a ladder trains for, one line per size (its baseline's group where there is
    one, else its first): parameters, tokens, steps and tokens per parameter. For `run` to print
    before training; the groups are minigpt.stages.Group (size, config, budget)."""
    from minigpt.stages import model_counts
    from minigpt.variants import BASELINE

    chosen: dict[str, Any] = {}
    for group in groups:
        if group.size is not None and (group.size.name not in chosen or group.variant == BASELINE):
            chosen[group.size.name] = group
    lines = []
    for group in chosen.values():
        params = model_counts(group.config)[0]
        per_step = group.config.batch_size * group.config.block_size
        steps = group.budget.total_steps(per_step)
        where = f"size {group.size.describe()}: {params:,} parameters"
        if steps is None:
            lines.append(f"{where}, trained for {group.budget.max_seconds:g} s")
        else:
            lines.append(
                f"{where}, {steps * per_step:,} tokens ({steps:,} steps of {per_step:,}, "
                f"{steps * per_step / params:.2f} tokens per parameter)"
            )
    return lines
