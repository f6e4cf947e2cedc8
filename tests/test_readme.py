"""README.md's Layout is the map developers keep current: it names every module and package of
minigpt/ (a module added without its line fails here)."""

from __future__ import annotations

import re

import pytest

from .conftest import ROOT

PACKAGE = ROOT / "minigpt"


def layout() -> str:
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("\n## Layout\n")[1].split("\n## ")[0]
    (tree,) = re.findall(r"```\n(.*?)```", section, flags=re.DOTALL)
    return tree


def modules() -> list[str]:
    """minigpt's modules and packages as the Layout names them: `name.py` at the top, `name/`
    for a package, and the bare name of a module inside a package."""
    names = []
    for path in sorted(PACKAGE.iterdir()):
        if path.suffix == ".py" and path.stem != "__init__":
            names.append(path.name)
        elif (path / "__init__.py").exists():
            names.append(f"{path.name}/")
            names += [f"{path.name}/{inner.stem}" for inner in sorted(path.glob("*.py")) if inner.stem != "__init__"]
    return names


@pytest.mark.parametrize("name", modules())
def test_the_layout_names_the_module(name: str) -> None:
    tree = layout()
    if "/" in name and not name.endswith("/"):  # a package's module: its name in the package's entry
        stem = name.split("/")[1]
        assert re.search(rf"\b{re.escape(stem)}\b", tree, flags=re.IGNORECASE), f"README's Layout omits {name}"
    else:
        assert re.search(rf"(^|\s|\(){re.escape(name)}", tree, flags=re.MULTILINE), f"README's Layout omits {name}"
