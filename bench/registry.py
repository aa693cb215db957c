"""Name -> implementation registries, resolved lazily so heavy plug-ins (RecBole, torch) load only when used."""
from __future__ import annotations

import importlib
from typing import Any, Callable, Iterator


class UnknownNameError(KeyError):
    """A name that is not in a registry; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


class Registry:
    """Maps a short name (``--tokenizer letter``) to an object or a lazy ``"module:attr"`` path."""

    def __init__(self, kind: str, entries: dict[str, Any] | None = None):
        self.kind = kind
        self._entries: dict[str, Any] = dict(entries or {})

    def register(self, name: str, target: Any = None) -> Callable | Any:
        """Register ``target`` under ``name``; without a target, acts as a decorator."""
        if target is not None:
            self._entries[name] = target
            return target

        def decorator(obj: Any) -> Any:
            self._entries[name] = obj
            return obj

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> Any:
        """The registered object, importing it on first use."""
        if name not in self._entries:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid {self.kind} names: {', '.join(self.names())}"
            )
        target = self._entries[name]
        if isinstance(target, str):
            module_name, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module_name), attr)
            self._entries[name] = target
        return target
