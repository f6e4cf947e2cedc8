"""Per-variant tuning: the grid of values `--tune` asks for, the growth rule at its edges, and
the choice of the best point from the tuning trials' losses.

Everything here is pure (no torch): minigpt.stages turns grid points into trials and calls
back with their losses.

    --tune lr                   the variant's own lr times 1/4, 1/2, 1, 2, 4 (min_lr follows)
    --tune lr=1e-3,3e-3,1e-2    those values, for every variant
    --tune weight_decay=0,0.1   any numeric configuration key; several --tune: a product grid

Cost rule (successive halving, one round): every grid point trains at a quarter of the budget;
the best PROMOTED of them train at the full budget and the best of those is chosen. When the
quarter-budget best lies at an edge of a key's values, that key grows one step outward (at most
MAX_GROWTH times); a choice still at an edge is flagged.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

from minigpt.config import Config, ConfigError
from minigpt.errors import UserError

RELATIVE_GRID = (0.25, 0.5, 1.0, 2.0, 4.0)  # times the variant's own value
MAX_GROWTH = 2  # growth rounds at most, per variant (and size)
SHORT_BUDGET_FRACTION = 0.25
DEFAULT_TUNE_SEED = 1000

Point = dict[str, float | int]  # one grid point: key -> value


class TuneError(UserError):
    """A --tune or --tune-seeds that cannot be used as given."""


@dataclass(frozen=True)
class TuneAxis:
    key: str
    values: tuple[float, ...] | None = None  # absolute values; None: RELATIVE_GRID times the variant's own

    def describe(self) -> str:
        if self.values is None:
            return f"{self.key} x {','.join(f'{f:g}' for f in RELATIVE_GRID)}"
        return f"{self.key}={','.join(f'{v:g}' for v in self.values)}"


def numeric_keys() -> dict[str, str]:
    """Configuration keys that take a number: key -> 'int' or 'float'."""
    return {f.name: str(f.type) for f in fields(Config) if str(f.type) in ("int", "float")}


def parse_tune(specs: Sequence[str], base: Config) -> list[TuneAxis]:
    """`--tune KEY` or `--tune KEY=V1,V2,...`, each checked against the configuration's rules."""
    axes: list[TuneAxis] = []
    for spec in specs:
        key, sep, raw = (part.strip() for part in spec.partition("="))
        kinds = numeric_keys()
        if key not in kinds:
            raise TuneError(f"--tune {key!r} is not a numeric configuration key; choose from {', '.join(kinds)}")
        if key in (axis.key for axis in axes):
            raise TuneError(f"--tune {key} is given twice; give its values once, e.g. --tune {key}=1,2")
        values = _parse_values(key, kinds[key], raw, base) if sep else None
        axes.append(TuneAxis(key, values))
    return axes


def _parse_values(key: str, kind: str, raw: str, base: Config) -> tuple[float, ...]:
    texts = [text.strip() for text in raw.split(",") if text.strip()]
    if not texts:
        raise TuneError(f"--tune {key}= has no values; give some, e.g. --tune {key}=1e-3,3e-3,1e-2")
    try:
        values = [float(text) for text in texts]
    except ValueError:
        raise TuneError(f"--tune {key} expects numbers, got {raw!r}") from None
    for value in values:
        if not math.isfinite(value) or value < 0:
            raise TuneError(f"--tune {key} values must be finite and not negative, got {value:g}")
        if kind == "int" and value != int(value):
            raise TuneError(f"--tune {key} takes whole numbers, got {value:g}")
        try:
            base.replace(**{key: int(value) if kind == "int" else value})
        except ConfigError as error:
            raise TuneError(f"--tune {key}={value:g}: {error}") from None
    return tuple(sorted(set(values)))


def parse_tune_seeds(spec: str | None, seeds: Sequence[int]) -> list[int]:
    """The tuning seeds: never an evaluation seed, or the choice could flatter the verdict."""
    if spec is None:
        return [next(s for s in itertools.count(DEFAULT_TUNE_SEED) if s not in seeds)]
    try:
        tune_seeds = list(dict.fromkeys(int(s) for s in spec.split(",") if s.strip()))
    except ValueError:
        raise TuneError(f"--tune-seeds expects comma-separated integers, got {spec!r}") from None
    if not tune_seeds:
        raise TuneError("--tune-seeds is empty; give at least one integer seed")
    shared = sorted(set(tune_seeds) & set(seeds))
    if shared:
        raise TuneError(f"tuning seed {shared[0]} is also an evaluation seed (--seeds); tune on other seeds")
    return tune_seeds


