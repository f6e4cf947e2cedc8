"""The tuning parts of a report for a sweep run with --tune: each variant's loss against the tuned
value at the full budget (one line per variant, the choice marked), how much the loss rises at
half and at twice the chosen value, how far two tuning seeds' choices lay apart, and why a choice
sits at an edge.

Reads sweep.json's "tuning" (minigpt.tune.describe_search writes each group's curve); runs made
before the full-budget search have no curve, and these parts then say nothing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from minigpt import metrics
from minigpt.report.figures import new_figure, save_figure

Block = tuple[str, Any]

CURVE_CAPTION = (
    "Mean best validation loss over the tuning seeds against the tuned value, every point trained at the "
    "full budget; one line per variant, its chosen value ringed and its own value a triangle (log scale; bits "
    "per character on the right). Variants that share a configuration share the points."
)
SENSITIVITY_CAPTION = (
    "How much the tuning loss rises at half and at twice the chosen value (nats per character; where the "
    "search trained those values): a low bar means the variant is forgiving of that value."
)


def curves(tuning: dict[str, Any]) -> dict[str, tuple[str, list[tuple[float, float]], float]]:
    """group key -> (tuned key, [(value, mean loss)] along it through the choice, chosen value), each
    along the first tuned key with the others held as chosen."""
    found = {}
    for group, info in tuning.items():
        chosen, curve = info.get("chosen") or {}, info.get("curve")
        if not chosen or not curve:
            continue
        key = next(iter(chosen))
        others = {k: v for k, v in chosen.items() if k != key}
        line = sorted(
            (point[key], point["loss"])
            for point in curve
            if point.get("loss") is not None and all(point.get(k) == v for k, v in others.items())
        )
        found[group] = (key, line, chosen[key])
    return found


def sensitivity(line: list[tuple[float, float]], chosen: float) -> tuple[float | None, float | None]:
    """The loss at half and at twice the chosen value minus the loss at it; None where not trained."""
    losses = dict(line)
    at = _near(losses, chosen)
    if at is None:
        return None, None
    half, twice = _near(losses, chosen / 2), _near(losses, chosen * 2)
    return (None if half is None else half - at), (None if twice is None else twice - at)


def _near(losses: dict[float, float], value: float) -> float | None:
    return next((loss for v, loss in losses.items() if math.isclose(v, value, rel_tol=1e-6)), None)


def seed_spread(tuning: dict[str, Any]) -> list[str]:
    """One sentence per group tuned on several seeds: each seed's own choice and their ratio."""
    sentences = []
    for group, info in tuning.items():
        per_seed = {seed: point for seed, point in (info.get("per_seed") or {}).items() if point}
        if len(per_seed) < 2:
            continue
        key = next(iter(next(iter(per_seed.values()))))
        values = [point[key] for point in per_seed.values()]
        choices = ", ".join(f"seed {seed}: {point[key]:.4g}" for seed, point in per_seed.items())
        if max(values) == min(values):
            spread = "the same value"
        elif min(values) > 0:
            spread = f"x{max(values) / min(values):.3g} apart"
        else:
            spread = f"{max(values) - min(values):.4g} apart"
        sentences.append(f"{group}: tuned on each seed alone, {key} would be {choices} ({spread}).")
    return sentences


def tuning_figure_blocks(tuning: dict[str, Any], palette: dict[str, Any], out_dir: Path) -> list[Block]:
    """The curve and sensitivity figures (where the sweep recorded curves) and the seeds' spread."""
    found = curves(tuning)
    blocks: list[Block] = []
    if plot_tuning_curves(found, palette, out_dir / "tuning_curves.png", tuning) is not None:
        blocks.append(("figure", ("tuning_curves.png", CURVE_CAPTION)))
    if plot_sensitivity(found, palette, out_dir / "tuning_sensitivity.png") is not None:
        blocks.append(("figure", ("tuning_sensitivity.png", SENSITIVITY_CAPTION)))
    spread = seed_spread(tuning)
    if spread:
        blocks.append(("p", "Choices per tuning seed, " + " ".join(spread)))
    return blocks


