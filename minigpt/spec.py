"""A sweep as one typed object: `RunSpec` carries every `run` option from the command line or a
TOML file (`run --spec FILE.toml`) to the sweep plan, and `minigpt-bench spec RUN_DIR` writes the
spec that reproduces a finished run.

A spec file's keys are `run`'s option names with underscores (`max_steps` for --max-steps,
`set` for --set); comma lists (variants, devices, seeds, tune_seeds, sizes) are a string or an
array; repeatable options (set, tune, plugins, track) are arrays. Paths are relative to the
current directory, as on the command line. An option given on the command line wins over the file.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minigpt.errors import UserError
from minigpt.registry import suggest

if TYPE_CHECKING:
    from minigpt.stages import FairOptions
    from minigpt.sweep import SweepPlan
    from minigpt.variants import VariantRegistry


class SpecError(UserError):
    """A spec file that cannot be read as a run's options."""


@dataclass(frozen=True)
class RunSpec:
    """Every option of `run`; the defaults are run's own."""

    variants: str | None = None  # None: the default contrast set
    devices: str = "auto"
    seeds: str = "auto"  # rounds of seeds until each variant is decided; or a comma list
    max_seeds: int | None = None  # with seeds = "auto"; None: minigpt.decide.DEFAULT_MAX_SEEDS
    margin: float = 0.01  # nats: a loss difference within it reads equivalent (minigpt.decide.LOSS_MARGIN)
    speed_margin: float = 0.02  # a speed ratio within 1 +- it reads equivalent (minigpt.stats.SPEED_MARGIN)
    data: str = "tiny-shakespeare"
    max_steps: int | None = None
    max_tokens: int | None = None
    max_seconds: float | None = None
    set: tuple[str, ...] = ()
    preset: str = "auto"
    target_loss: float = 2.0
    stop_at_target: bool = False
    max_vocab: int | None = None
    tune: tuple[str, ...] = ()
    tune_seeds: str | None = None
    sizes: str | None = None
    max_flops: float | None = None
    eval_lengths: str | None = None
    plugins: tuple[str, ...] = ()
    executor: str = "local"
    ray_address: str | None = None
    ray_cpus_per_trial: int | None = None
    track: tuple[str, ...] = ()
    tensorboard_dir: str | None = None
    out: str = "runs/default"
    fresh: bool = False
    no_retry: bool = False
    no_speed: bool = False
    speed_rounds: int = 10
    no_report: bool = False
    quiet: bool = False

    @property
    def explicit_budget(self) -> bool:
        """A budget given by the user; otherwise the preset's token budget applies."""
        return not (self.max_steps is None and self.max_tokens is None and self.max_seconds is None)

    def overridden(self, given: dict[str, Any]) -> RunSpec:
        """This spec with the options given on the command line in place of its own."""
        return replace(self, **{key: _normalized(key, value) for key, value in given.items()})

    def record(self) -> dict[str, Any]:
        """What sweep.json keeps of the spec: every option but --fresh, which is no part of a plan."""
        kept = asdict(self)
        del kept["fresh"]
        return {key: list(value) if isinstance(value, tuple) else value for key, value in kept.items()}


COMMA_LISTS = {
    "variants",
    "devices",
    "seeds",
    "tune_seeds",
    "sizes",
    "eval_lengths",
}  # a string, or an array joined with commas
REPEATED = {"set", "tune", "plugins", "track"}  # arrays of strings
SCALAR_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}
KIND_NAMES = {"str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean"}


def _normalized(key: str, value: Any) -> Any:
    if key in REPEATED:
        return tuple(str(item) for item in value or ())
    if isinstance(value, Path):
        return str(value)
    return value


def _kind(key: str) -> str:
    """The scalar type a key takes, from RunSpec's annotation ("int | None" -> "int")."""
    annotation = next(f.type for f in fields(RunSpec) if f.name == key)
    return str(annotation).split(" | ")[0]


