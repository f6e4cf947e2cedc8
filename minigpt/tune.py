"""Per-variant tuning: the values `--tune` starts from, the search that extends them at the
full budget, and the choice from a smooth fit of loss against the value.

Everything here is pure (no torch): minigpt.stages turns the points a Search asks for into
trials at the full budget and feeds their losses back.

    --tune lr                   the variant's own lr times 1/2, 1, 2, stepping by 2 (min_lr follows)
    --tune lr=1e-3,3e-3,1e-2    those values and the variant's own, for every variant
    --tune weight_decay=0,0.1   any numeric configuration key; several --tune: a product grid

The search (one per variant, size and device) trains every point at the full budget, so no
choice inherits a shorter run's bias (short runs prefer larger learning rates). It starts with
the variant's own value and its neighbours; while the best point lacks a neighbour along some key
it asks for that neighbour (one step outward), until the best is interior, the next value
diverged or failed, or the cap (x1/64..x64 of the starting values) is reached. The choice is the
best point of a quadratic fitted in log value through the best point and its neighbours (two
either side where both trained), never a point that scored worse than the variant's own value
on the tuning seeds.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from minigpt.config import Config, ConfigError
from minigpt.errors import UserError

RELATIVE_GRID = (0.5, 1.0, 2.0)  # times the variant's own value; the search steps by the same factor
RELATIVE_STEP = 2.0
CAP = 64.0  # the search never goes beyond x1/64..x64 of the starting values
ARITHMETIC_CAP_STEPS = 6  # on a grid with zero (stepping by a difference): steps beyond its ends
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
    """The axis's starting values for a variant configured as `config`: the given values and the
    variant's own (so tuning can never choose worse than it), or its own times RELATIVE_GRID."""
    if axis.values is not None:
        return sorted({_typed(axis.key, v) for v in axis.values} | {getattr(config, axis.key)})
    own = getattr(config, axis.key)
    values = sorted({_typed(axis.key, own * factor) for factor in RELATIVE_GRID})
    if len(values) < 2:
        raise TuneError(
            f"--tune {axis.key}: the variant's own value is {own}, so a relative grid has one point; give values"
        )
    return values


def apply_point(config: Config, point: Point) -> Config:
    """The configuration at a grid point; min_lr keeps its ratio to lr unless it is tuned itself.
    The ratio of the two lrs multiplies min_lr, so variants whose lrs differ by a power of two
    reach bit-identical configurations at the same absolute lr."""
    changes = dict(point)
    if "lr" in point and "min_lr" not in point:
        changes["min_lr"] = config.min_lr * (point["lr"] / config.lr)
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


def score(losses: Sequence[float | None]) -> float:
    """A point's objective: the mean best validation loss over tuning seeds; a point with a
    seed that never produced a loss (diverged, failed) ranks last."""
    if not losses or any(loss is None or not math.isfinite(loss) for loss in losses):
        return math.inf
    return sum(losses) / len(losses)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Fit:
    """A quadratic in x (log value where every value is positive, else the value) through points
    along one key; a and the vertex only mean an interior optimum where a > 0."""

    key: str
    values: tuple[float, ...]
    losses: tuple[float, ...]
    coefficients: tuple[float, float, float]  # a, b, c of a x^2 + b x + c
    log: bool

    def x(self, value: float) -> float:
        return math.log(value) if self.log else value

    def loss(self, value: float) -> float:
        a, b, c = self.coefficients
        x = self.x(value)
        return a * x * x + b * x + c

    @property
    def optimum(self) -> float | None:
        """The fitted curve's lowest point (a value between trained ones), None where it is not convex."""
        a, b, _ = self.coefficients
        if a <= 0:
            return None
        x = -b / (2 * a)
        return math.exp(x) if self.log else x

    def describe(self) -> dict[str, Any]:
        return {"key": self.key, "values": list(self.values), "losses": list(self.losses),
                "coefficients": list(self.coefficients), "log": self.log, "optimum": self.optimum}  # fmt: skip


def fit_quadratic(key: str, values: Sequence[float], losses: Sequence[float]) -> Fit:
    """Least squares (exact through three points); values need not be evenly spaced."""
    log = min(values) > 0
    xs = [math.log(v) if log else float(v) for v in values]
    # The normal equations of a 3-parameter least-squares fit, solved by Cramer's rule (no numpy).
    sums = [sum(x**k for x in xs) for k in range(5)]
    rhs = [sum(y * x ** (2 - k) for x, y in zip(xs, losses, strict=True)) for k in range(3)]
    matrix = [[sums[4], sums[3], sums[2]], [sums[3], sums[2], sums[1]], [sums[2], sums[1], sums[0]]]
    det = _det3(matrix)
    if abs(det) < 1e-300:
        return Fit(key, tuple(values), tuple(losses), (0.0, 0.0, min(losses)), log)
    coefficients = []
    for column in range(3):
        replaced = [[rhs[r] if c == column else matrix[r][c] for c in range(3)] for r in range(3)]
        coefficients.append(_det3(replaced) / det)
    return Fit(key, tuple(values), tuple(losses), (coefficients[0], coefficients[1], coefficients[2]), log)


