"""A tiny name -> factory registry, one per kind of building block."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from minigpt.config import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: `@position.register("xpos")` on a class or factory function."""

        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            existing = self._factories.get(name)
            if existing is not None and _origin(existing) != _origin(factory):
                raise ValueError(
                    f"{self.kind} {name!r} is registered twice: by {_origin(existing)} and {_origin(factory)}"
                )
            self._factories[name] = factory  # the same definition loaded again replaces itself
            return factory

        return decorate

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._factories:
            raise ConfigError(f"unknown {self.kind} {name!r}{suggest(name, self.names())}")
        return self._factories[name]

    def build(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._factories)

    def factories(self) -> list[Callable[..., T]]:
        return list(self._factories.values())


def _origin(factory: Callable) -> str:
    return f"{factory.__module__}.{factory.__qualname__}"


def suggest(name: str, choices: list[str]) -> str:
    """', did you mean X?' with the closest names, or the list of choices."""
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    if close:
        return f"; did you mean {' or '.join(close)}?"
    return f"; choose from {', '.join(choices)}"
