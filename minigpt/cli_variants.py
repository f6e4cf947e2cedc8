"""`minigpt-bench variants`: list, show and scaffold variant plugins."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Annotated

import typer

from minigpt.cli_shared import PluginsOption, PresetOption, console, discover_variants, preset_config
from minigpt.errors import UserError

variants_app = typer.Typer(help="List, inspect and scaffold variant plugins.", no_args_is_help=True)


@variants_app.command("list")
def variants_list(
    pattern: Annotated[
        str | None, typer.Argument(help="Only the variants whose name matches this glob, e.g. 'attn-*'.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    preset: PresetOption = "cpu-fast",
    plugins: PluginsOption = None,
) -> None:
    """Every variant found, grouped by family: name, description, source, parameters at the
    default size. `--json` prints a flat list of objects with the family in each."""
    from minigpt.model import GPT

    base = preset_config(preset).config()
    found = list(discover_variants(plugins))
    chosen = [v for v in found if pattern is None or fnmatch.fnmatchcase(v.name, pattern)]
    if not chosen:
        raise UserError(f"no variant matches {pattern!r}; `minigpt-bench variants list` shows all {len(found)}")
    rows = [
        {
            "name": v.name,
            "family": v.family,
            "description": v.description,
            "source": v.source,
            "origin": v.origin,
            "params": GPT(v.configure(base)).num_params(),
        }
        for v in chosen
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    title = (
        f"{len(rows)} variants" if pattern is None else f"{len(rows)} variants matching {pattern!r} (of {len(found)})"
    )
    console.print(family_table(rows, title))


def family_table(rows: list[dict], title: str):  # noqa: ANN201 (rich is imported lazily)
    """The rows grouped by family, families in the order they were first found, a rule between."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("family", "name", "description", "source", "params"):
        table.add_column(column, justify="right" if column == "params" else "left")
    families = list(dict.fromkeys(row["family"] for row in rows))
    for family in families:
        members = [row for row in rows if row["family"] == family]
        for index, row in enumerate(members):
            last = index == len(members) - 1
            label = family if index == 0 else ""
            cells = (label, row["name"], row["description"], row["source"], f"{row['params']:,}")
            table.add_row(*cells, end_section=last)
    return table


@variants_app.command("show")
def variants_show(
    name: Annotated[str, typer.Argument(help="Variant name.")],
    preset: PresetOption = "cpu-fast",
    plugins: PluginsOption = None,
) -> None:
    """What a variant changes relative to the baseline, and its parameter count."""
    from minigpt.model import GPT
    from minigpt.variants import BASELINE

    preset_base = preset_config(preset).config()
    registry = discover_variants(plugins)
    chosen = registry.get(name)
    base = registry.get(BASELINE).configure(preset_base) if BASELINE in registry.names() else preset_base
    cfg = chosen.configure(preset_base)
    console.print(f"[bold]{chosen.name}[/] ({chosen.family}, {chosen.source})")
    console.print(chosen.description, markup=False)
    console.print(f"defined in {chosen.origin}", markup=False, soft_wrap=True)  # a path stays one line
    changes = cfg.diff(base)
    for key, (new, old) in changes.items():
        console.print(f"  {key}: {old!r} -> {new!r}", markup=False)
    if not changes:
        console.print("  no configuration change from the baseline")
    params, base_params = GPT(cfg).num_params(), GPT(base).num_params()
    console.print(f"parameters: {params:,} (baseline {base_params:,}, {params / base_params - 1:+.1%})")


VARIANT_TEMPLATE = '''"""{name}: say here what this variant changes and why it might help."""

from minigpt import variant


@variant("{name}", "one more transformer block than the baseline (edit me)")
def {function}(cfg):
    # cfg is the baseline configuration (model and training keys, as `--set` takes them);
    # return a changed copy. `minigpt-bench variants show {name}` prints the difference.
    return cfg.replace(n_layer=cfg.n_layer + 1)
'''


@variants_app.command("new")
def variants_new(name: Annotated[str, typer.Argument(help="Slug for the new variant, e.g. deep-narrow.")]) -> None:
    """Scaffold variants/NAME.py from a template that runs as written."""
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
        raise UserError(
            f"variant name {name!r} must be a slug: a lowercase letter, then lowercase letters, digits, - or _"
        )
    taken = {v.name: v for v in discover_variants(None)}.get(name)
    if taken is not None:
        raise UserError(f"variant {name!r} already exists ({taken.source}, {taken.origin}); choose another name")
    path = Path("variants") / f"{name}.py"
    if path.exists():
        raise UserError(f"{path} already exists; choose another name or edit that file")
    from minigpt import atomic

    atomic.write_text(path, VARIANT_TEMPLATE.format(name=name, function=name.replace("-", "_")))
    console.print(f"wrote {path}; `minigpt-bench run --variants baseline,{name}` will train it")
