"""One flat, frozen configuration: every model and training key a user can `--set`.

A variant is a function `Config -> Config`; the same keys land in trial.json, so a report can
show exactly what each variant changed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from minigpt.errors import UserError

PRECISIONS = ("auto", "fp32", "tf32", "bf16", "fp16")
COMPILE_MODES = ("false", "default", "reduce-overhead", "max-autotune")
# what Muon orthogonalizes as one matrix of attention's input projections, whatever the module
# layout: every query, key and value head together, the three roles apart, or each head apart
MUON_SPLITS = ("fused", "qkv", "head")


class ConfigError(UserError):
    """A configuration a user asked for cannot be built; the message says what to change."""


@dataclass(frozen=True)
class Config:
    # model
    vocab_size: int = 65
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    position: str = "rope"
    attention: str = "sdpa"
    norm: str = "layernorm"
    mlp: str = "gelu"
    bias: bool = False
    tie_weights: bool = False
    # attention and positions, for the modern variants; these defaults are the baseline's
    n_kv_head: int = 0  # key/value heads, each shared by n_head / n_kv_head query heads; 0: n_head
    qk_norm: bool = False  # RMS-normalize each head's queries and keys (learned gains) before attending
    window: int = 0  # a windowed layer's query sees itself and the window - 1 keys before it; 0: no windows
    window_pattern: str = "SL"  # per layer, cycled from the first: S windowed, L full; the last layer is always full
    rope_base: float = 10000.0  # RoPE's frequencies are rope_base^(-2i/d) over the d rotated dims
    rope_fraction: float = 1.0  # share of each head's dims that RoPE rotates (the first ones, as GPT-NeoX)
    # the model's skeleton, each a registry in minigpt.components; these defaults are the baseline's
    block: str = "pre-norm"  # block layout: pre-norm, post-norm, sandwich, parallel
    residual: str = "plain"  # residual stream: plain, x0 (embeddings re-injected), unet (mirrored skips)
    embedding: str = "token"  # what the blocks get from the token embeddings: token, token-shift
    head: str = "linear"  # the head's loss side: cross-entropy with softcap and z_loss
    softcap: float = 0.0  # logits become softcap * tanh(logits / softcap); 0: uncapped
    z_loss: float = 0.0  # weight of PaLM's z-loss, mean(logsumexp(logits)^2); 0: none
    init: str = "gpt2"  # weight initialization: gpt2, zero-proj
    # training
    batch_size: int = 12
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    optimizer: str = "adamw"
    muon_split: str = "fused"  # one of MUON_SPLITS: Muon's matrices of attention's q, k, v projections
    schedule: str = "cosine"  # lr schedule after warm-up: cosine, linear, constant, wsd
    decay_fraction: float = 0.2  # wsd: the share of the budget, at its end, spent decaying to min_lr
    eval_interval: int = 250
    eval_batches: int = 20  # 0: the whole validation split
    patience: int = 0
    compile: str = "false"  # one of COMPILE_MODES
    precision: str = "auto"  # one of PRECISIONS

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        positive = ("vocab_size", "n_layer", "n_head", "n_embd", "block_size", "batch_size")
        for key in positive + ("eval_interval",):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): "
                f"choose n_head from {_divisors(self.n_embd)}"
            )
        if "rope" in self.position and self.head_size % 2:
            raise ConfigError(
                f"RoPE needs an even head size, got n_embd/n_head = {self.head_size}: change n_embd or n_head"
            )
        self._validate_attention_details()
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.lr <= 0 or self.min_lr < 0:
            raise ConfigError(f"lr must be > 0 and min_lr >= 0, got lr={self.lr} min_lr={self.min_lr}")
        for key in ("warmup_steps", "patience", "weight_decay", "grad_clip", "eval_batches"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.softcap < 0 or self.z_loss < 0:
            raise ConfigError(f"softcap and z_loss must be >= 0, got softcap={self.softcap} z_loss={self.z_loss}")
        if not 0 < self.decay_fraction <= 1:
            raise ConfigError(f"decay_fraction must be in (0, 1], got {self.decay_fraction}")
        for key, choices in (("compile", COMPILE_MODES), ("precision", PRECISIONS), ("muon_split", MUON_SPLITS)):
            if getattr(self, key) not in choices:
                raise ConfigError(f"{key} must be one of {'|'.join(choices)}, got {getattr(self, key)!r}")

    def _validate_attention_details(self) -> None:
        if self.n_kv_head < 0 or (self.n_kv_head and self.n_head % self.n_kv_head):
            raise ConfigError(
                f"n_kv_head ({self.n_kv_head}) must divide n_head ({self.n_head}): choose it from "
                f"{_divisors(self.n_head)}, or 0 for one key/value head per query head"
            )
        if self.window < 0 or (self.window and self.window >= self.block_size):
            raise ConfigError(
                f"window must be in 1..block_size-1 ({self.block_size - 1}), or 0 for full attention, got {self.window}"
            )
        if not self.window_pattern or set(self.window_pattern) - {"S", "L"}:
            raise ConfigError(f"window_pattern is a string of S (windowed) and L (full), got {self.window_pattern!r}")
        rotary = "rope" in self.position
        for key, default in (("rope_base", 10000.0), ("rope_fraction", 1.0)):
            if getattr(self, key) != default and not rotary:
                raise ConfigError(
                    f"{key} applies to rotary positions, but position is {self.position!r}: set position=rope"
                )
        if self.rope_base <= 1:
            raise ConfigError(f"rope_base must be > 1, got {self.rope_base}")
        if not 0 < self.rope_fraction <= 1 or (rotary and self.rope_dims < 2):
            raise ConfigError(
                f"rope_fraction must be in (0, 1] and rotate at least 2 of the head's {self.head_size} dims, "
                f"got {self.rope_fraction}"
            )

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def rope_dims(self) -> int:
        """How many of each head's dims RoPE rotates: an even number, rounded down."""
        return int(self.head_size * self.rope_fraction) // 2 * 2

    def layer_window(self, layer: int) -> int:
        """How many keys (itself included) a query of block `layer` sees at most; 0: all."""
        if not self.window or layer == self.n_layer - 1:
            return 0
        return self.window if self.window_pattern[layer % len(self.window_pattern)] == "S" else 0

    def at_layer(self, layer: int) -> Config:
        """The configuration block `layer` is built from: `window` is that block's own."""
        return self.replace(window=self.layer_window(layer))

    def replace(self, **changes: Any) -> Config:
        unknown = set(changes) - set(self.keys())
        if unknown:
            raise ConfigError(f"unknown config key {sorted(unknown)[0]!r}; valid keys: {', '.join(self.keys())}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def diff(self, other: Config) -> dict[str, tuple[Any, Any]]:
        """Keys whose values differ: {key: (self's value, other's value)}."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}

    def with_overrides(self, assignments: list[str]) -> Config:
        """Apply `key=value` strings as a user types them after `--set`."""
        return self.replace(**parse_assignments(assignments))


def parse_assignments(assignments: list[str]) -> dict[str, Any]:
    types = {f.name: f.type for f in fields(Config)}
    parsed: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(f"--set expects key=value, got {assignment!r}")
        if key not in types:
            raise ConfigError(f"unknown --set key {key!r}; valid keys: {', '.join(types)}")
        parsed[key] = _parse_value(key, types[key], raw.strip())
    return parsed


def _parse_value(key: str, type_name: str, raw: str) -> Any:
    try:
        if type_name == "bool":
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
        return raw
    except ValueError:
        raise ConfigError(f"--set {key} expects {type_name}, got {raw!r}") from None


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclass(frozen=True)
class Preset:
    """A named starting configuration for a sweep, with the token budget it was tuned for."""

    description: str
    overrides: dict[str, Any]
    max_tokens: int

    def config(self) -> Config:
        return Config().replace(**self.overrides)


PRESETS = {
    "gpu-fast": Preset(
        "a GPU recipe at the reference GPU size (6 x 384, 6 heads, block 256, batch 64): Muon with batched "
        "Newton-Schulz, bf16 autocast, CUDA graphs; not yet tuned on a GPU",
        {
            "n_layer": 6,
            "n_head": 6,
            "n_embd": 384,
            "block_size": 256,
            "dropout": 0.2,
            "optimizer": "muon",
            "batch_size": 64,
            "lr": 1.5e-2,
            "min_lr": 1.5e-3,
            "warmup_steps": 100,
            "eval_interval": 250,
            "eval_batches": 20,
            "precision": "auto",
            "compile": "reduce-overhead",
        },
        32_768_000,
    ),
    "cpu-fast": Preset(
        "the tuned default recipe for a laptop-class CPU: RoPE, Muon on the hidden matrices (attention's "
        "queries, keys and values orthogonalized as three matrices), batch 32 x 64",
        {
            "optimizer": "muon",
            "muon_split": "qkv",  # reports/muon-splits: 0.055 lower loss than one fused matrix, same speed
            "batch_size": 32,
            "lr": 1.5e-2,
            "min_lr": 1.5e-3,
            "eval_interval": 50,
            "eval_batches": 10,
        },
        600_000,
    ),
    "reference": Preset(
        "a widely used reference CPU recipe: learned positions, lr 1e-3 -> 1e-4, 2000 steps of 12 x 64",
        {
            "n_layer": 4,
            "n_head": 4,
            "n_embd": 128,
            "block_size": 64,
            "bias": False,
            "position": "learned",
            "attention": "sdpa",
            "norm": "layernorm",
            "mlp": "gelu",
            "tie_weights": True,
            "optimizer": "adamw",
            "beta1": 0.9,
            "batch_size": 12,
            "lr": 1e-3,
            "min_lr": 1e-4,
            "warmup_steps": 100,
            "beta2": 0.99,
            "weight_decay": 0.1,
            "grad_clip": 1.0,
            "dropout": 0.0,
        },
        1_536_000,
    ),
}


GPU_KINDS = ("cuda", "mps")


def choose_preset(name: str, devices: list[str]) -> str:
    """`auto` is gpu-fast when every device asked for is a GPU, cpu-fast otherwise."""
    if name != "auto":
        return name
    return "gpu-fast" if devices and all(d.partition(":")[0] in GPU_KINDS for d in devices) else "cpu-fast"


def resolve_preset(name: str, devices: list[str]) -> tuple[str, Preset]:
    """The preset's name and recipe; `auto` picks one for `devices`."""
    chosen = choose_preset(name, devices)
    if chosen not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose from auto, {', '.join(PRESETS)}")
    return chosen, PRESETS[chosen]


@dataclass(frozen=True)
class Recipe:
    """Where every variant of a sweep starts: the chosen preset, changed by `--set`."""

    preset: str
    config: Config
    max_tokens: int  # the budget the preset was tuned for


def resolve_recipe(preset: str, devices: list[str], overrides: Sequence[str] = ()) -> Recipe:
    """The base configuration as `run` and `bench` build it: the preset (auto: chosen from the
    devices), then the `--set key=value` assignments; each variant then changes that."""
    name, chosen = resolve_preset(preset, devices)
    return Recipe(name, chosen.config().with_overrides(list(overrides)), chosen.max_tokens)
