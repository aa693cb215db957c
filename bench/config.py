"""One resolved config per run: defaults < profile < --config FILE < --set key=value.

Defaults and profiles live as YAML files under ``bench/configs/``; every file in a layer's folder
is deep-merged into that layer, so each part of the harness (data, tokenizer, model, baseline)
owns its own file.
"""
from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import ValidationError

from bench.config_schema import RunConfig, describe_errors, get_path, run_config_model  # get_path: re-exported
from bench.data import DATASETS
from bench.errors import UserError
from bench.plugins import METHODS, TOKENIZERS
from bench.registry import close_match

CONFIG_ROOT = Path(__file__).parent / "configs"
DEFAULTS_DIR = CONFIG_ROOT / "defaults"
PROFILES_DIR = CONFIG_ROOT / "profiles"


class _Loader(yaml.SafeLoader):
    """YAML with 1.2-style floats: PyYAML reads ``1e-3`` (no dot) as a string, a researcher means 0.001."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml_text(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


class ConfigError(UserError, ValueError):
    """A config that cannot be resolved: bad file, bad --set, unknown profile."""


def profile_names() -> list[str]:
    return sorted(p.name for p in PROFILES_DIR.iterdir() if p.is_dir())


def deep_merge(base: dict, override: dict) -> dict:
    """A new dict: ``override`` merged into ``base``, recursing into nested mappings."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML parse error on one line: what is wrong and where (PyYAML's own text draws a caret)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context = getattr(err, "context", None)
    return f"{problem}{where}" + (f" ({context})" if context else "")


def _load_yaml(path: Path) -> dict:
    try:
        data = load_yaml_text(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(err)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML text file (not UTF-8 text)") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping, not {type(data).__name__}")
    return data


def load_layer(folder: Path) -> dict:
    """All YAML files of one folder, merged in name order."""
    layer: dict = {}
    for path in sorted(folder.glob("*.yaml")):
        layer = deep_merge(layer, _load_yaml(path))
    return layer


def parse_assignment(text: str) -> dict:
    """``a.b.c=value`` -> ``{"a": {"b": {"c": value}}}``, the value parsed as YAML (1e-3, true, [5, 10])."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value, got {text!r}")
    try:
        value = load_yaml_text(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {text!r}: value is not valid YAML: {err}") from err
    node: Any = value
    for part in reversed(key.strip().split(".")):
        node = {part: node}
    return node


def flatten(config: dict, skip: tuple[str, ...] = (), prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; bookkeeping keys (``_...``) and the dotted keys (or whole
    sections) in ``skip`` left out; an empty section stays one value."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if str(key).startswith("_") or dotted in skip:
            continue
        if isinstance(value, dict) and value:
            out.update(flatten(value, skip, dotted + "."))
        else:
            out[dotted] = value
    return out


def _check_known_keys(defaults: dict, override: dict, prefix: str, source: str) -> None:
    """Reject keys that no default declares, so a typo in --set fails instead of being ignored, and
    a single value given where a section is expected (``--set tokenizer=rqvae``)."""
    for key, value in override.items():
        dotted = f"{prefix}{key}"
        if key not in defaults:
            close = close_match(key, defaults)
            hint = f"; did you mean {prefix + close!r}?" if close else ""
            raise ConfigError(
                f"{source}: unknown config key {dotted!r}{hint} (known keys here: "
                f"{', '.join(sorted(map(str, defaults))) or '(none)'})"
            )
        if isinstance(defaults[key], dict) and defaults[key] and not isinstance(value, dict):
            example = next(iter(defaults[key]))
            raise ConfigError(f"{source}: {dotted!r} is a section, not a single value; set one of its keys, "
                              f"e.g. {dotted}.{example}=...")
        if isinstance(value, dict) and isinstance(defaults[key], dict) and defaults[key]:
            _check_known_keys(defaults[key], value, f"{dotted}.", source)


def check_key(dotted: str, what: str = "config key") -> str:
    """``dotted`` if some config has that key (``model.encoder_layers``), else ConfigError with a
    close match: tables and plots filter on config keys, and a typo must not give an empty table."""
    parts = dotted.split(".")
    node: Any = default_layer()
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            known = [str(k) for k in node] if isinstance(node, dict) else []
            close = close_match(part, known)
            prefix = ".".join(parts[:i])
            hint = f"; did you mean {'.'.join([*parts[:i], close])!r}?" if close else ""
            where = f" under {prefix!r}" if prefix else ""
            raise ConfigError(f"unknown {what} {dotted!r}{hint} (known keys{where}: {', '.join(sorted(known))})")
        node = node[part]
    return dotted


def default_layer() -> dict:
    """Every key a config may have, with its default: the YAML files under ``configs/defaults``
    and the sections registered plug-ins declare (:func:`plugin_defaults`)."""
    return deep_merge(_default_files(), plugin_defaults())  # deep_merge copies: the cache stays as read


@functools.lru_cache(maxsize=1)
def _default_files() -> dict:
    """The YAML files under ``configs/defaults``, read once per process (every tokenizer built and
    every config resolved reads the defaults; the plug-in part is merged in fresh each time)."""
    return load_layer(DEFAULTS_DIR)


def plugin_defaults() -> dict:
    """Config sections that registered plug-ins declare themselves (``Plugin.defaults``), nested
    under their registry's section: ``tokenizer.<name>``, ``data.<name>``, ``baseline.<name>``."""
    layer: dict = {}
    for registry, section in ((TOKENIZERS, "tokenizer"), (DATASETS, "data"), (METHODS, "baseline")):
        for plugin in registry.infos():
            if plugin.defaults is not None:
                layer = deep_merge(layer, {section: {plugin.name: plugin.defaults}})
    return layer


