"""MovieLens-100k from the copy shipped inside the installed ``recbole`` package (no download)."""
from __future__ import annotations

import csv
import importlib.util
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.data.types import DataError, SequenceDataset


def recbole_ml100k_dir() -> Path:
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("ml-100k is read from the recbole package, which is not installed (pip install recbole==1.2.0)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"
    if not (folder / "ml-100k.inter").is_file():
        raise DataError(f"the recbole package has no ml-100k example data at {folder}")
    return folder


def _rows(path: Path) -> list[dict]:
    """Rows of a RecBole atomic file, keyed by field name without its ``:type`` suffix."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [h.split(":")[0] for h in next(reader)]
        return [dict(zip(header, row)) for row in reader]


def load_ml100k(folder: Path | None = None, name: str = "ml-100k") -> SequenceDataset:
    folder = folder or recbole_ml100k_dir()
    items = {row["item_id"]: row for row in _rows(folder / "ml-100k.item")}
    item_ids = sorted(items, key=int)
    index_of = {item: i for i, item in enumerate(item_ids)}
    events: dict[str, list[tuple[float, int, int]]] = defaultdict(list)
    for order, row in enumerate(_rows(folder / "ml-100k.inter")):
        if row["item_id"] not in index_of:
            raise DataError(f"{folder / 'ml-100k.inter'}: item {row['item_id']} is not in ml-100k.item")
        events[row["user_id"]].append((float(row["timestamp"]), order, index_of[row["item_id"]]))
    user_ids = sorted(events, key=int)
    sequences = [np.asarray([i for _, _, i in sorted(events[u])], dtype=np.int64) for u in user_ids]
    item_meta = [
        {
            "title": items[i]["movie_title"],
            "year": items[i]["release_year"],
            "genres": items[i]["class"].split(),
        }
        for i in item_ids
    ]
    return SequenceDataset(name, user_ids, item_ids, sequences, item_meta, source=str(folder))
