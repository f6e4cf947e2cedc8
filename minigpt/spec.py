"""The edge of a run: `RunSpec` declares every `run` option once (the typer command, the TOML
spec file `run --spec FILE.toml` and `minigpt-bench spec RUN_DIR` follow from it), and plan_run
parses it, once, into the typed `RunPlan` that everything after works from.

A spec file's keys are `run`'s option names with underscores (`max_steps` for --max-steps,
`set` for --set); comma lists (variants, devices, seeds, tune_seeds, sizes) are a string or an
array; repeatable options (set, tune, plugins, track) are arrays. Paths are relative to the
current directory, as on the command line. An option given on the command line wins over the file.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minigpt.errors import UserError
from minigpt.executors import executor_names
from minigpt.registry import suggest
from minigpt.sizes import sizes_help

if TYPE_CHECKING:
    from minigpt.executors import ExecutorOptions
    from minigpt.store import RunStore
    from minigpt.sweep import SweepPlan


class SpecError(UserError):
    """A spec file that cannot be read as a run's options."""


def option(
    default: Any, help: str | Callable[[], str], *flags: str, cli: Any = None, shown: str = "", listed: bool = False
) -> Any:
    """A `run` option, declared once as a RunSpec field: the typer command (minigpt.cli), the spec
    file's key and `spec RUN_DIR` all follow from it. `flags` name a switch or a short form,
    `cli` the command line's type where it is not the field's (a Path), `shown` the default
    `run --help` shows where the field's is None, `listed` a comma list (in a spec file, a string
    or an array). `help` may be a function, called for --help."""
    metadata = {"help": help, "flags": flags, "cli": cli, "shown": shown, "listed": listed}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class RunSpec:
    """Every option of `run`, as given (on the command line or in a spec file); the defaults are
    run's own. plan_run turns it into the typed RunPlan. An executor's own options are its fields,
    named NAME_FIELD here (`ray_address`: minigpt.ray_executor.RayOptions.address)."""

    variants: str | None = option(None, "Comma-separated variant names, or 'all'.", shown="a contrast set", listed=True)
    devices: str = option("auto", "auto (every device here), or e.g. cpu,cuda,mps.", listed=True)
    seeds: str = option(
        "auto",
        "auto: rounds of seeds until each variant is decided (3 first, then more only for the undecided, up to "
        "--max-seeds); or comma-separated seeds, at least three (the verdicts pair them).",
        listed=True,
    )
    max_seeds: int | None = option(None, "Most seeds per variant with --seeds auto.", shown="10")
    margin: float = option(0.01, "Loss margin in nats: a difference whose interval lies within ±M reads equivalent.")
    speed_margin: float = option(
        0.02, "Speed margin as a fraction: a speed ratio whose interval lies within 1±M reads equivalent."
    )
    data: str = option(
        "tiny-shakespeare",
        "Corpus: tiny-shakespeare (installed with the package), a UTF-8 text file, "
        "or american-stories:YEARS (e.g. 1801-1810).",
    )
    max_steps: int | None = option(None, "Stop each trial after N optimizer steps.")
    max_tokens: int | None = option(None, "Stop each trial after N training tokens.", shown="the preset's")
    max_seconds: float | None = option(None, "Stop each trial after S seconds of training.")
    set: tuple[str, ...] = option((), "Override a config key for every variant: key=value.")
    preset: str = option(
        "auto",
        "Starting recipe: cpu-fast (tuned for CPUs), gpu-fast, reference, or auto "
        "(gpu-fast when every device is a GPU, else cpu-fast).",
    )
    target_loss: float = option(2.0, "Validation loss whose first crossing gives time_to_target_s.")
    stop_at_target: bool = option(False, "End each trial when it first reaches --target-loss.", "--stop-at-target")
    max_vocab: int | None = option(None, "Keep the N-1 most frequent characters, map the rest to one unknown.")
    tune: tuple[str, ...] = option(
        (),
        "Tune KEY per variant: lr (its own lr x 1/2..2, stepping x2 while the best is at an edge; "
        "min_lr following) or KEY=V1,V2,...; repeat for a product grid. Chosen on --tune-seeds at the full budget.",
    )
    tune_seeds: str | None = option(None, "Seeds that choose tuned values, never --seeds.", shown="1000", listed=True)
    sizes: str | None = option(None, lambda: f"Size ladder: names ({sizes_help()}) or KEY=V1,V2,... .", listed=True)
    max_flops: float | None = option(
        None,
        "Budget each trial in total FLOPs: the model's matmuls, the whole attention square, "
        "normalizations and the optimizer's own step (minigpt.flops), so equal compute charges what runs.",
    )
    equal_time: float | None = option(
        None,
        "Equal wall-clock: each variant trains the tokens the baseline trains in S seconds, times its speed ratio, "
        "timed in --speed-rounds interleaved rounds before training (the budgets are tokens, kept for a resume).",
    )
    eval_lengths: str | None = option(
        None,
        "After training, score each trial's best checkpoint at these multiples of block_size, "
        "e.g. 1,2,4 (non-overlapping and sliding windows): length generalization.",
        listed=True,
    )
    plugins: tuple[str, ...] = option(
        (), "Extra plugin file or folder of variants (repeatable).", "--plugins", cli=list[Path] | None
    )
    executor: str = option("local", lambda: f"Where trials run: {' or '.join(executor_names())}.")
    executor_options: dict[str, Any] = field(default_factory=dict)  # NAME_FIELD -> value: see executor_fields
    track: tuple[str, ...] = option(
        (), "Also log every trial to tensorboard, wandb or mlflow (repeatable; each an extra to install)."
    )
    tensorboard_dir: str | None = option(
        None, "TensorBoard's log folder for --track tensorboard.", cli=Path | None, shown="OUT/tensorboard"
    )
    out: str = option("runs/default", "Run directory; re-running the same one resumes.", cli=Path)
    fresh: bool = option(False, "Delete what --out holds and start over.", "--fresh")
    no_retry: bool = option(False, "Keep the trials that failed in --out as they are; do not retry them.", "--no-retry")
    no_speed: bool = option(False, "Skip the interleaved speed comparison after training.", "--no-speed")
    speed_rounds: int = option(10, "Rounds of the interleaved speed comparison (more: narrower intervals).")
    no_report: bool = option(False, "Do not write the report at the end.", "--no-report")
    quiet: bool = option(False, "Plain log lines instead of progress bars.", "--quiet", "-q")

    @property
    def explicit_budget(self) -> bool:
        """A budget given by the user; otherwise the preset's token budget applies."""
        return not (self.max_steps is None and self.max_tokens is None and self.max_seconds is None)

    def overridden(self, given: dict[str, Any]) -> RunSpec:
        """This spec with the options given on the command line in place of its own."""
        return RunSpec.from_values({**self.values(), **{key: _normalized(key, value) for key, value in given.items()}})

    def values(self) -> dict[str, Any]:
        """Every option by its key, an executor's options among them (those not given: None)."""
        values = {}
        for f in fields(self):
            if f.name == "executor_options":
                values.update({key: self.executor_options.get(key) for key in executor_fields()})
            else:
                values[f.name] = getattr(self, f.name)
        return values

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> RunSpec:
        """The spec of options by key (unknown keys are the caller's to refuse)."""
        own = {f.name for f in fields(cls)} - {"executor_options"}
        executors = executor_fields()
        chosen = {key: value for key, value in values.items() if key in executors and value is not None}
        return cls(**{key: value for key, value in values.items() if key in own}, executor_options=chosen)

    def record(self) -> dict[str, Any]:
        """What sweep.json keeps of the spec: every option but --fresh, which is no part of a plan."""
        kept = self.values()
        del kept["fresh"]
        return {key: list(value) if isinstance(value, tuple) else value for key, value in kept.items()}


