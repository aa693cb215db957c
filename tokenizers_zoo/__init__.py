"""Item tokenizers by name, and fitting them from a resolved run config (with an on-disk cache).

``fit_tokenizer(config, item_emb, cf_emb)`` reads ``config.tokenizer``: the tokenizer's name,
its parameters (``tokenizer.<name>``), the seed (``tokenizer.seed``, else the run's ``seed``) and
the cache settings. A fitted tokenizer is cached under ``<cache>/tokenizers/<name>-<key>`` where the
key (``bench.identity.artifact_key``) hashes the tokenizer's name, parameters and seed, the versions
of its code (``Tokenizer.component_versions``) and of torch/numpy, and the embeddings it was fitted on.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

from bench.atomic import cache_lock
from bench.config_schema import RunConfig
from bench.data.locate import cache_root
from bench.identity import artifact_key
from bench.plugins import TOKENIZERS
from tokenizers_zoo.base import (CodebookCollapseError, Tokenizer, TokenizerError, TrainingDivergedError,
                                 default_params)
from tokenizers_zoo.collision import collision_suffix, semantic_ids
from tokenizers_zoo.stats import code_stats, report_collapse, stats_table

# packages whose versions shape a fitted tokenizer (part of its cache key)
PACKAGES = ("torch", "numpy", "k-means-constrained")


def build_tokenizer(config: RunConfig) -> Tokenizer:
    """An unfitted tokenizer as a resolved config's ``tokenizer`` section describes it."""
    return TOKENIZERS.get(config.tokenizer.name).from_config(config)


def tokenizer_inputs(config: RunConfig) -> tuple[type[Tokenizer], bool, bool]:
    """(the config's tokenizer class, whether it reads text embeddings, whether it needs CF
    embeddings): what a run will compute, known from the class and its parameters without building
    a tokenizer (the run builds its one instance in the item-ID stage)."""
    klass = TOKENIZERS.get(config.tokenizer.name)
    return klass, klass.uses_text, klass.cf_needed(config.tokenizer[klass.name])


def array_sha256(array: np.ndarray | None) -> str | None:
    if array is None:
        return None
    array = np.ascontiguousarray(np.asarray(array, dtype=np.float32))
    digest = hashlib.sha256(f"{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def cache_key(tokenizer: Tokenizer, item_emb: np.ndarray, cf_emb: np.ndarray | None,
              cf_mask: np.ndarray | None = None) -> str:
    uses = tokenizer.uses_cf and cf_emb is not None
    return artifact_key(
        f"tokenizer/{tokenizer.name}",
        {"params": tokenizer.params, "seed": tokenizer.seed},
        type(tokenizer).component_versions(),
        PACKAGES,
        inputs={"item_emb": array_sha256(item_emb), "cf_emb": array_sha256(cf_emb) if uses else None,
                "cf_mask": array_sha256(np.asarray(cf_mask, dtype=np.float32)) if uses and cf_mask is not None else None},
    )


def cache_dir(config: RunConfig) -> Path:
    configured = config.tokenizer.cache_dir
    if configured:
        return Path(configured).expanduser()
    return cache_root() / "tokenizers"


def cache_path(config: RunConfig, item_emb: np.ndarray, cf_emb: np.ndarray | None = None,
               cf_mask: np.ndarray | None = None, tokenizer: Tokenizer | None = None) -> Path:
    """The cache folder of the config's tokenizer fitted on these inputs."""
    tokenizer = tokenizer or build_tokenizer(config)
    if not tokenizer.uses_cf:
        cf_emb = None
    return cache_dir(config) / f"{tokenizer.name}-{cache_key(tokenizer, item_emb, cf_emb, cf_mask)[:20]}"


def fit_tokenizer(
    config: RunConfig, item_emb: np.ndarray, cf_emb: np.ndarray | None = None, cache: bool = True, refit: bool = False,
    cf_mask: np.ndarray | None = None, tokenizer: Tokenizer | None = None,
) -> Tokenizer:
    """The tokenizer of ``config`` fitted on ``item_emb`` (and ``cf_emb``), loaded from the cache when there.

    ``tokenizer``: the unfitted tokenizer ``build_tokenizer(config)`` gave the caller (built once per run).
    ``tokenizer.source`` is the cache folder it was loaded from, else None (freshly fitted; then it
    is saved there when caching is on); ``tokenizer.cache_folder`` is that folder when caching is on.
    ``refit`` fits again and replaces the cached entry; ``cache=False`` (or ``tokenizer.cache: false``)
    neither reads nor writes the cache. A learned codebook that collapsed raises CodebookCollapseError
    unless ``tokenizer.allow_collapse`` (after caching the fit, so allowing it needs no new fit).
    """
    tokenizer = tokenizer or build_tokenizer(config)
    if not tokenizer.uses_cf:
        cf_emb = None
    use_cache = cache and config.tokenizer.cache
    path = cache_path(config, item_emb, cf_emb, cf_mask, tokenizer)
    if not use_cache:
        tokenizer.fit(item_emb, cf_emb, cf_mask)
        tokenizer.check_collapse()
        return tokenizer
    with cache_lock(path, f"the {tokenizer.name} tokenizer fit"):
        fitted = _cached_fit(tokenizer, path, item_emb, cf_emb, cf_mask, refit)
    fitted.check_collapse(str(path))
    return fitted


def _cached_fit(tokenizer: Tokenizer, path: Path, item_emb: np.ndarray, cf_emb: np.ndarray | None,
                cf_mask: np.ndarray | None, refit: bool) -> Tokenizer:
    if not refit and (path / "tokenizer.json").is_file():
        try:
            loaded = Tokenizer.load(path)
        except TokenizerError as err:
            print(f"warning: ignoring unreadable cached tokenizer ({err}); fitting again", file=sys.stderr)
        else:
            if len(loaded.codes()) == len(item_emb):
                loaded.device = tokenizer.device
                loaded.progress = tokenizer.progress
                loaded.collapse_threshold = tokenizer.collapse_threshold  # not part of the key
                loaded.allow_collapse = tokenizer.allow_collapse  # nor this
                report_collapse(loaded.name, loaded.stats()["collapse_warning"])
                loaded.cache_folder = path
                return loaded
    tokenizer.fit(item_emb, cf_emb, cf_mask)
    tokenizer.save(path)
    tokenizer.cache_folder = path
    return tokenizer


__all__ = [
    "TOKENIZERS",
    "CodebookCollapseError",
    "Tokenizer",
    "TokenizerError",
    "TrainingDivergedError",
    "build_tokenizer",
    "code_stats",
    "collision_suffix",
    "default_params",
    "fit_tokenizer",
    "semantic_ids",
    "stats_table",
]
