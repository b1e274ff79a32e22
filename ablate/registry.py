"""Name → constructor tables, so config files pick components by name."""
from collections.abc import Callable
from typing import Any

from ablate.errors import ConfigError


class Registry:
    def __init__(self, key: str) -> None:
        self.key = key
        self._items: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def add(fn: Callable[..., Any]) -> Callable[..., Any]:
            self._items[name] = fn
            return fn
        return add

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._items:
            raise ConfigError(f"{self.key}={name!r} is not one of: {', '.join(self.names())}")
        return self._items[name]