def spec_options() -> dict[str, dict[str, Any]]:
    """Every `run` option, in --help's order: key -> its type (the field's annotation, as text),
    default, help, flags and command-line type; an executor's options follow --executor."""
    options: dict[str, dict[str, Any]] = {}
    for f in fields(RunSpec):
        if f.name == "executor_options":
            options.update(executor_fields())
        else:
            options[f.name] = {"type": str(f.type), "default": f.default, **f.metadata}
    return options


def executor_fields() -> dict[str, dict[str, Any]]:
    """Each executor's options as `run` options, NAME_FIELD -> as spec_options."""
    from minigpt.executors import executor

    executor_names()
    return {
        f"{name}_{f.name}": {"type": str(f.type), "default": f.default, "help": f.metadata.get("help", ""),
                             "flags": (), "cli": None, "shown": ""}
        for name in executor.names()
        for f in fields(executor.get(name))
    }  # fmt: skip


COMMA_LISTS = {f.name for f in fields(RunSpec) if f.metadata.get("listed")}  # a string, or an array joined
REPEATED = {f.name for f in fields(RunSpec) if str(f.type) == "tuple[str, ...]"}  # arrays of strings
SCALAR_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}
KIND_NAMES = {"str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean"}


def _normalized(key: str, value: Any) -> Any:
    if key in REPEATED:
        return tuple(str(item) for item in value or ())
    if isinstance(value, Path):
        return str(value)
    return value


def _kind(key: str) -> str:
    """The scalar type a key takes, from its annotation ("int | None" -> "int")."""
    return spec_options()[key]["type"].split(" | ")[0]


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
    known = list(spec_options())
    values = {}
    for key, value in table.items():
        if key not in known:
            raise SpecError(f"{path}: unknown key {key!r}{suggest(key, known)}")
        values[key] = parse_value(path, key, value)
    return RunSpec.from_values(values)


def build_spec(spec_file: Path | None, given: dict[str, Any]) -> RunSpec:
    """The run's spec: the file's (or the defaults), with the command line's options over it."""
    return (load_spec(spec_file) if spec_file is not None else RunSpec()).overridden(given)