def parse_value(path: Path, key: str, value: Any) -> Any:
    """A spec file's value for `key`, checked against the option's type."""
    if key in COMMA_LISTS and isinstance(value, list) and all(_scalar(item, ("str", "int")) for item in value):
        return ",".join(str(item) for item in value)
    if key in COMMA_LISTS and _scalar(value, ("int",)):  # seeds = 3: one seed
        return str(value)
    if key in REPEATED:
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise SpecError(f"{path}: key {key!r} expects an array of strings, got {_type_name(value)}")
    kind = _kind(key)
    if not _scalar(value, (kind,)):
        wanted = "a string or an array" if key in COMMA_LISTS else KIND_NAMES[kind]
        raise SpecError(f"{path}: key {key!r} expects {wanted}, got {_type_name(value)}")
    return float(value) if kind == "float" else value


def _scalar(value: Any, kinds: tuple[str, ...]) -> bool:
    if isinstance(value, bool):  # a bool is an int to Python, never to a spec
        return "bool" in kinds
    return any(isinstance(value, SCALAR_TYPES[kind]) for kind in kinds)


def _type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array", dict: "a table"}
    return next((name for kind, name in names.items() if isinstance(value, kind)), type(value).__name__)


def load_spec(path: Path) -> RunSpec:
    """The RunSpec a TOML file describes; one line naming the file (and the key or line) when it cannot."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"cannot read the spec {path}: {getattr(error, 'strerror', None) or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"{path}: not valid TOML: {error}") from None
    known = [f.name for f in fields(RunSpec)]
    values = {}
    for key, value in table.items():
        if key not in known:
            raise SpecError(f"{path}: unknown key {key!r}{suggest(key, known)}")
        values[key] = parse_value(path, key, value)
    return RunSpec(**values)


def build_spec(spec_file: Path | None, given: dict[str, Any]) -> RunSpec:
    """The run's spec: the file's (or the defaults), with the command line's options over it."""
    return (load_spec(spec_file) if spec_file is not None else RunSpec()).overridden(given)


def plan_run(spec: RunSpec, registry: VariantRegistry) -> tuple[SweepPlan, FairOptions]:
    """The sweep plan and the fair-comparison options a spec asks for, every part checked."""
    from minigpt.config import resolve_recipe
    from minigpt.stages import fair_options
    from minigpt.sweep import DEFAULT_VARIANTS, parse_devices, plan_sweep
    from minigpt.trackers import tracking_settings
    from minigpt.train import Budget

    auto, max_seeds, seeds = _seeds(spec)
    devices = parse_devices(spec.devices)
    recipe = resolve_recipe(spec.preset, devices, spec.set)
    budget = Budget(
        spec.max_steps,
        spec.max_tokens if spec.explicit_budget else recipe.max_tokens,
        spec.max_seconds,
        spec.stop_at_target,
    )
    plan = plan_sweep(
        registry,
        spec.variants or DEFAULT_VARIANTS,
        devices,
        seeds,
        recipe.config,
        spec.data,
        budget,
        spec.target_loss,
        spec.max_vocab,
        options={
            "preset": recipe.preset,
            "overrides": list(spec.set),
            "plugins": list(spec.plugins),
            "spec": spec.record(),
        },  # fmt: skip
    )
    plan = replace(
        plan,
        tracking=tracking_settings(spec.track, Path(spec.out), spec.tensorboard_dir),
        eval_lengths=eval_lengths(spec.eval_lengths),
    )
    fair = fair_options(list(spec.tune), spec.tune_seeds, spec.sizes, spec.max_flops, plan.seeds, recipe.config,
                        spec.explicit_budget, recipe.max_tokens)  # fmt: skip
    if auto:  # without the baseline among the variants there is nothing to judge: the first round only
        fair = replace(fair, seeds_auto=True, max_seeds=max_seeds, margin=spec.margin)
    return plan, fair


