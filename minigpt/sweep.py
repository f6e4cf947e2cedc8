"""Plan a sweep (variants x devices x seeds, one budget) and say what makes two runs one sweep.

minigpt.runner runs the plan; a re-run into the same directory must match its identity (more
variants, seeds or devices grow it), and a different plan is refused rather than mixed into the
old results.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minigpt.config import Config
from minigpt.errors import UserError
from minigpt.store import RunStore
from minigpt.trackers import TrackingSettings
from minigpt.train import Budget
from minigpt.trial import TrialSettings, TrialSpec
from minigpt.variants import BASELINE, VariantError, VariantRegistry

if TYPE_CHECKING:
    from minigpt.data import Corpus
    from minigpt.stages import FairOptions

# Small enough that three seeds of each finish in about six minutes on a 2-core CPU, with two
# different answers: token-shift trains better at the same speed, adamw steps faster but
# trains worse (the zoo report measured both).
DEFAULT_VARIANTS = ("baseline", "token-shift", "adamw")
DEFAULT_TARGET_LOSS = 2.0
DEVICE_KINDS = ("cpu", "cuda", "mps")

__all__ = ["SweepPlan", "TrialSpec", "plan_sweep"]


class PlanError(UserError):
    """A sweep that cannot be planned as asked."""


@dataclass
class SweepPlan:
    trials: list[TrialSpec]
    data: str
    budget: Budget
    target_loss: float | None
    variants: list[str]
    devices: list[str]
    seeds: list[int]
    base_config: Config
    max_vocab: int | None = None
    options: dict[str, Any] = field(default_factory=dict)  # preset, overrides, plugins: for the record
    fair: FairOptions | None = None  # tuning, size ladder, FLOPs budget, --seeds auto (minigpt.stages)
    tracking: TrackingSettings | None = None  # where every trial is also logged; no part of the plan's identity
    eval_lengths: tuple[int, ...] = ()  # multiples of block_size each trial is scored at after training
    registry: VariantRegistry | None = field(
        default=None, repr=False, compare=False
    )  # configures a fair sweep's groups

    @property
    def shaped(self) -> dict[str, Any] | None:
        """What tuning, sizes or a FLOPs budget make of the trials, for the record; None without them."""
        return self.fair.describe() if self.fair is not None and self.fair.shapes_trials else None

    @property
    def settings(self) -> TrialSettings:
        plugins = tuple(str(Path(plugin).resolve()) for plugin in self.options.get("plugins", []))
        return TrialSettings(self.data, self.budget, self.target_loss, plugins, self.tracking, self.eval_lengths)

    def describe(self) -> dict[str, Any]:
        return {
            "variants": self.variants,
            "devices": self.devices,
            "seeds": self.seeds,
            "data": self.data,
            "budget": asdict(self.budget),
            "target_loss": self.target_loss,
            "max_vocab": self.max_vocab,
            "base_config": self.base_config.to_dict(),
            "trials": [] if self.shaped else [spec.id for spec in self.trials],  # a fair sweep adds its stages' own
            "fair": self.shaped,
            "eval_lengths": list(self.eval_lengths) or None,
            **self.options,
        }

    def identity(self, corpus_digest: str) -> dict[str, Any]:
        """What makes two runs one sweep: a re-run into the same directory must match it."""
        return {
            "base_config": self.base_config.to_dict(),
            "budget": asdict(self.budget),
            "target_loss": self.target_loss,
            "corpus": corpus_digest,
            "max_vocab": self.max_vocab,
            "plugins": sorted(self.settings.plugins),
            "variants": {spec.variant: spec.config.to_dict() for spec in self.trials},
            "fair": self.shaped,
            "eval_lengths": list(self.eval_lengths) or None,  # None: not asked (and in runs from before)
        }


def parse_devices(spec: str) -> list[str]:
    """'auto' is every device this machine has; otherwise a comma list such as cpu,cuda:1."""
    from minigpt.measure import available_devices

    if spec.strip() == "auto":
        return available_devices()
    devices = [d.strip() for d in spec.split(",") if d.strip()]
    for device in devices:
        kind, _, index = device.partition(":")
        if kind not in DEVICE_KINDS or (index and not index.isdigit()):
            raise PlanError(
                f"unknown device {device!r}; use auto or a comma list of {', '.join(DEVICE_KINDS)} (cuda:N)"
            )
    if not devices:
        raise PlanError("--devices is empty; use auto or a comma list such as cpu,cuda")
    return list(dict.fromkeys(devices))


def parse_seeds(spec: str) -> list[int]:
    try:
        seeds = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise PlanError(f"--seeds expects comma-separated integers, got {spec!r}") from None
    if not seeds:
        raise PlanError("--seeds is empty; give at least one integer seed")
    return list(dict.fromkeys(seeds))


def resolve_variants(registry: VariantRegistry, spec: str | Iterable[str]) -> list[str]:
    names = [n.strip() for n in spec.split(",")] if isinstance(spec, str) else list(spec)
    if names == ["all"]:
        return registry.names()
    for name in names:
        registry.get(name)  # raises with the closest names
    if not names:
        raise VariantError("--variants is empty; name at least one variant, or all")
    return list(dict.fromkeys(names))


def rotated(names: list[str], turn: int) -> list[str]:
    """The variants in the order of one seed's turn: each seed starts one variant later, so no
    variant always runs first (or always right after another)."""
    shift = turn % len(names)
    return names[shift:] + names[:shift]


def plan_sweep(
    registry: VariantRegistry,
    variants: str | Iterable[str],
    devices: list[str],
    seeds: list[int],
    base_config: Config,
    data: str,
    budget: Budget,
    target_loss: float | None = DEFAULT_TARGET_LOSS,
    max_vocab: int | None = None,
    options: dict[str, Any] | None = None,
) -> SweepPlan:
    """Every variant is configured (and so validated) here, before any training starts."""
    names = resolve_variants(registry, variants)
    baseline = registry.get(BASELINE).configure(base_config) if BASELINE in registry.names() else base_config
    configured = {name: registry.get(name).configure(base_config) for name in names}
    trials = [
        TrialSpec(
            name,
            registry.get(name).description,
            device,
            seed,
            configured[name],
            {key: new for key, (new, _) in configured[name].diff(baseline).items()},
        )
        for device in devices
        for turn, seed in enumerate(seeds)
        for name in rotated(names, turn)
    ]
    return SweepPlan(trials, data, budget, target_loss, names, devices, seeds, base_config, max_vocab, options or {},
                     registry=registry)  # fmt: skip


def merged_sweep_json(previous: dict[str, Any], asked: dict[str, Any], identity: dict[str, Any]) -> dict[str, Any]:
    """sweep.json after this run: the previous content updated with this run's plan, its variants,
    devices, seeds and trials the union of every run's into this directory."""
    sweep = {**previous, **asked}
    for key in ("variants", "devices", "seeds", "trials"):
        sweep[key] = list(dict.fromkeys([*previous.get(key, []), *asked[key]]))
    known = previous.get("identity", {}).get("variants", {})
    sweep["identity"] = {**identity, "variants": {**known, **identity["variants"]}}
    return sweep