def _typed(key: str, value: float) -> float | int:
    return int(round(value)) if numeric_keys()[key] == "int" else value


def axis_values(axis: TuneAxis, config: Config) -> list[float | int]:
    """The axis's starting values for a variant configured as `config`."""
    if axis.values is not None:
        return [_typed(axis.key, v) for v in axis.values]
    own = getattr(config, axis.key)
    values = sorted({_typed(axis.key, own * factor) for factor in RELATIVE_GRID})
    if len(values) < 2:
        raise TuneError(
            f"--tune {axis.key}: the variant's own value is {own}, so a relative grid has one point; give values"
        )
    return values


def apply_point(config: Config, point: Point) -> Config:
    """The configuration at a grid point; min_lr keeps its ratio to lr unless it is tuned itself."""
    changes = dict(point)
    if "lr" in point and "min_lr" not in point:
        changes["min_lr"] = config.min_lr * point["lr"] / config.lr
    return config.replace(**changes)


def initial_grid(axes: Sequence[TuneAxis], config: Config) -> list[Point]:
    """Every combination of the axes' values (a product grid), each a valid configuration."""
    per_axis = [axis_values(axis, config) for axis in axes]
    grid = [dict(zip([a.key for a in axes], combo, strict=True)) for combo in itertools.product(*per_axis)]
    for point in grid:
        try:
            apply_point(config, point)
        except ConfigError as error:
            raise TuneError(f"--tune point {point_label(point)}: {error}") from None
    return grid


def point_label(point: Point) -> str:
    """lr0.00375 / lr0.003-weight_decay0.1: the point's part of a trial ID."""
    return "-".join(f"{key}{value:g}" for key, value in point.items())


def key_values(grid: Sequence[Point], key: str) -> list[float | int]:
    return sorted({point[key] for point in grid})


def edges(point: Point, grid: Sequence[Point]) -> list[tuple[str, int]]:
    """(key, -1 low / +1 high) for each key whose value in `point` is an end of the grid's values."""
    found = []
    for key, value in point.items():
        values = key_values(grid, key)
        if len(values) > 1 and value in (values[0], values[-1]):
            found.append((key, -1 if value == values[0] else 1))
    return found


def grown_value(values: Sequence[float | int], key: str, side: int) -> float | int | None:
    """One step beyond an end: by the ratio of the last two values where all are positive (a
    geometric grid), else by their difference; None where that step leaves the valid range."""
    edge, neighbour = (values[0], values[1]) if side < 0 else (values[-1], values[-2])
    new = edge * edge / neighbour if min(values) > 0 else edge + (edge - neighbour)
    new = _typed(key, new)
    if new < 0 or new == edge:
        return None
    return new


def grow(best: Point, grid: Sequence[Point], config: Config) -> list[Point]:
    """New points: the best with one edge key moved one step outward, where the configuration allows."""
    new_points = []
    for key, side in edges(best, grid):
        value = grown_value(key_values(grid, key), key, side)
        if value is None:
            continue
        point = {**best, key: value}
        try:
            apply_point(config, point)
        except ConfigError:
            continue
        if point not in grid and point not in new_points:
            new_points.append(point)
    return new_points


def score(losses: Sequence[float | None]) -> float:
    """A point's objective: the mean best validation loss over tuning seeds; a point with a
    seed that never produced a loss (diverged, failed) ranks last."""
    if not losses or any(loss is None or not math.isfinite(loss) for loss in losses):
        return math.inf
    return sum(losses) / len(losses)  # type: ignore[arg-type]


def ranked(grid: Sequence[Point], scores: Sequence[float]) -> list[Point]:
    """Best first; equal scores keep grid order, so a choice is reproducible."""
    order = sorted(range(len(grid)), key=lambda i: (scores[i], i))
    return [grid[i] for i in order]


def promoted_count(initial_points: int) -> int:
    """How many points train at the full budget: half the starting grid, at least two (or all)."""
    return min(initial_points, max(2, initial_points // 2))
