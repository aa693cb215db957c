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

    def __init__(self, kind: str, entries: dict[str, Any] | None = None, section: str | None = None,
                 base: Any = None):
        self.kind = kind
        self.section = section  # config section that holds one sub-section per plug-in (tokenizer.<name>)
        self._base = base  # the class every entry must subclass, or its lazy "module:attr" path (None: any)
        self._entries: dict[str, Plugin] = {}
        for name, target in (entries or {}).items():
            self.register(name, target)

    def register(self, name: str, target: Any = None, **info) -> Callable | Any:
        """Register ``target`` under ``name`` with descriptor facts ``info`` (see :class:`Plugin`);
        without a target, acts as a decorator. A name registered twice is an error (unregister first)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered ({self._entries[name].target!r})")
        if target is not None:
            self._entries[name] = target if isinstance(target, Plugin) else Plugin(name, target, **info)
            return target

        def decorator(obj: Any) -> Any:
            self.register(name, obj, **info)
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
        """The registered object, importing it on first use; TypeError where it is not a subclass of
        the registry's base class."""
        plugin = self.info(name)
        if isinstance(plugin.target, str):
            target = _resolve(plugin.target)
            self._check_base(name, target)
            plugin.target = target
        elif isinstance(plugin.target, type):
            self._check_base(name, plugin.target)
        return plugin.target

    def _check_base(self, name: str, target: Any) -> None:
        if self._base is None:
            return
        if isinstance(self._base, str):
            self._base = _resolve(self._base)
        if not (isinstance(target, type) and issubclass(target, self._base)):
            raise TypeError(f"{self.kind} {name!r} is registered as {target!r}, which is not a subclass of "
                            f"{self._base.__module__}.{self._base.__qualname__}")


def _resolve(path: str) -> Any:
    """The object a lazy ``"module:attr"`` entry names (imports the module: the plug-in is loaded by
    name at run time, which is how the ground floor reaches plug-ins without importing them)."""
    module_name, _, attr = path.partition(":")
    return getattr(importlib.import_module(module_name), attr)
