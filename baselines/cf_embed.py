"""Collaborative item embeddings for LETTER: a SASRec trained on the training parts only.

``cf_item_embeddings(split, config)`` returns SASRec's item embedding table as a float32 array
``[n_items, hidden_size]`` (hidden size 32, LETTER's setting), row ``i`` = harness item ``i``.

Never trained on validation or test targets: the sequences handed to RecBole are the split's
training parts (each user's sequence minus its last two items); the validation and test targets
are not in the exported files at all. RecBole then holds out the last item of each training part
(leave-one-out ``valid_only``) to pick the epoch by NDCG@10, and trains on the prefixes before it.
Every catalogue item gets a row: the exported ``.item`` file lists them all, so an item that
occurs in no training part (only as some user's valid/test target) still has an embedding, which
is then only ever a negative of the CE loss, never a positive.

Cached under ``cache_root()/cf_embed``, keyed (``bench.identity.artifact_key``) by the split
fingerprint, the seed, the resolved settings, ``CF_EMBED_VERSION``, the RecBole adapter's and data
preparation's versions and the RecBole/torch/NumPy/pandas versions.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from baselines.recbole_adapter import train_sequential
from baselines.recbole_data import PACKAGES as RECBOLE_PACKAGES, RECBOLE_DATA_VERSION
from baselines.recbole_models import ADAPTER_VERSION
from bench.atomic import atomic_write, cache_lock
from bench.config import deep_merge
from bench.config_schema import CF_MODEL, RunConfig
from bench.data.locate import cache_root
from bench.device import resolve_device
from bench.errors import first_line
from bench.identity import artifact_key
from bench.plugins import METHODS
from bench.split import LeaveOneOutSplit

CF_EMBED_VERSION = 1  # bump when a change makes the CF embeddings differ (what is trained, how rows map)
EMBEDDINGS_FILE = "item_embeddings.npy"
INFO_FILE = "info.json"


def cf_settings(config: RunConfig) -> dict:
    """The ``baseline`` section with ``baseline.cf_embed`` merged over it (model: SASRec), as plain
    values (they are hashed into the cache key as given)."""
    baseline = config.plain("baseline")
    overrides = baseline.pop("cf_embed", None) or {}
    return deep_merge(baseline, overrides)


def component_versions() -> dict[str, int]:
    return {"cf_embed": CF_EMBED_VERSION, "recbole_adapter": ADAPTER_VERSION, "recbole_data": RECBOLE_DATA_VERSION}


def cache_key(split: LeaveOneOutSplit, config: RunConfig) -> str:
    settings = cf_settings(config)
    settings.pop("verbose", None)
    return artifact_key(
        "cf_embed", {"model": "SASRec", "seed": config.seed, "settings": settings},
        component_versions(), RECBOLE_PACKAGES, inputs={"split": split.fingerprint["sha256"]}, length=16,
    )


def cf_embeddings_dir(split: LeaveOneOutSplit, config: RunConfig) -> Path:
    return cache_root() / "cf_embed" / f"{split.dataset.name}-{cache_key(split, config)}"


def train_cf_embeddings(
    split: LeaveOneOutSplit, config: RunConfig, work_dir: str | os.PathLike | None = None, force: bool = False
) -> tuple[np.ndarray, Path, dict]:
    """(embeddings [n_items, d] float32, the .npy path, facts about the training); cached."""
    folder = cf_embeddings_dir(split, config)
    with cache_lock(folder, "the CF item embeddings"):
        return _cached_cf_embeddings(split, config, folder, work_dir, force)


def _cached_cf_embeddings(split: LeaveOneOutSplit, config: RunConfig, folder: Path,
                          work_dir: str | os.PathLike | None, force: bool) -> tuple[np.ndarray, Path, dict]:
    path = folder / EMBEDDINGS_FILE
    if path.is_file() and not force:
        try:
            info = json.loads((folder / INFO_FILE).read_text()) if (folder / INFO_FILE).is_file() else {}
            return np.load(path, allow_pickle=False), path, {**info, "cache_hit": True}
        except (OSError, ValueError) as err:  # ValueError: a truncated file, or one holding pickled objects
            print(f"warning: ignoring unreadable cached CF embeddings {path} ({first_line(err, 120)}); "
                  "computing them again", file=sys.stderr)

    settings = cf_settings(config)
    spec = METHODS.get(CF_MODEL).spec_for(CF_MODEL)
    scratch = None
    if work_dir is None:
        scratch = tempfile.TemporaryDirectory(prefix="cf-embed-")
        work_dir = scratch.name
    try:
        trained = train_sequential(
            spec, settings, split.train_sequences, split.n_items,
            seed=config.seed, ks=[10], device=resolve_device(config.device), work_dir=Path(work_dir),
            leave_one_mode="valid_only", label=f"CF-SASRec (d={settings['hidden_size']})",
        )
    finally:
        if scratch is not None:
            scratch.cleanup()
    weight = trained.model.item_embedding.weight.detach().cpu().numpy()
    rows = trained.data.harness_to_item
    if len(rows) != split.n_items or (rows < 0).any():
        raise RuntimeError("RecBole's item vocabulary does not cover the harness catalogue")
    embeddings = np.ascontiguousarray(weight[rows], dtype=np.float32)

    info = {
        **{k: v for k, v in trained.info.items() if k != "valid_curve"},
        "valid_curve": trained.info.get("valid_curve"),
        "dataset": split.dataset.name,
        "split_sha256": split.fingerprint["sha256"],
        "shape": list(embeddings.shape),
        "trained_on": "training parts only (each user's sequence minus its valid and test targets); "
        "RecBole leave-one-out valid_only on them for early stopping",
        "items_without_training_occurrence": int((split.train_item_counts == 0).sum()),
    }
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_save(folder, embeddings, info)
    return embeddings, path, {**info, "cache_hit": False}


def cf_item_embeddings(split: LeaveOneOutSplit, config: RunConfig, work_dir: str | os.PathLike | None = None) -> np.ndarray:
    """SASRec item embeddings ``[n_items, baseline.cf_embed.hidden_size]`` (float32), row i = item i."""
    return train_cf_embeddings(split, config, work_dir)[0]


def _atomic_save(folder: Path, embeddings: np.ndarray, info: dict) -> None:
    atomic_write(folder / EMBEDDINGS_FILE, lambda h: np.save(h, embeddings, allow_pickle=False))
    atomic_write(folder / INFO_FILE, json.dumps(info, indent=1, default=str))