def _variant(group: str) -> str:
    """baseline/cpu -> baseline; xs/baseline/cpu -> baseline."""
    parts = group.split("/")
    return parts[-2] if len(parts) >= 2 else parts[0]


def _label(group: str) -> str:
    """The group without its device where every group has one: baseline, xs baseline."""
    return " ".join(group.split("/")[:-1]) or group


def plot_tuning_curves(
    found: dict[str, Any], palette: dict[str, Any], path: Path, tuning: dict[str, Any] | None = None
) -> Path | None:
    tuning = tuning or {}
    shown = {group: entry for group, entry in found.items() if len(entry[1]) >= 2}
    if not shown:
        return None
    figure, (ax,) = new_figure(1, 7.5, 4.2)
    keys = sorted({key for key, _, _ in shown.values()})
    for group, (_key, line, chosen) in shown.items():
        values, losses = zip(*line, strict=True)
        colour = palette.get(_variant(group))
        ax.plot(values, losses, marker="o", markersize=3, linewidth=1.2, color=colour, label=_label(group))
        at = dict(line).get(chosen)
        if at is not None:
            ax.scatter([chosen], [at], s=90, facecolors="none", edgecolors=colour or "black", linewidths=1.6)
        own = (tuning.get(group) or {}).get("own", {}).get(_key)
        if own is not None and dict(line).get(own) is not None:
            ax.scatter([own], [dict(line)[own]], marker="v", s=28, color=colour, zorder=3)
    if all(value > 0 for _, line, _ in shown.values() for value, _ in line):
        ax.set_xscale("log")
    ax.set_xlabel(f"tuned {', '.join(keys)} (full budget)")
    ax.set_ylabel("tuning loss (nats/char)")
    ax.secondary_yaxis("right", functions=(metrics.bits, metrics.nats)).set_ylabel("bits per character")
    ax.legend(fontsize="x-small", ncol=2)
    return save_figure(figure, path)


def plot_sensitivity(found: dict[str, Any], palette: dict[str, Any], path: Path) -> Path | None:
    rows = []
    for group, (_key, line, chosen) in found.items():
        half, twice = sensitivity(line, chosen)
        if half is not None or twice is not None:
            rows.append((group, half, twice))
    if not rows:
        return None
    figure, (ax,) = new_figure(1, max(5.0, 0.9 * len(rows) + 2.5), 3.8)
    width = 0.38
    for index, (group, half, twice) in enumerate(rows):
        colour = palette.get(_variant(group))
        for offset, rise, hatch in ((-width / 2, half, ""), (width / 2, twice, "//")):
            if rise is not None:
                ax.bar(index + offset, rise, width, color=colour, hatch=hatch, edgecolor="black", linewidth=0.6)
    ax.set_xticks(range(len(rows)), [_label(group) for group, _, _ in rows], rotation=20, ha="right")
    ax.set_ylabel("loss rise vs chosen (nats/char)")
    ax.axhline(0, color="black", linewidth=0.8)
    from matplotlib.patches import Patch

    ax.legend(
        handles=[Patch(facecolor="white", edgecolor="black", label="half the chosen value"),
                 Patch(facecolor="white", edgecolor="black", hatch="//", label="twice the chosen value")],
        fontsize="x-small",
    )  # fmt: skip
    return save_figure(figure, path)


def sensitivity_text(info: dict[str, Any]) -> str:
    """`+0.012 / +0.034`: the rises at half and at twice the chosen value, for the tuning table."""
    found = curves({"group": info}).get("group")
    if found is None:
        return "–"
    half, twice = sensitivity(found[1], found[2])
    return " / ".join("–" if rise is None else f"{rise:+.3f}" for rise in (half, twice))


def edge_text(info: dict[str, Any]) -> str:
    """`no`, or each key at an edge with the reason the search gave (runs before it gave none: the key)."""
    if not info.get("at_edge"):
        return "no"
    reasons = info.get("edge_reasons") or {}
    return "; ".join(f"{key}: {reasons[key]}" if key in reasons else key for key in info["at_edge"])
