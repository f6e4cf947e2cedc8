"""Micro-benchmarks: plan and run the pytest-benchmark suite (`benchmarks/` in a checkout,
`minigpt/_benchmarks/` when installed), keep its JSON, and summarize it as one table per
device with ratios to the baseline.

    from minigpt.bench import run_bench, summarize_bench

    result = run_bench(variants="baseline,swiglu", devices="cpu", json_path="bench.json")
    print(summarize_bench(result.report))

The suite runs in a child pytest process of this interpreter: plugin files register their
building blocks when imported, and importing them twice in one process would clash.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minigpt import atomic, bundled
from minigpt.config import Config, resolve_recipe
from minigpt.errors import UserError
from minigpt.stats import PairedRatio, paired_ratio
from minigpt.store import RunStore
from minigpt.variants import BASELINE, discover, recorded_plugins

SUITE = bundled.BENCHMARKS / "test_variants.py"
DEFAULT_ROUNDS = 5
ROUND_SECONDS = 0.2
COLUMN = 28  # characters per case column: "12.345 1.03x [0.98,1.08]"
RUN_FILE = "bench.json"  # RUN_DIR/bench.json: where `report` finds the micro-benchmarks
CASES = ("forward", "train_step", "decode_cached", "decode_uncached")
# (label, first, second): how much faster the first variant is than the second
COMPARISONS = (
    ("batched vs looped heads", "baseline", "attn-looped"),
    ("sdpa vs manual attention", "baseline", "attn-manual"),
    ("swiglu vs gelu", "swiglu", "baseline"),
)


class BenchError(UserError):
    """A benchmark run that cannot start as asked."""


@dataclass(frozen=True)
class SuitePlan:
    """What the suite benchmarks: each variant's configuration, on each requested device, and
    the preset their base configuration came from."""

    configs: dict[str, Config]
    devices: list[str]
    preset: str


def plan_suite(
    variants: str = "all",
    devices: str = "auto",
    plugins: Iterable[str | Path] = (),
    overrides: Sequence[str] = (),
    preset: str = "auto",
    run_dir: str | Path | None = None,
) -> SuitePlan:
    """Resolve names and sizes exactly as `run` does: the preset (auto: chosen from the
    devices), then `--set`, then each variant. With `run_dir`, the base configuration is the
    one that run recorded instead. Every mistake raises a UserError before anything is timed."""
    from minigpt.sweep import parse_devices, resolve_variants

    registry = discover(plugins)
    device_list = parse_devices(devices)
    if run_dir is None:
        recipe = resolve_recipe(preset, device_list, overrides)
        preset, base = recipe.preset, recipe.config
    else:
        preset, base = recorded_base(run_dir, preset, overrides)
    names = resolve_variants(registry, variants)
    return SuitePlan({name: registry.get(name).configure(base) for name in names}, device_list, preset)


def recorded_base(run_dir: str | Path, preset: str, overrides: Sequence[str]) -> tuple[str, Config]:
    """A run's preset and base configuration, from its sweep.json. `--preset` and `--set` may
    repeat what it recorded; one that contradicts it is refused, as benchmarking another
    configuration into that run would mislabel its figures."""
    sweep = RunStore(run_dir).read_sweep()
    if "base_config" not in sweep:
        raise BenchError(f"{run_dir} holds no sweep.json to take the base configuration from; run `minigpt-bench run --out {run_dir}` first, or leave out --run")  # fmt: skip
    recorded_preset = sweep.get("preset", "unknown")
    if preset not in ("auto", recorded_preset):
        raise BenchError(f"--preset {preset} contradicts {run_dir}, which ran from preset {recorded_preset}; leave out --preset")  # fmt: skip
    base = Config.from_dict(sweep["base_config"])
    for assignment in overrides:
        changed = base.with_overrides([assignment]).diff(base)
        if changed:
            key, (_, recorded) = next(iter(changed.items()))
            raise BenchError(f"--set {assignment} contradicts {run_dir}'s base configuration ({key}={recorded} in its sweep.json); leave it out, or leave out --run")  # fmt: skip
    return recorded_preset, base


def require_pytest_benchmark() -> None:
    if importlib.util.find_spec("pytest_benchmark") is None:
        raise BenchError("bench needs pytest-benchmark: pip install 'minigpt-bench[dev]'")


def suite_command(
    variants: str,
    devices: str,
    plugins: Iterable[str | Path],
    overrides: Sequence[str],
    json_out: Path,
    extra_args: Sequence[str] = (),
    rounds: int = DEFAULT_ROUNDS,
    preset: str = "auto",
    run_dir: str | Path | None = None,
) -> list[str]:
    """The pytest command line; `extra_args` come last so pytest-benchmark's own options
    (--benchmark-autosave, --benchmark-compare, --benchmark-histogram, ...) win. Each round
    times each call for about ROUND_SECONDS, so the rounds together cost what one long
    pytest-benchmark measurement would."""
    # The suite's folder is pytest's rootdir and nothing is cached: left to itself, pytest would
    # root an installed suite at the common ancestor of site-packages and the current folder.
    command = [sys.executable, "-m", "pytest", str(SUITE), f"--rootdir={SUITE.parent}", "-p", "no:cacheprovider"]
    command += ["--variants", variants, "--devices", devices, "--preset", preset]
    command += ["--run", str(run_dir)] if run_dir is not None else []
    command += ["--rounds", str(rounds), f"--benchmark-max-time={ROUND_SECONDS}"]
    for plugin in plugins:
        command += ["--plugins", str(plugin)]
    for assignment in overrides:
        command += ["--set", assignment]
    return [*command, "--benchmark-json", str(json_out), *extra_args]


@dataclass(frozen=True)
class BenchResult:
    exit_code: int  # pytest's
    report: dict[str, Any] | None  # pytest-benchmark's JSON; None when it wrote none (e.g. --benchmark-disable)
    saved: list[Path] = field(default_factory=list)


COMMAND_EXIT_CODES = {0: 0, 1: 1, 2: 130, 3: 1, 4: 2, 5: 1}  # pytest's exit code -> bench's


def command_exit_code(pytest_code: int) -> int:
    """`bench`'s exit code, as every command's: 0 all measured, 1 a measurement failed (or none
    was collected), 2 a mistake in the pytest options after `--`, 130 interrupted."""
    return COMMAND_EXIT_CODES.get(pytest_code, 1)


def run_bench(
    variants: str = "all",
    devices: str = "auto",
    plugins: Iterable[str | Path] = (),
    overrides: Sequence[str] = (),
    json_path: str | Path | None = None,
    run_dir: str | Path | None = None,
    extra_args: Sequence[str] = (),
    rounds: int = DEFAULT_ROUNDS,
    preset: str = "auto",
) -> BenchResult:
    """Run the suite and store its JSON (atomically) at `json_path` and/or `run_dir`/bench.json.
    With `run_dir`, the suite benchmarks at that run's base configuration and, unless `plugins`
    are given, with its plugins."""
    require_pytest_benchmark()
    if not SUITE.is_file():
        raise BenchError(f"the benchmark suite {SUITE} is missing: reinstall minigpt-bench")
    if run_dir is not None and not Path(run_dir).is_dir():
        raise BenchError(f"run directory {run_dir} does not exist; create it with `minigpt-bench run` or use --json")
    if rounds < 1:
        raise BenchError(f"--rounds must be at least 1, got {rounds}")
    plugins = list(plugins) or (recorded_plugins(run_dir) if run_dir is not None else [])
    plan_suite(variants, devices, plugins, overrides, preset, run_dir)  # user mistakes end here, in one line
    targets = [Path(json_path)] if json_path is not None else []
    targets += [Path(run_dir) / RUN_FILE] if run_dir is not None else []
    with tempfile.TemporaryDirectory(prefix="minigpt-bench-") as scratch:
        json_out = Path(scratch) / RUN_FILE
        command = suite_command(variants, devices, plugins, overrides, json_out, extra_args, rounds, preset, run_dir)
        exit_code = subprocess.run(command, check=False).returncode
        if not json_out.is_file():
            return BenchResult(exit_code, None)
        text = json_out.read_text(encoding="utf-8")
    for target in targets:
        atomic.write_text(target, text)
    return BenchResult(exit_code, json.loads(text), targets)


def suite_entries(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The timed benchmarks of this suite, known by their extra_info."""
    return [
        entry
        for entry in report.get("benchmarks", [])
        if {"device", "variant", "case"} <= entry.get("extra_info", {}).keys() and entry.get("stats")
    ]