def _det3(m: list[list[float]]) -> float:
    return (
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    )


@dataclass
class Choice:
    """What a search chose: the point, the keys at an edge and why, the fits along each key."""

    point: Point | None  # None: no point produced a loss on every tuning seed
    at_edge: dict[str, str]  # key -> why the search stopped with the choice at an edge
    fits: dict[str, Fit]
    guarded: bool = False  # the fit's choice scored worse than the variant's own value: own chosen


class Search:
    """The full-budget search of one variant (at one size, on one device).

    Ask `wanted()` for the points to train next (every tuning seed at the full budget), give
    each trial's loss to `record()` (None where it diverged or failed), and ask again; an empty
    answer means the search is done and `choose()` gives the choice. Deterministic in the
    losses, so a resumed sweep asks for the same trials again."""

    def __init__(self, axes: Sequence[TuneAxis], config: Config, seeds: Sequence[int]) -> None:
        self.axes, self.config, self.seeds = list(axes), config, list(seeds)
        self.own: Point = {axis.key: getattr(config, axis.key) for axis in self.axes}
        self.points: list[Point] = initial_grid(self.axes, config)
        self.losses: dict[tuple[str, int], float | None] = {}
        starts = {axis.key: axis_values(axis, config) for axis in self.axes}
        self.bounds = {key: _bounds(values, self._relative(key)) for key, values in starts.items()}

    def _relative(self, key: str) -> bool:
        return next(axis.values is None for axis in self.axes if axis.key == key)

    def record(self, point: Point, seed: int, loss: float | None) -> None:
        self.losses[(point_label(point), seed)] = loss if loss is not None and math.isfinite(loss) else None

    def trained(self, point: Point) -> bool:
        return all((point_label(point), seed) in self.losses for seed in self.seeds)

    def score(self, point: Point, seeds: Sequence[int] | None = None) -> float:
        return score([self.losses.get((point_label(point), s)) for s in seeds or self.seeds])

    def best(self, seeds: Sequence[int] | None = None) -> Point | None:
        """The trained point with the lowest mean loss (ties: the earliest asked), None if none finished."""
        scored = [(self.score(p, seeds), i) for i, p in enumerate(self.points) if self.trained(p)]
        finite = [(s, i) for s, i in scored if math.isfinite(s)]
        return self.points[min(finite)[1]] if finite else None

    def wanted(self) -> list[Point]:
        """The points to train now: the untrained ones already asked for, else the best point's
        missing neighbours (a step outward where it is at an end); none when done."""
        untrained = [p for p in self.points if not self.trained(p)]
        if untrained:
            return untrained
        best = self.best()
        if best is None:
            return []
        new = []
        for key in best:
            for side in (-1, 1):
                neighbour, _ = self._neighbour(best, key, side)
                if neighbour is not None and neighbour not in self.points and neighbour not in new:
                    new.append(neighbour)
        self.points += new
        return new

    def _line(self, point: Point, key: str) -> list[float | int]:
        """The values of `key` asked for with every other key as in `point`, sorted."""
        others = {k: v for k, v in point.items() if k != key}
        return sorted({p[key] for p in self.points if all(p[k] == v for k, v in others.items())})

    def _neighbour(self, point: Point, key: str, side: int) -> tuple[Point | None, str]:
        """The next point along `key` on `side` (asked for already, or one step beyond the values
        asked so far), or None with the reason it cannot be: the cap or the configuration's range."""
        value = point[key]
        known = sorted({p[key] for p in self.points})
        index = known.index(value)
        inside = known[index + side] if 0 <= index + side < len(known) else None
        new = inside if inside is not None else self._step(key, known, side)
        if new is None:
            return None, "the configuration allows no value beyond"
        low, high = self.bounds[key]
        if not low <= new <= high:
            return None, f"the cap ({_cap_text(key, self.bounds[key])}) was reached"
        candidate = {**point, key: new}
        try:
            apply_point(self.config, candidate)
        except ConfigError as error:
            return None, f"the configuration refuses {key}={new:g} ({error})"
        return candidate, ""

    def _step(self, key: str, known: Sequence[float | int], side: int) -> float | int | None:
        """One step beyond an end: x2 (or /2) on a relative axis; on given values by the ratio of
        the last two where all are positive, else by their difference; None if that leaves the range."""
        edge = known[0] if side < 0 else known[-1]
        if self._relative(key):
            new = edge * RELATIVE_STEP**side
        elif len(known) < 2:
            return None
        else:
            neighbour = known[1] if side < 0 else known[-2]
            new = edge * edge / neighbour if min(known) > 0 else edge + (edge - neighbour)
        new = _typed(key, new)
        if new < 0 or new == edge:
            return None
        return new

    def choose(self, seeds: Sequence[int] | None = None) -> Choice:
        """The choice on `seeds` (all tuning seeds by default): along each key through the best
        point, a quadratic through it and its finished neighbours (two either side where both
        finished, else one), and the best of the point and its nearest neighbours on that curve;
        the variant's own point where the fitted choice scored worse than it."""
        best = self.best(seeds)
        if best is None:
            return Choice(None, {}, {})
        chosen, fits = dict(best), {}
        for key in best:
            line = [v for v in self._line(best, key) if math.isfinite(self.score({**best, key: v}, seeds))]
            index = line.index(best[key])
            reach = 2 if index >= 2 and index + 2 < len(line) else 1
            window = line[max(0, index - reach) : index + reach + 1]
            if len(window) < 3:
                continue
            fit = fit_quadratic(key, window, [self.score({**best, key: v}, seeds) for v in window])
            fits[key] = fit
            near = line[max(0, index - 1) : index + 2]
            if fit.optimum is not None:
                chosen[key] = min(near, key=lambda v: (fit.loss(v), abs(fit.x(v) - fit.x(best[key]))))
        guarded = False
        if not math.isfinite(self.score(chosen, seeds)):
            chosen = dict(best)  # per-key fits combined into a point never trained: keep the best
        own = self.score(self.own, seeds) if self.own in self.points else math.inf
        if self.score(chosen, seeds) > own:
            chosen, guarded = dict(self.own), True
        return Choice(chosen, self._edges(chosen, seeds), fits, guarded)

    def _edges(self, point: Point, seeds: Sequence[int] | None) -> dict[str, str]:
        """Each key along which `point` lacks a finished neighbour on some side, and why."""
        reasons = {}
        for key in point:
            line = self._line(point, key)
            index = line.index(point[key])
            for side, word in ((-1, "lower"), (1, "higher")):
                beyond = line[index + side] if 0 <= index + side < len(line) else None
                if beyond is not None and math.isfinite(self.score({**point, key: beyond}, seeds)):
                    continue
                if beyond is not None:
                    reasons[key] = f"{word} edge: the next value ({key}={beyond:g}) diverged or failed"
                else:
                    _, why = self._neighbour(point, key, side)
                    reasons[key] = f"{word} edge: {why or 'not searched beyond'}"
                break
        return reasons

    def curve(self) -> list[dict[str, Any]]:
        """Every point asked for, with its mean loss over the tuning seeds (None: not finished)."""
        return [
            {**p, "loss": self.score(p) if math.isfinite(self.score(p)) else None}
            for p in sorted(self.points, key=lambda p: tuple(p.values()))
        ]


