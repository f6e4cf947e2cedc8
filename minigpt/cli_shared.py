"""What the command modules share: the console, common options, variant discovery and presets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from minigpt.errors import UserError

console = Console()
PresetOption = Annotated[str, typer.Option(help="Starting recipe: cpu-fast (tuned default) or reference.")]
PluginsOption = Annotated[
    list[Path] | None,
    typer.Option("--plugins", help="Extra plugin file or folder of variants (repeatable)."),
]


def discover_variants(plugins: list[Path] | None):  # noqa: ANN201
    from minigpt.variants import discover

    return discover(plugins or [])


def preset_config(name: str):  # noqa: ANN201
    """The base configuration of a preset, which every variant then changes."""
    from minigpt.config import PRESETS

    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]