@functools.lru_cache(maxsize=None)
def _profile_values(profile: str | None) -> dict:
    if not profile or not (PROFILES_DIR / profile).is_dir():
        raise KeyError(profile)
    return deep_merge(default_layer(), load_layer(PROFILES_DIR / profile))


def profile_value(profile: str | None, dotted: str) -> Any:
    """What ``profile`` sets ``dotted`` to today (its layer over the defaults); KeyError for a
    profile that no longer exists."""
    return get_path(_profile_values(profile), dotted)


def resolve_config(
    profile: str | None = None,
    config_files: Iterable[str | Path] = (),
    assignments: Iterable[str] = (),
    overrides: dict | None = None,
) -> RunConfig:
    """The one config a run uses, typed (:class:`RunConfig`; its ``to_record()`` holds the layers it
    came from under ``_layers``); every value and name checked (types, ranges, registered names)."""
    defaults = default_layer()
    config = copy.deepcopy(defaults)
    layers = ["defaults"]
    if profile:
        folder = PROFILES_DIR / profile
        if not folder.is_dir():
            raise ConfigError(f"unknown profile {profile!r}; valid profiles: {', '.join(profile_names())}")
        layer = load_layer(folder)
        _check_known_keys(defaults, layer, "", f"profile {profile}")
        config = deep_merge(config, layer)
        layers.append(f"profile:{profile}")
    for path in config_files:
        layer = _load_yaml(Path(path))
        _check_known_keys(defaults, layer, "", str(path))
        config = deep_merge(config, layer)
        layers.append(f"file:{path}")
    if overrides:
        _check_known_keys(defaults, overrides, "", "command line")
        config = deep_merge(config, overrides)
        layers.append("cli")
    for text in assignments:
        layer = parse_assignment(text)
        _check_known_keys(defaults, layer, "", f"--set {text}")
        config = deep_merge(config, layer)
        layers.append(f"set:{text}")
    config["profile"] = profile
    config["_layers"] = layers
    derive_protocol(config)
    derive_paths(config)
    return check_config(config)


def with_values(config: RunConfig, overrides: dict) -> RunConfig:
    """``config`` with ``overrides`` (a nested mapping) merged over it and checked again: a resolved
    config is immutable, so a changed one is a new one (a trial resuming from a checkpoint)."""
    return check_config(deep_merge(config.to_record(), overrides))


def derive_paths(config: dict) -> None:
    """Work folders live beside the results store they belong to (``<results_dir>/../work``) unless
    ``work_dir`` is set: a run with ``--results-dir elsewhere`` does not write into ./results."""
    if config.get("work_dir") is None and isinstance(config.get("results_dir"), str):
        config["work_dir"] = str(Path(config["results_dir"]).parent / "work")


def check_config(config: dict) -> RunConfig:
    """``config`` typed (:class:`RunConfig`); ConfigError (or UnknownNameError) unless every value has
    its type and range (plug-in sections too: each by its plug-in's ``Params``) and every plug-in name
    is registered."""
    try:
        typed = run_config_model().from_record(config)
    except ValidationError as err:
        problems = describe_errors(err)
        more = f" (and {len(problems) - 6} more)" if len(problems) > 6 else ""
        raise ConfigError("invalid config: " + "; ".join(problems[:6]) + more) from None
    METHODS.check(typed.method)
    DATASETS.check(typed.dataset)
    TOKENIZERS.check(typed.tokenizer.name)
    METHODS.get(typed.method).check_config(typed)
    return typed


def derive_protocol(config: dict) -> None:
    """Fill the values that follow the protocol: every method's history length is
    ``split.max_history`` unless a layer set ``baseline.max_seq_len`` on purpose."""
    baseline = config.get("baseline")
    history = get_path(config, "split.max_history")
    if isinstance(baseline, dict) and baseline.get("max_seq_len") is None and isinstance(history, int) and history > 0:
        baseline["max_seq_len"] = history