@dataclass(frozen=True)
class RunPlan:
    """A run as typed objects, every option parsed and checked: what `run` does once its options
    are read. Nothing after plan_run parses an option."""

    spec: RunSpec  # as given, for the record and the run's own switches (--fresh, --quiet, ...)
    sweep: SweepPlan  # variants x devices x seeds, the budget, the FairOptions, tracking, lengths
    executor: ExecutorOptions
    store: RunStore  # the run directory, --out, keeping failures with --no-retry

    @property
    def out(self) -> Path:
        return self.store.root


def plan_run(spec: RunSpec) -> RunPlan:
    """The typed plan of a spec, every part checked before anything runs (one line per mistake).
    The executor is prepared as soon as it is known: what it starts overlaps the planning."""
    from minigpt.config import resolve_recipe
    from minigpt.decide import DEFAULT_MAX_SEEDS, FIRST_ROUND, looks
    from minigpt.executors import executor_options
    from minigpt.sizes import parse_sizes
    from minigpt.speed import check_rounds
    from minigpt.stages import FairOptions
    from minigpt.store import RunStore
    from minigpt.sweep import DEFAULT_VARIANTS, parse_devices, parse_seeds, plan_sweep
    from minigpt.trackers import tracking_settings
    from minigpt.train import Budget
    from minigpt.tune import parse_tune, parse_tune_seeds
    from minigpt.variants import BASELINE, discover

    out = checked(spec)
    auto = spec.seeds.strip() == "auto"  # rounds of seeds until each variant is decided
    record, lengths = spec.record(), eval_lengths(spec.eval_lengths)
    if not spec.no_speed or spec.equal_time is not None:
        check_rounds(spec.speed_rounds, "--speed-rounds")
    executor = executor_options(spec.executor, spec.executor_options)
    executor.prepare()
    seeds = [] if auto else parse_seeds(spec.seeds)
    devices = parse_devices(spec.devices)
    registry = discover([Path(plugin) for plugin in spec.plugins])
    sizes = parse_sizes(spec.sizes) if spec.sizes is not None else []
    tracking = tracking_settings(spec.track, out, spec.tensorboard_dir)
    store = RunStore(out, retry_failed=not spec.no_retry)
    recipe = resolve_recipe(spec.preset, devices, spec.set)
    max_seeds = DEFAULT_MAX_SEEDS if spec.max_seeds is None else spec.max_seeds
    if auto:  # the first round; without the baseline among the variants there is nothing to judge after it
        seeds = list(range(looks(max_seeds, FIRST_ROUND)[0]))
    budget = Budget(spec.max_steps, spec.max_tokens if spec.explicit_budget else recipe.max_tokens, spec.max_seconds,
                    spec.stop_at_target)  # fmt: skip
    options = {"preset": recipe.preset, "overrides": list(spec.set), "plugins": list(spec.plugins), "spec": record}
    sweep = plan_sweep(registry, spec.variants or DEFAULT_VARIANTS, devices, seeds, recipe.config, spec.data, budget,
                       spec.target_loss, spec.max_vocab, options)  # fmt: skip
    tune_seeds = parse_tune_seeds(spec.tune_seeds, sweep.seeds)
    if spec.equal_time is not None and BASELINE not in sweep.variants:
        raise SpecError(f"--equal-time times every variant against the baseline: add {BASELINE} to --variants")
    fair = FairOptions(
        tune=parse_tune(list(spec.tune), recipe.config),
        tune_seeds=tune_seeds,
        sizes=sizes,
        max_flops=spec.max_flops,
        equal_time=spec.equal_time,
        speed_rounds=spec.speed_rounds,
        explicit_budget=spec.explicit_budget,
        preset_tokens=recipe.max_tokens,
        seeds_auto=auto,
        max_seeds=max_seeds,
        margin=spec.margin,
    )
    return RunPlan(spec, replace(sweep, fair=fair, tracking=tracking, eval_lengths=lengths), executor, store)


def checked(spec: RunSpec) -> Path:
    """The run directory, once the options that need no other module are checked."""
    from minigpt.tune import TuneError

    out = Path(spec.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a run directory; choose another path")
    if not (math.isfinite(spec.margin) and spec.margin > 0):
        raise SpecError(f"--margin must be a positive number of nats, got {spec.margin:g}")
    if not (math.isfinite(spec.speed_margin) and 0 < spec.speed_margin < 1):
        raise SpecError(f"--speed-margin must be a fraction between 0 and 1 (0.02: 2%), got {spec.speed_margin:g}")
    if spec.max_seeds is not None and spec.seeds.strip() != "auto":
        raise SpecError("--max-seeds needs --seeds auto: with a list of seeds, the list says how many")
    if spec.equal_time is not None and (spec.explicit_budget or spec.max_flops is not None):
        given = "--max-flops" if spec.max_flops is not None else "--max-steps/--max-tokens/--max-seconds"
        raise SpecError(f"--equal-time sets every trial's budget from its speed; drop {given}")
    if spec.tune_seeds is not None and not spec.tune:
        raise TuneError("--tune-seeds needs --tune: the seeds only choose tuned values")
    return out


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
    known = spec_options()
    spec = RunSpec.from_values({k: tuple(v) if k in REPEATED else v for k, v in recorded.items() if k in known})
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
