"""What identifies a number or an artifact: one hash function, component versions, artifact keys.

Every component that produces a cached artifact or a stored number declares an integer version next
to its code (``EMBEDDER_VERSION`` in ``bench.embed``, ``Tokenizer.version`` on each tokenizer class,
``CF_EMBED_VERSION``, ``RECBOLE_DATA_VERSION``, ``CHECKPOINT_FORMAT``, ``Recommender.version`` on
each method). Bump it when a change makes earlier outputs wrong or different: every cache key and
every sweep's resume key contains it, so nothing made by the old code is reused.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
from typing import Any, Iterable

from bench.config_schema import keys_added_later, keys_with_role
from bench.plugins import METHODS, TOKENIZERS

# keys that say where files go, not what ran: never part of an identity
PATH_KEYS = keys_with_role("path")
# config keys added after records were stored -> the value that behaves as before: left out of every
# identity at that value, so the records made before the key existed keep their identities
ADDED_LATER = keys_added_later()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def stable_hash(value: Any, length: int | None = None) -> str:
    """SHA-256 of ``value`` as canonical JSON (sorted keys): the one hash behind every key here."""
    digest = hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()
    return digest[:length] if length else digest


def public_config(config: dict, drop: Iterable[str] = ()) -> dict:
    """``config`` without its bookkeeping (``_layers``) and without the keys in ``drop``."""
    if not isinstance(config, dict):  # a typed config's values are not the record's (5.0 for 5)
        raise TypeError(f"identities hash a plain config (a record's, or RunConfig.to_record()), not {type(config).__name__}")
    drop = set(drop)
    return {k: v for k, v in config.items() if not str(k).startswith("_") and k not in drop}


def config_hash(config: dict, length: int = 10) -> str:
    """Hash of the whole resolved config (seed and paths included): part of a run id."""
    return stable_hash(public_config(config), length)


def what_ran(config: dict, drop: Iterable[str] = PATH_KEYS) -> dict:
    """``config`` without ``drop`` and without where training resumed from (``train.resume_from``
    set to None, which keeps the identities of every stored record): a resumed run takes the same
    steps as an uninterrupted one (see recommenders.trainer), so it is the same setting. The sections
    of tokenizers and datasets the run does not use are left out: registering a new one changes no
    stored run's identity. So are the sections only other methods read (a RecBole model's identity
    holds no TIGER training keys; see :func:`_drop_unread`), and the cold-start section of a
    standard-protocol run (absent from records made before it existed)."""
    config = public_config(config, drop)
    per_plugin = _drop_unread(config)
    if not (config.get("coldstart") or {}).get("enabled"):
        config.pop("coldstart", None)
    if isinstance(config.get("train"), dict) and config["train"].get("resume_from") is not None:
        config["train"] = {**config["train"], "resume_from": None}
    for section, selected in (("tokenizer", (config.get("tokenizer") or {}).get("name")), ("data", config.get("dataset")),
                              *per_plugin):
        part = config.get(section)  # the parameters of plug-ins this run does not use are not what ran
        if isinstance(part, dict):
            config[section] = {k: v for k, v in part.items() if not isinstance(v, dict) or k == selected}
    for dotted, default in ADDED_LATER.items():  # absent in older records: the same setting
        section, _, key = dotted.partition(".")
        part = config.get(section)
        if isinstance(part, dict) and key in part and part[key] == default:
            config[section] = {k: v for k, v in part.items() if k != key}
    return one_number_form(config)


def _drop_unread(config: dict) -> list[tuple[str, str]]:
    """Remove from ``config`` the sections some registered method reads but its method does not (nor
    its tokenizer: LETTER's fit reads ``baseline``). Returns (section, method) where the method reads
    ``baseline`` itself: of its per-plug-in parts (``baseline.semantic_knn``, ``baseline.cf_embed``)
    only the method's own is what ran. A config of an unregistered method is left whole."""
    method, tokenizer = config.get("method"), (config.get("tokenizer") or {}).get("name")
    if not isinstance(method, str) or method not in METHODS:
        return []
    own = set(METHODS.info(method).extras.get("sections", ()))
    via_tokenizer = (set(TOKENIZERS.info(tokenizer).extras.get("reads", ()))
                     if "tokenizer" in own and isinstance(tokenizer, str) and tokenizer in TOKENIZERS else set())
    owned = {s for p in METHODS.infos() for s in p.extras.get("sections", ())}
    for section in owned - own - via_tokenizer:
        config.pop(section, None)
    return [("baseline", method)] if "baseline" in own - via_tokenizer else []


def one_number_form(value):
    """``value`` with every whole float written as an int: 0 and 0.0 are one setting (a sweep's YAML
    grid writes ``beta: 0.0`` where ``--set tokenizer.letter.beta=0`` writes 0), so their hashes agree."""
    if isinstance(value, dict):
        return {k: one_number_form(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [one_number_form(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def config_identity(config: dict, drop: Iterable[str] = ("seed", *PATH_KEYS), length: int = 10) -> str:
    """Hash of what ran, seed and paths left out: runs sharing it are seeds of one configuration."""
    return stable_hash(what_ran(config, drop), length)


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_versions_of(names: Iterable[str]) -> dict[str, str | None]:
    return {name: package_version(name) for name in names}


def artifact_key(kind: str, settings: Any, components: dict[str, int], packages: Iterable[str] = (),
                 inputs: Any = None, length: int | None = None) -> str:
    """The key of a cached artifact: what made it (``kind``, resolved ``settings``, the versions of
    the components it depends on, the versions of the packages that shape it) and what it was made
    from (``inputs``: hashes of data or arrays). A change in any part gives a new key."""
    material = {
        "kind": kind,
        "settings": settings,
        "components": dict(sorted(components.items())),
        "packages": package_versions_of(sorted(packages)),
        "inputs": inputs,
    }
    return stable_hash(material, length)


def code_identity(components: dict | None, git: dict | None) -> str:
    """Hash of the code behind a record: component versions + commit + dirty flag. Seeds are
    averaged only within one code identity."""
    git = git or {}
    return stable_hash({"components": components, "commit": git.get("commit"), "dirty": git.get("dirty")}, 10)