def _bounds(values: Sequence[float | int], relative: bool) -> tuple[float, float]:
    """How far a key's search may go: x1/64..x64 of its starting values where all are positive,
    else ARITHMETIC_CAP_STEPS steps of their spacing beyond their ends."""
    low, high = min(values), max(values)
    if low > 0:
        return low / CAP * (RELATIVE_STEP if relative else 1), high * CAP / (RELATIVE_STEP if relative else 1)
    spacing = (high - low) / max(1, len(values) - 1)
    return max(0.0, low - ARITHMETIC_CAP_STEPS * spacing), high + ARITHMETIC_CAP_STEPS * spacing


def _cap_text(key: str, bounds: tuple[float, float]) -> str:
    return f"{key} {bounds[0]:g}..{bounds[1]:g}"


def describe_search(search: Search) -> dict[str, Any]:
    """What sweep.json's "tuning" adds per group: why a choice sits at an edge, every point's loss,
    the fits, the variant's own point, and each tuning seed's own choice where there are several."""
    choice = search.choose()
    described: dict[str, Any] = {
        "edge_reasons": choice.at_edge,
        "own": search.own,
        "curve": search.curve(),
        "fits": {key: fit.describe() for key, fit in choice.fits.items()},
        "kept_own": choice.guarded,
    }
    if len(search.seeds) > 1:
        described["per_seed"] = {str(seed): search.choose([seed]).point for seed in search.seeds}
    return described
