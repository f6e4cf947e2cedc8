"""What the command modules share: the console, common options, variant discovery and presets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()
PresetOption = Annotated[
    str,
    typer.Option(
        help="Starting recipe: cpu-fast (tuned for CPUs), gpu-fast, reference, or auto "
        "(gpu-fast when every device is a GPU, else cpu-fast)."
    ),
]
PluginsOption = Annotated[
    list[Path] | None,
    typer.Option("--plugins", help="Extra plugin file or folder of variants (repeatable)."),
]


def discover_variants(plugins: list[Path] | None):  # noqa: ANN201
    from minigpt.variants import discover

    return discover(plugins or [])


def preset_config(name: str, devices: list[str] | None = None):  # noqa: ANN201
    """The preset whose base configuration every variant then changes; `auto` picks one for
    `devices` (the CPU recipe when none are named)."""
    from minigpt.config import resolve_preset

    return resolve_preset(name, devices or [])[1]
