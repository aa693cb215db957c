"""Name -> plug-in registries, resolved lazily so heavy plug-ins (RecBole, torch) load only when used.

Each entry is a :class:`Plugin` descriptor: everything the rest of the harness needs to know about a
method, tokenizer or dataset (its display name, table group and order, whether it is generative,
its config section defaults, its text template) lives in that one place. Tables, plots, sweeps and
the config read descriptors; no other module keeps a list of names.
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from bench.errors import UserError


def close_match(name: Any, candidates) -> str | None:
    """The candidate closest to a mistyped ``name`` (for "did you mean"), or None."""
    found = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1)
    return found[0] if found else None


class UnknownNameError(UserError, KeyError):
    """A name that is not in a registry; the message lists the valid names (and a close match)."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


@dataclass
class Plugin:
    """What the harness knows about one registered plug-in."""

    name: str
    target: Any  # the object, or a lazy "module:attr" path
    display: str = ""  # row name in tables (default: the name)
    order: int = 100  # position among its group in tables (smaller first)
    group: str = ""  # methods: "baseline" | "generative"
    defaults: dict | None = None  # its config section's defaults, where not in bench/configs/defaults
    extras: dict = field(default_factory=dict)  # kind-specific facts (a dataset's text template, ...)

    def __post_init__(self):
        self.display = self.display or self.name

    @property
    def generative(self) -> bool:
        return self.group == "generative"


class Registry:
    """Maps a short name (``--tokenizer letter``) to a :class:`Plugin` descriptor."""

    def __init__(self, kind: str, entries: dict[str, Any] | None = None, section: str | None = None):
        self.kind = kind
        self.section = section  # config section that holds one sub-section per plug-in (tokenizer.<name>)
        self._entries: dict[str, Plugin] = {}
        for name, target in (entries or {}).items():
            self.register(name, target)

    def register(self, name: str, target: Any = None, **info) -> Callable | Any:
        """Register ``target`` under ``name`` with descriptor facts ``info`` (see :class:`Plugin`);
        without a target, acts as a decorator."""
        if target is not None:
            self._entries[name] = target if isinstance(target, Plugin) else Plugin(name, target, **info)
            return target

        def decorator(obj: Any) -> Any:
            self._entries[name] = Plugin(name, obj, **info)
            return obj

        return decorator

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def check(self, name: Any) -> str:
        """``name`` if registered, else UnknownNameError with the valid names and a close match."""
        if not isinstance(name, str) or name not in self._entries:
            close = close_match(name, self.names())
            hint = f"; did you mean {close!r}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{hint} (valid {self.kind} names: {', '.join(self.names())})"
            )
        return name

    def info(self, name: str) -> Plugin:
        """The descriptor of ``name`` (without importing the plug-in)."""
        return self._entries[self.check(name)]

    def infos(self) -> list[Plugin]:
        return [self._entries[n] for n in self.names()]

    def display(self, name: Any) -> str:
        """Display name of ``name``; the name itself where it is not registered (old records)."""
        return self._entries[name].display if name in self._entries else str(name)

    def order(self, name: Any) -> int:
        return self._entries[name].order if name in self._entries else 10_000

    def get(self, name: str) -> Any:
        """The registered object, importing it on first use."""
        plugin = self.info(name)
        if isinstance(plugin.target, str):
            module_name, _, attr = plugin.target.partition(":")
            plugin.target = getattr(importlib.import_module(module_name), attr)
        return plugin.target
