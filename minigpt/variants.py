"""Variants: named, described changes to the baseline configuration, and where they come from.

    from minigpt import variant

    @variant("learned-pos", "learned absolute position embeddings instead of RoPE")
    def learned_pos(cfg):
        return cfg.replace(position="learned")

Discovery loads plugin modules in this order: the built-in variants (installed with the
package, or the checkout's `variants/` folder), a `variants/` folder in the current directory,
`--plugins PATH` (files or folders), then installed distributions' entry points in group
`minigpt_bench.variants` (each names a module, as pytest's `pytest11` plugins do). Each variant function carries its metadata, so collecting
them is reading the loaded modules: loading twice registers nothing twice. A file that is
byte for byte one already loaded (a checkout's `variants/` seen as local while the package is
installed from a wheel) is skipped, so only a real redefinition is a clash.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from minigpt import bundled
from minigpt.config import Config, ConfigError
from minigpt.errors import UserError
from minigpt.registry import suggest
from minigpt.store import RunStore

ENTRY_POINT_GROUP = "minigpt_bench.variants"
BUILTIN_DIR = bundled.VARIANTS
BASELINE = "baseline"


class VariantError(UserError):
    """A plugin that cannot be loaded, a name clash, an unknown name or a bad configuration."""


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    apply: Callable[[Config], Config] = field(repr=False)
    family: str = ""
    source: str = ""  # built-in, local, plugin or entry point
    origin: str = ""  # the file or entry point it came from

    def configure(self, base: Config) -> Config:
        """The variant's configuration, validated (its keys, and that every component it names
        is registered): a variant that yields an invalid one fails here, before any training."""
        from minigpt.components import check_names  # torch: only once a variant is configured

        try:
            cfg = self.apply(base)
            if isinstance(cfg, Config):
                check_names(cfg)
        except ConfigError as error:
            raise VariantError(f"variant {self.name!r} ({self.origin}): {error}") from None
        if not isinstance(cfg, Config):
            raise VariantError(f"variant {self.name!r} ({self.origin}) must return a Config, got {type(cfg).__name__}")
        return cfg


def variant(name: str, description: str) -> Callable[[Callable[[Config], Config]], Callable[[Config], Config]]:
    """Mark `fn(cfg) -> cfg` as the variant `name`; discovery picks it up from its module."""

    def mark(fn: Callable[[Config], Config]) -> Callable[[Config], Config]:
        fn.minigpt_variant = (name, description)  # type: ignore[attr-defined]
        return fn

    return mark


class VariantRegistry:
    def __init__(self) -> None:
        self._variants: dict[str, Variant] = {}

    def add(self, found: Variant) -> None:
        if found.name in self._variants:
            first = self._variants[found.name]
            raise VariantError(f"variant {found.name!r} is defined twice: in {first.origin} and in {found.origin}")
        self._variants[found.name] = found

    def get(self, name: str) -> Variant:
        if name not in self._variants:
            raise VariantError(f"unknown variant {name!r}{suggest(name, self.names())}")
        return self._variants[name]

    def names(self) -> list[str]:
        return list(self._variants)

    def __iter__(self):  # noqa: ANN204
        return iter(self._variants.values())

    def __len__(self) -> int:
        return len(self._variants)

    def collect(self, module: ModuleType, source: str, origin: str) -> None:
        for obj in vars(module).values():
            marked = getattr(obj, "minigpt_variant", None)
            if marked and callable(obj) and getattr(obj, "__module__", None) == module.__name__:
                family = Path(origin).stem if source != "entry point" else module.__name__.rsplit(".", 1)[-1]
                self.add(Variant(marked[0], marked[1], obj, family, source, origin))


def discover(plugins: Iterable[str | Path] = (), cwd: Path | None = None) -> VariantRegistry:
    """Load every plugin source in order and return the variants they define."""
    registry = VariantRegistry()
    seen: set[str] = set()
    folders = [(BUILTIN_DIR, "built-in"), ((cwd or Path.cwd()) / "variants", "local")]
    for folder, source in folders:
        if folder.is_dir():
            files = sorted(folder.glob("[!_]*.py"), key=lambda f: (f.stem != BASELINE, f.name))
            _collect_files(registry, files, source, seen)
    for plugin in plugins:
        path = Path(plugin)
        if not path.exists():
            raise VariantError(f"plugin path {path} does not exist")
        files = sorted(path.glob("[!_]*.py")) if path.is_dir() else [path]
        _collect_files(registry, files, "plugin", seen)
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        origin = f"entry point {entry_point.name} = {entry_point.value}"
        try:
            module = importlib.import_module(entry_point.value.split(":")[0])
        except Exception as error:  # a broken plugin must name itself, whatever it raised
            raise VariantError(f"plugin {origin} failed to import: {_error_line(error, None)}") from None
        registry.collect(module, "entry point", origin)
    return registry


def recorded_plugins(run_dir: str | Path) -> list[Path]:
    """The `--plugins` paths a sweep ran with (its sweep.json). A relative one was relative to
    where `run` ran, so it is taken relative to the current folder; a missing one is an error."""
    paths = [Path(p) for p in RunStore(run_dir).read_sweep().get("plugins", [])]
    for path in paths:
        if not path.exists():
            raise VariantError(
                f"plugin {path}, recorded in {Path(run_dir) / 'sweep.json'}, does not exist here; "
                "pass --plugins PATH to say where it is"
            )
    return paths


def _collect_files(registry: VariantRegistry, files: list[Path], source: str, seen: set[str]) -> None:
    """Load each file once, known by its resolved path and by its content."""
    for file in files:
        resolved = file.resolve()
        keys = {f"path:{resolved}", f"sha256:{_content_hash(resolved)}"}
        if keys & seen:
            continue
        seen.update(keys)
        registry.collect(load_plugin_file(resolved), source, str(file))


def _content_hash(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as error:
        raise VariantError(f"plugin {path} cannot be read: {error.strerror}") from None


def load_plugin_file(path: Path) -> ModuleType:
    """Import one plugin file under a private module name, reporting failures in one line."""
    name = f"minigpt_plugins.{path.parent.name}.{path.stem}".replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise VariantError(f"plugin {path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # a broken plugin must name itself, whatever it raised
        del sys.modules[name]
        raise VariantError(f"plugin {path} failed to import: {_error_line(error, path)}") from None
    return module


def _error_line(error: BaseException, path: Path | None) -> str:
    """'line N: ErrorType: message', N being the failing line in the plugin's own file."""
    line = getattr(error, "lineno", None) if isinstance(error, SyntaxError) else None
    if line is None:
        frames = traceback.extract_tb(error.__traceback__)
        own = [f for f in frames if path is None or Path(f.filename).resolve() == path]
        line = own[-1].lineno if own else None
    message = f"{type(error).__name__}: {error}"
    return f"line {line}: {message}" if line else message
