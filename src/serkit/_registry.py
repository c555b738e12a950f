"""Name → object registries whose misses list the valid names (corpora, features, model families)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A small dict of named things; ``get`` of an unknown name raises :class:`ConfigError` listing the known ones.

    ``plugins=(package, modules)`` names the modules whose ``@register`` decorators fill the
    registry; they are imported on the first look-up (by name, through :func:`import_plugins`), so
    the module that defines the registry never imports the package above it. A look-up from another
    thread while they are being imported waits for them (prediction reads audio in threads); one
    from the importing thread itself (a plugin looking up another) sees what is registered so far.
    """

    def __init__(self, kind: str, *, plugins: tuple[str, tuple[str, ...]] | None = None):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._plugins = plugins
        self._lock = threading.RLock()
        self._loading = False

    def _load(self) -> None:
        if self._plugins is None:
            return
        with self._lock:
            if self._plugins is None or self._loading:
                return
            self._loading = True
            try:
                import_plugins(*self._plugins)  # on an import error the next look-up raises it again
                self._plugins = None
            finally:
                self._loading = False

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        self.register(name)(obj)

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._items))}") from None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items


def import_plugins(package: str, modules) -> None:
    """Import ``package.<module>`` for each name so their ``@register`` decorators run; a module
    that is absent is skipped, while an import error inside a present module propagates."""
    import importlib

    for m in modules:
        try:
            importlib.import_module(f"{package}.{m}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.{m}":
                raise
