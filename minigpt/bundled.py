"""Where the files that install with the package are: the built-in variants, the
micro-benchmark suite and tiny Shakespeare.

A checkout keeps them in its top-level `variants/`, `benchmarks/` and `data/` folders. A wheel
installs them inside the package as `minigpt/_variants/`, `minigpt/_benchmarks/` and
`minigpt/_data/` (pyproject.toml maps them), so an installed copy needs no checkout and adds no
top-level module called `variants` or `benchmarks`. The installed folder wins where it exists;
otherwise (a checkout on the path, or an editable install) the checkout's is used.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def folder(name: str) -> Path:
    """The installed copy of the checkout's top-level folder `name`, else the checkout's own."""
    installed = PACKAGE / f"_{name}"
    return installed if installed.is_dir() else PACKAGE.parent / name


VARIANTS = folder("variants")
BENCHMARKS = folder("benchmarks")
TINY_SHAKESPEARE = folder("data") / "input.txt"