def corpus_digest(corpus: Corpus) -> str:
    """A hash of the encoded text and its vocabulary: the corpus a sweep trained on, whatever its path."""
    digest = hashlib.sha256(corpus.tokenizer.chars.encode())
    for split in (corpus.train, corpus.val):
        digest.update(split.numpy().tobytes())
    return digest.hexdigest()


def check_same_plan(store: RunStore, identity: dict[str, Any]) -> None:
    """A re-run continues a run only when it asks for the same thing; more variants, seeds or
    devices are the same plan grown, anything else would mix two sweeps' results."""
    previous = store.read_sweep().get("identity")
    if previous is None:  # nothing ran here yet
        return
    difference = first_difference(previous, identity)
    if difference:
        raise PlanError(f"{store.root} holds another sweep ({difference}); use --fresh to start over, or another --out")


def first_difference(before: dict[str, Any], now_: dict[str, Any]) -> str | None:
    for key in ("base_config", "budget", "target_loss", "corpus", "max_vocab", "plugins", "fair", "eval_lengths"):
        if before.get(key) != now_.get(key):
            return _describe_difference(key, before.get(key), now_.get(key))
    for name, config in now_["variants"].items():
        if name in before["variants"] and before["variants"][name] != config:
            return _describe_difference(f"variant {name}", before["variants"][name], config)
    return None


def _describe_difference(what: str, before: Any, now_: Any) -> str:
    if isinstance(before, dict) and isinstance(now_, dict):
        for key in sorted(set(before) | set(now_)):
            if before.get(key) != now_.get(key):
                return f"{what} {key}: {before.get(key)!r} there, {now_.get(key)!r} now"
    return f"{what}: {before!r} there, {now_!r} now"