def _seeds(spec: RunSpec) -> tuple[bool, int, list[int]]:
    """(--seeds auto?, --max-seeds, the seeds of the first round or the fixed seeds), each option checked."""
    from minigpt.decide import DEFAULT_MAX_SEEDS, FIRST_ROUND, looks
    from minigpt.sweep import parse_seeds

    if not (math.isfinite(spec.margin) and spec.margin > 0):
        raise SpecError(f"--margin must be a positive number of nats, got {spec.margin:g}")
    if not (math.isfinite(spec.speed_margin) and 0 < spec.speed_margin < 1):
        raise SpecError(f"--speed-margin must be a fraction between 0 and 1 (0.02: 2%), got {spec.speed_margin:g}")
    auto = spec.seeds.strip() == "auto"
    if not auto:
        if spec.max_seeds is not None:
            raise SpecError("--max-seeds needs --seeds auto: with a list of seeds, the list says how many")
        return False, 0, parse_seeds(spec.seeds)
    max_seeds = DEFAULT_MAX_SEEDS if spec.max_seeds is None else spec.max_seeds
    return True, max_seeds, list(range(looks(max_seeds, FIRST_ROUND)[0]))


def eval_lengths(text: str | None) -> tuple[int, ...]:
    """--eval-lengths '1,2,4' -> (1, 2, 4): whole multiples of block_size, each once, ascending."""
    from minigpt.sweep import PlanError

    if text is None:
        return ()
    try:
        multiples = {int(part) for part in text.split(",") if part.strip()}
    except ValueError:
        multiples = set()
    if not multiples or min(multiples) < 1:
        raise PlanError(f"--eval-lengths expects whole multiples of block_size such as 1,2,4, got {text!r}")
    return tuple(sorted(multiples))


def spec_of_run(run_dir: Path) -> RunSpec:
    """The spec that reproduces the run in run_dir: its recorded spec, with the variants, devices
    and seeds of every run into that directory and the preset they resolved to."""
    from minigpt.store import RunStore

    sweep = RunStore(run_dir).read_sweep()
    if not sweep:
        raise SpecError(f"{run_dir} holds no sweep.json: not a run directory written by `run`")
    recorded = sweep.get("spec")
    if recorded is None:
        recorded = _spec_from_plan(sweep, run_dir)
    known = {f.name for f in fields(RunSpec)}
    spec = RunSpec(**{k: tuple(v) if k in REPEATED else v for k, v in recorded.items() if k in known})
    return replace(
        spec,
        variants=",".join(sweep["variants"]),
        devices=",".join(sweep["devices"]),
        # --seeds auto stays auto: the rounds it grew are its own to decide again
        seeds="auto" if recorded.get("seeds") == "auto" else ",".join(str(seed) for seed in sweep["seeds"]),
        preset=sweep.get("preset", spec.preset),
        out=str(run_dir),
    )


def _spec_from_plan(sweep: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """A run recorded before sweep.json kept its spec: the options its plan record gives."""
    if sweep.get("fair"):
        raise SpecError(f"{run_dir} was written before runs recorded their spec, and its tuning options cannot be "
                        "recovered; write its spec by hand")  # fmt: skip
    budget = sweep.get("budget", {})
    return {
        "data": sweep.get("data", RunSpec.data),
        **{key: budget.get(key) for key in ("max_steps", "max_tokens", "max_seconds")},
        "stop_at_target": budget.get("stop_at_target", False),
        "set": sweep.get("overrides", []),
        "target_loss": sweep.get("target_loss"),
        "max_vocab": sweep.get("max_vocab"),
        "plugins": sweep.get("plugins", []),
    }


def to_toml(spec: RunSpec, comment: str = "") -> str:
    """The spec as a TOML file `run --spec` reads back to the same spec (the standard library
    reads TOML but does not write it; a spec holds only strings, numbers, booleans and arrays)."""
    lines = [f"# {line}" for line in comment.splitlines()]
    for key, value in spec.record().items():
        if value is not None:
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # a float keeps its point or exponent: TOML reads it back as a float
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
