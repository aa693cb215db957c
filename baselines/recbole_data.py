"""The harness's sequences as a RecBole dataset: export, prepare once, cache, map ids back.

RecBole reads atomic files (``<name>.inter`` with ``user_id, item_id, timestamp``; the timestamp is
each interaction's position in its user's sequence, see ``bench.atomic_export``) plus a
``<name>.item`` file that lists every catalogue item, so RecBole's item vocabulary is the harness's
whole catalogue (also items that occur in no exported interaction) and every harness item has a
RecBole id. Tokens are the harness's internal indices, so ids map straight back.

RecBole's prepared data (``SequentialDataset`` after data augmentation and the leave-one-out split)
is pickled under ``bench.data.locate.cache_root() / "recbole"``, keyed by a hash of the exported
sequences (the split fingerprint), the leave-one-out mode, the maximum sequence length,
``RECBOLE_DATA_VERSION`` and the RecBole/torch/NumPy/pandas versions, so a second run skips the
export and the preprocessing; an entry that fails to load is reported and rebuilt.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import pickle
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from baselines import recbole_compat
from bench.atomic import atomic_folder
from bench.atomic_export import write_inter_file
from bench.data.locate import cache_root
from bench.identity import artifact_key, package_versions_of
from bench.split import LeaveOneOutSplit

RECBOLE_DATA_VERSION = 1  # bump when what is cached (or how it is built) changes
# packages whose versions shape RecBole's prepared data and models (part of every RecBole cache key)
PACKAGES = ("recbole", "torch", "numpy", "pandas")
PREPARED_FILE = "prepared.pkl"
USER_FIELD, ITEM_FIELD, TIME_FIELD = "user_id", "item_id", "timestamp"


def recbole_cache_dir() -> Path:
    return cache_root() / "recbole"


def eval_args(leave_one_mode: str = "valid_and_test") -> dict:
    """RecBole's split settings for the harness protocol: per user, by time, full ranking."""
    return {"split": {"LS": leave_one_mode}, "order": "TO", "group_by": "user", "mode": "full"}


def dataset_settings(max_seq_len: int, leave_one_mode: str) -> dict:
    """The RecBole settings that shape the prepared dataset (part of its cache key)."""
    return {
        "load_col": {"inter": [USER_FIELD, ITEM_FIELD, TIME_FIELD], "item": [ITEM_FIELD]},
        "USER_ID_FIELD": USER_FIELD,
        "ITEM_ID_FIELD": ITEM_FIELD,
        "TIME_FIELD": TIME_FIELD,
        "MAX_ITEM_LIST_LENGTH": int(max_seq_len),
        "eval_args": eval_args(leave_one_mode),
        "repeatable": True,
        "rm_dup_inter": None,
        "filter_inter_by_user_or_item": False,
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
    }


