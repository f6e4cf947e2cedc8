"""The interleaved speed phase of a run (speed.json): each variant's speed as a ratio to the baseline's."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from minigpt.decide import SPEED_LABELS, Design, decide

SPEED_COLUMNS = (
    "variant", "device", "interleaved_step_ms", "interleaved_tokens_per_sec",
    "speed_ratio", "speed_ratio_low", "speed_ratio_high", "speed_p_adjusted", "speed_verdict",
)  # fmt: skip
SPEED_VALUES = SPEED_COLUMNS[2:]  # what a summary row gains from speed.json
SPEED_NUMBERS = SPEED_VALUES[:-1]
# the four verdicts, and "no clear difference" that speed.json files from before them hold
SPEED_VERDICTS = ("faster", "slower", "equivalent", "undecided", "no clear difference", "baseline")


class SpeedFileError(ValueError):
    """speed.json does not have the shape the speed phase writes."""


@dataclass(frozen=True)
class Drift:
    """The matmul speed of a machine probed before and after a measurement, as FLOP/s."""

    before: float
    after: float
    change: float  # (after - before) / before
    flagged: bool


@dataclass
class SpeedPhase:
    """What speed.json holds: ratios per variant and device, plus each device's drift or why it was skipped."""

    frame: pd.DataFrame  # one row per variant and measured device, SPEED_COLUMNS
    rounds: int | None
    skipped: dict[str, str] = field(default_factory=dict)  # device -> reason
    drift: dict[str, Drift] = field(default_factory=dict)  # device -> its drift during the phase
    unmeasured: dict[tuple[str, str], str] = field(default_factory=dict)  # (device, variant) -> error

    def measured(self, device: str) -> pd.DataFrame:
        return self.frame[self.frame["device"] == device]


def measure_hint(run_dir: str | Path) -> str:
    return f"`minigpt-bench speed {run_dir}` measures it"


def load_speed(run_dir: str | Path, design: Design | None = None) -> tuple[SpeedPhase | None, str | None]:
    """RUN_DIR/speed.json as (phase, note); the note says why there is no phase. Never fatal: an old
    run, or one run with --no-speed, simply has no speed comparison."""
    path = Path(run_dir) / "speed.json"
    if not path.is_file():
        return None, (
            "This run has no interleaved speed measurement (no speed.json), so no speeds are compared; "
            f"{measure_hint(run_dir)}."
        )
    try:
        return parse_speed(json.loads(path.read_text(encoding="utf-8")), design), None
    except (OSError, ValueError) as error:
        return (
            None,
            f"{path.name} could not be read ({error}), so no speeds are compared; {measure_hint(run_dir)} again.",
        )


def parse_speed(raw: Any, design: Design | None = None) -> SpeedPhase:
    """The phase in speed.json; where it keeps each round's ratios, every verdict is judged again
    under `design` (its speed margin, the error rate split over the device's variants)."""
    top = _mapping(raw, "the file")
    entries = _mapping(top.get("devices"), "devices")
    rows, skipped, drift, unmeasured = [], {}, {}, {}
    for device, entry in entries.items():
        entry = _mapping(entry, f"devices.{device}")
        if "skipped" in entry:
            skipped[device] = str(entry["skipped"])
            continue
        if isinstance(entry.get("drift"), dict):
            drift[device] = _drift(entry["drift"])
        for variant, values in _mapping(entry.get("variants"), f"devices.{device}.variants").items():
            values = _mapping(values, f"devices.{device}.variants.{variant}")
            if "error" in values:  # a variant that could not be built or stepped: the others still compare
                unmeasured[device, variant] = str(values["error"])
                continue
            rows.append(_speed_row(variant, device, values))
        _decide_device([row for row in rows if row["device"] == device], design or Design())
    frame = speed_frame(rows)
    rounds = top.get("rounds")
    rounds = rounds if isinstance(rounds, int) else None
    return SpeedPhase(frame, rounds, skipped, drift, unmeasured)


def _decide_device(rows: list[dict[str, Any]], design: Design) -> None:
    """The four verdicts on one device's log ratios (each row's `_ratios`, dropped here), judged as
    the loss verdicts are at one look; a file without the ratios keeps the verdicts it holds."""
    compared = [row for row in rows if row["speed_verdict"] != "baseline" and len(row["_ratios"]) >= 2]
    below, above = design.speed_band()
    for row in compared:
        logs = [math.log(r) for r in row["_ratios"]]
        decision = decide(logs, design.alpha / len(compared), below, above, alpha=design.alpha)
        row.update(
            speed_ratio=math.exp(decision.mean), speed_ratio_low=math.exp(decision.low),
            speed_ratio_high=math.exp(decision.high), speed_p_adjusted=decision.p_adjusted,
            speed_verdict=decision.label(SPEED_LABELS),
        )  # fmt: skip
    for row in rows:
        row.pop("_ratios", None)


def speed_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(SPEED_COLUMNS))
    frame[list(SPEED_NUMBERS)] = frame[list(SPEED_NUMBERS)].apply(pd.to_numeric, errors="coerce").astype(float)
    return frame


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpeedFileError(f"{where} is not a JSON object")
    return value


def _speed_row(variant: str, device: str, values: dict[str, Any]) -> dict[str, Any]:
    verdict = values.get("speed_verdict")
    if verdict not in SPEED_VERDICTS:
        raise SpeedFileError(
            f"{variant} on {device}: speed_verdict {verdict!r} is not one of {', '.join(SPEED_VERDICTS)}"
        )
    return {
        "variant": variant,
        "device": device,
        "interleaved_step_ms": values.get("step_ms_median"),
        "interleaved_tokens_per_sec": values.get("tokens_per_sec"),
        **{key: values.get(key) for key in ("speed_ratio", "speed_ratio_low", "speed_ratio_high")},
        "speed_p_adjusted": None,
        "speed_verdict": verdict,
        "_ratios": _ratios(values.get("ratios")),
    }


def _ratios(values: Any) -> list[float]:
    """Each counted round's ratio, where speed.json keeps them (positive finite numbers only)."""
    if not isinstance(values, list):
        return []
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v) and v > 0]


def _drift(values: dict[str, Any]) -> Drift:
    numbers = [_float(values.get(key)) for key in ("before", "after", "change")]
    return Drift(*numbers, flagged=bool(values.get("flagged")))


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
