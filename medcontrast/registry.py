"""Name -> factory registries that fail with a "did you mean" suggestion."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from medcontrast.errors import MedContrastError

T = TypeVar("T")


class Registry(Generic[T]):
    """A small mapping from names to factories.

    Args:
        kind: what the registry holds, used in error messages ("method", "encoder").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name`` (names are lower case)."""

        def add(obj: T) -> T:
            key = name.lower()
            if key in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[key] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        """Return the entry for ``name`` or raise a MedContrastError suggesting close names."""
        key = name.lower()
        if key in self._items:
            return self._items[key]
        close = difflib.get_close_matches(key, list(self._items), n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        known = ", ".join(sorted(self._items))
        raise MedContrastError(f"unknown {self.kind} {name!r}.{hint} Known: {known}.")

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