Key = tuple[str, str, str]  # (device, variant, case)


def read_rounds(report: dict[str, Any]) -> dict[Key, dict[int, float]]:
    """{(device, variant, case): {round: median seconds per call}} for the suite's benchmarks."""
    timings: dict[Key, dict[int, float]] = {}
    for entry in suite_entries(report):
        info = entry["extra_info"]
        timings.setdefault((info["device"], info["variant"], info["case"]), {})[info.get("round", 0)] = entry["stats"][
            "median"
        ]
    return timings


def speed_of(timings: dict[Key, dict[int, float]], key: Key, reference: Key) -> PairedRatio | None:
    """How much faster `key` runs than `reference` (their time ratio, > 1: faster), paired
    within the rounds both were timed in."""
    if key not in timings or reference not in timings:
        return None
    rounds = sorted(timings[key].keys() & timings[reference].keys())
    if not rounds:
        return None
    return paired_ratio([timings[reference][r] / timings[key][r] for r in rounds])


def bench_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per device, variant and case: median ms per call over the rounds, and the speed
    ratio to the baseline paired within rounds, with its 95% interval and verdict."""
    timings = read_rounds(report)
    rows = []
    for (device, variant, case), by_round in timings.items():
        paired = speed_of(timings, (device, variant, case), (device, BASELINE, case))
        rows.append(
            {
                "device": device,
                "variant": variant,
                "case": case,
                "rounds": len(by_round),
                "median_ms": 1000 * statistics.median(by_round.values()),
                "speed_ratio": paired.ratio if paired else None,
                "speed_ratio_low": paired.low if paired else None,
                "speed_ratio_high": paired.high if paired else None,
                "speed_verdict": (("baseline" if variant == BASELINE else paired.verdict) if paired else None),
            }
        )
    return rows


def summarize_bench(source: str | Path | dict[str, Any]) -> str:
    """Per device, each variant's median milliseconds per call and its speed relative to the
    baseline (> 1: faster), paired within interleaved rounds, then the comparisons the suite
    exists for."""
    report = source if isinstance(source, dict) else json.loads(Path(source).read_text(encoding="utf-8"))
    timings = read_rounds(report)
    if not timings:
        return "no timings in this benchmark JSON (were the benchmarks disabled or all skipped?)"
    devices = list(dict.fromkeys(device for device, _, _ in timings))
    threads = {entry["extra_info"]["device"]: entry["extra_info"].get("threads") for entry in suite_entries(report)}
    tables = [_device_table(timings, device, threads.get(device)) for device in devices]
    sections = [*tables, _comparisons(timings, devices)]
    return "\n\n".join(section for section in sections if section)


def _ratio_text(paired: PairedRatio | None) -> str:
    if paired is None:
        return ""
    return f"{paired.ratio:.2f}x [{paired.low:.2f},{paired.high:.2f}]"


def _device_table(timings: dict[Key, dict[int, float]], device: str, threads: int | None) -> str:
    variants = list(dict.fromkeys(v for d, v, _ in timings if d == device))
    variants.sort(key=lambda name: name != BASELINE)  # stable: baseline first, the rest as run
    cases = [case for case in CASES if any((device, v, case) in timings for v in variants)]
    width = max(len(v) for v in variants) + 2
    rounds = max(len(by_round) for (d, _, _), by_round in timings.items() if d == device)
    lines = [
        f"{device}{f' ({threads} threads)' if threads else ''}, {rounds} interleaved round(s): median ms per call, "
        f"and speed relative to {BASELINE} (> 1 is faster) with its 95% interval",
        "variant".ljust(width) + "".join(case.rjust(COLUMN) for case in cases),
    ]
    for name in variants:
        cells = []
        for case in cases:
            by_round = timings.get((device, name, case))
            if by_round is None:
                cells.append("-".rjust(COLUMN))
                continue
            ratio = _ratio_text(speed_of(timings, (device, name, case), (device, BASELINE, case)))
            cells.append(f"{1000 * statistics.median(by_round.values()):.3f} {ratio}".rjust(COLUMN))
        lines.append(name.ljust(width) + "".join(cells))
    return "\n".join(lines)


def _comparisons(timings: dict[Key, dict[int, float]], devices: list[str]) -> str:
    lines = [
        "speed-ups (how much faster the first runs than the second, paired within rounds; > 1: the first is faster)"
    ]
    for label, first, second in COMPARISONS:
        for device in devices:
            pairs = [
                f"{case} {_ratio_text(speed_of(timings, (device, first, case), (device, second, case)))}"
                for case in CASES
                if (device, first, case) in timings and (device, second, case) in timings
            ]
            if pairs:
                lines.append(f"  {label} ({first} vs {second}, {device}): " + ", ".join(pairs))
    return "\n".join(lines) if len(lines) > 1 else ""