def sequences_digest(sequences: Sequence[np.ndarray], n_items: int) -> str:
    digest = hashlib.sha256(f"{len(sequences)}|{n_items}".encode())
    for sequence in sequences:
        digest.update(np.asarray(sequence, dtype="<i8").tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def write_item_file(folder: Path, name: str, n_items: int) -> None:
    with (folder / f"{name}.item").open("w", encoding="utf-8") as handle:
        handle.write(f"{ITEM_FIELD}:token\n")
        handle.writelines(f"{item}\n" for item in range(n_items))


@dataclass
class PreparedData:
    """RecBole's dataset and its (train, valid, test) parts, with the maps back to harness indices."""

    dataset: object  # recbole SequentialDataset
    parts: tuple  # built (train, valid, test) datasets
    name: str
    folder: Path  # where the atomic files are
    cache_hit: bool
    key: str
    user_to_harness: np.ndarray = field(init=False)  # RecBole user id -> harness user (-1 for padding)
    item_to_harness: np.ndarray = field(init=False)  # RecBole item id -> harness item (-1 for padding)
    harness_to_item: np.ndarray = field(init=False)  # harness item -> RecBole item id

    def __post_init__(self):
        self.user_to_harness = _token_map(self.dataset.field2id_token[USER_FIELD])
        self.item_to_harness = _token_map(self.dataset.field2id_token[ITEM_FIELD])
        self.harness_to_item = np.full(int(self.item_to_harness.max()) + 1, -1, dtype=np.int64)
        known = self.item_to_harness >= 0
        self.harness_to_item[self.item_to_harness[known]] = np.flatnonzero(known)

    def set_config(self, rb_config) -> None:
        """Use this run's RecBole config (the cached objects carry the one they were built with)."""
        self.dataset.config = rb_config
        for part in self.parts:
            part.config = rb_config

    def targets(self, part: int) -> tuple[np.ndarray, np.ndarray]:
        """Harness (users, target items) of one built part, one row per RecBole interaction."""
        inter = self.parts[part].inter_feat
        users = self.user_to_harness[inter[USER_FIELD].numpy()]
        items = self.item_to_harness[inter[ITEM_FIELD].numpy()]
        return users, items

    def histories(self, part: int) -> list[np.ndarray]:
        """Harness item histories (oldest first) of one built part's interactions, in row order."""
        inter = self.parts[part].inter_feat
        lists = inter[f"{ITEM_FIELD}_list"].numpy()
        lengths = inter["item_length"].numpy()
        return [self.item_to_harness[row[:n]] for row, n in zip(lists, lengths)]


def _token_map(tokens) -> np.ndarray:
    mapped = np.full(len(tokens), -1, dtype=np.int64)
    for rb_id, token in enumerate(tokens):
        if rb_id == 0:  # '[PAD]'
            continue
        mapped[rb_id] = int(token)
    return mapped


@contextlib.contextmanager
def quiet_recbole():
    """Silence RecBole's known-harmless warnings under pandas 3 / NumPy 2 (no-op NaN filling on files
    that have no NaN, read-only arrays, deprecated ``inplace=``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*chained assignment.*")
        warnings.filterwarnings("ignore", message=".*NumPy array is not writable.*")
        warnings.filterwarnings("ignore", message=".*inplace keyword.*")  # pandas 3.1 deprecation
        warnings.filterwarnings("ignore", message=".*__array_wrap__.*")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"recbole\..*")
        yield


def _build(name: str, data_path: Path, settings: dict):
    """Run RecBole's own dataset creation and split on the exported files."""
    from recbole.data.dataset import SequentialDataset

    rb_config = recbole_compat.make_config(
        "SASRec", name, {**settings, "data_path": str(data_path), "train_neg_sample_args": None}
    )
    with quiet_recbole():
        dataset = SequentialDataset(rb_config)
        parts = tuple(dataset.build())
    return dataset, parts


def prepare(
    sequences: Sequence[np.ndarray],
    n_items: int,
    *,
    max_seq_len: int,
    leave_one_mode: str = "valid_and_test",
    split: LeaveOneOutSplit | None = None,
    use_cache: bool = True,
    scratch_dir: Path | None = None,
) -> PreparedData:
    """RecBole's prepared data for ``sequences`` (per user, harness item indices, oldest first).

    With ``split``, ``sequences`` must be the split's full sequences. Cached under the cache root
    unless ``use_cache`` is false; then everything is written under ``scratch_dir``.
    """
    recbole_compat.apply()
    settings = dataset_settings(max_seq_len, leave_one_mode)
    key_material = {
        "components": {"recbole_data": RECBOLE_DATA_VERSION},
        "packages": package_versions_of(PACKAGES),
        "sequences": sequences_digest(sequences, n_items),
        "settings": settings,
        "dataset_class": "SequentialDataset",
    }
    key = artifact_key("recbole_data", {"settings": settings, "dataset_class": "SequentialDataset"},
                       key_material["components"], PACKAGES, inputs={"sequences": key_material["sequences"]},
                       length=20)
    name = f"gb_{key}"  # unique, and never a name RecBole would try to download
    root = recbole_cache_dir() if use_cache else Path(scratch_dir or tempfile.mkdtemp(prefix="recbole-"))
    folder = root / name
    pickled = folder / PREPARED_FILE
    if use_cache and pickled.is_file():
        try:
            with pickled.open("rb") as handle:
                dataset, parts = pickle.load(handle)
            return PreparedData(dataset, parts, name, folder, cache_hit=True, key=key)
        except Exception as err:  # noqa: BLE001 - a truncated or stale pickle: say so, rebuild below
            print(f"warning: cached RecBole dataset {pickled} cannot be loaded "
                  f"({type(err).__name__}: {err}); preparing it again", file=sys.stderr)

    # written as a whole (a concurrent run that finished first is replaced); RecBole reads the staging
    # copy, whose folder already has the dataset's name
    with atomic_folder(folder) as staging:
        write_inter_file(staging / f"{name}.inter", split.dataset.sequences if split is not None else sequences)
        write_item_file(staging, name, n_items)
        (staging / "key.json").write_text(json.dumps(key_material, indent=1, sort_keys=True))
        dataset, parts = _build(name, staging.parent, settings)
        if use_cache:
            with (staging / PREPARED_FILE).open("wb") as handle:
                pickle.dump((dataset, parts), handle, protocol=pickle.HIGHEST_PROTOCOL)
    return PreparedData(dataset, parts, name, folder, cache_hit=False, key=key)
