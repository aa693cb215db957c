"""The harness's sequences as a RecBole dataset: export, prepare, map ids back.

RecBole reads atomic files (``<name>.inter`` with ``user_id, item_id, timestamp``; the timestamp is
each interaction's position in its user's sequence, see ``baselines.atomic_export``) plus a
``<name>.item`` file that lists every catalogue item, so RecBole's item vocabulary is the harness's
whole catalogue (also items that occur in no exported interaction) and every harness item has a
RecBole id. Tokens are the harness's internal indices, so ids map straight back.

RecBole's prepared data (``SequentialDataset`` after data augmentation and the leave-one-out split)
is built afresh by every call and never read back from a file. Its objects can only be stored as a
pickle, which runs whatever a crafted file says (DESIGN.md, "Files that can carry code"), and a cache
saves too little for a safe rebuild format: with one thread, preparing takes ~2 s on ml-100k and
~3 s on Amazon Beauty against 0.4-0.6 s to load the pickle (126 / 227 MB per entry), and a Beauty
run trains for 800-3700 s. The exported atomic files go to a folder named by a key (a hash of the
exported sequences, the leave-one-out mode, the maximum sequence length, ``RECBOLE_DATA_VERSION``
and the RecBole/torch/NumPy/pandas versions), written as a whole on every call: RecBole reads only
those text files, and anything else in the folder (an old ``prepared.pkl``) is never opened and
goes when the folder is replaced.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from baselines import recbole_compat
from bench.atomic import atomic_folder
from baselines.atomic_export import write_inter_file
from bench.data.locate import cache_root
from bench.identity import artifact_key, package_versions_of
from bench.split import LeaveOneOutSplit

RECBOLE_DATA_VERSION = 1  # bump when what is exported (or how RecBole's data is built from it) changes
# packages whose versions shape RecBole's prepared data and models (part of every RecBole cache key)
PACKAGES = ("recbole", "torch", "numpy", "pandas")
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
    key: str
    cache_hit: bool = False  # always False: prepared data is rebuilt by every call, never loaded
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
        """Use this run's RecBole config (the prepared objects carry the one they were built with)."""
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
    """RecBole's prepared data for ``sequences`` (per user, harness item indices, oldest first),
    exported and built from scratch on every call (nothing prepared is read back, see above).

    With ``split``, ``sequences`` must be the split's full sequences. The atomic files are kept in
    the keyed folder under the cache root (where a run record can point at what RecBole read),
    or under ``scratch_dir`` when ``use_cache`` is false.
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
    # written as a whole (what was there, a concurrent run's export or an old file, is replaced);
    # RecBole reads the staging copy, whose folder already has the dataset's name
    with atomic_folder(folder) as staging:
        write_inter_file(staging / f"{name}.inter", split.dataset.sequences if split is not None else sequences)
        write_item_file(staging, name, n_items)
        (staging / "key.json").write_text(json.dumps(key_material, indent=1, sort_keys=True))
        dataset, parts = _build(name, staging.parent, settings)
    return PreparedData(dataset, parts, name, folder, key=key)
