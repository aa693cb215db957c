"""Reader for the raw Amazon 2014 files: ``reviews_<Cat>_5.json.gz`` and ``meta_<Cat>.json.gz``."""
from __future__ import annotations

import ast
import gzip
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.data.types import DataError, SequenceDataset


def reviews_file(category: str) -> str:
    return f"reviews_{category}_5.json.gz"


def meta_file(category: str) -> str:
    return f"meta_{category}.json.gz"


def _parse_record(path: Path, number: int, text: str) -> dict:
    """One line: strict JSON (reviews) or a Python dict literal (the 2014 meta files)."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        try:
            record = ast.literal_eval(text)
        except (ValueError, SyntaxError) as err:
            raise DataError(f"{path}:{number}: neither JSON nor a Python dict literal") from err
    if not isinstance(record, dict):
        raise DataError(f"{path}:{number}: expected an object, got {type(record).__name__}")
    return record


def _records(path: Path, desc: str):
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            empty = True
            for number, line in enumerate(tqdm(handle, desc=desc, unit=" lines", leave=False), 1):
                if line.strip():
                    empty = False
                    yield number, _parse_record(path, number, line)
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read gzip file ({err})") from err
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text inside the gzip file") from None
    if empty:
        raise DataError(f"{path}: file is empty")


def k_core(interactions: list[tuple[str, str, int]], k: int) -> list[tuple[str, str, int]]:
    """Repeatedly drop users and items with fewer than ``k`` interactions."""
    while True:
        users = Counter(u for u, _, _ in interactions)
        items = Counter(i for _, i, _ in interactions)
        kept = [r for r in interactions if users[r[0]] >= k and items[r[1]] >= k]
        if len(kept) == len(interactions):
            return kept
        interactions = kept


def load_raw(reviews_path: Path, meta_path: Path | None, name: str, core: int = 5) -> SequenceDataset:
    interactions = []
    for number, record in _records(reviews_path, f"reading {reviews_path.name}"):
        try:
            interactions.append(
                (str(record["reviewerID"]), str(record["asin"]), int(record["unixReviewTime"]))
            )
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(
                f"{reviews_path}:{number}: needs reviewerID, asin and an integer unixReviewTime ({err})"
            ) from err
    interactions = k_core(interactions, core)
    if not interactions:
        raise DataError(f"{reviews_path}: no interactions left after {core}-core filtering")

    by_user: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for order, (user, item, time) in enumerate(interactions):
        by_user[user].append((time, order, item))  # file order breaks ties in time
    item_index: dict[str, int] = {}
    user_ids, sequences = [], []
    for user, events in by_user.items():
        events.sort()
        sequence = [item_index.setdefault(item, len(item_index)) for _, _, item in events]
        user_ids.append(user)
        sequences.append(np.asarray(sequence, dtype=np.int64))
    item_ids = list(item_index)

    meta: dict[str, dict] = {}
    if meta_path is not None:
        for _, record in _records(meta_path, f"reading {meta_path.name}"):
            asin = record.get("asin")
            if asin in item_index:
                meta[asin] = {k: record[k] for k in ("title", "brand", "categories") if k in record}
    item_meta = [{"asin": asin, **meta.get(asin, {})} for asin in item_ids]
    return SequenceDataset(name, user_ids, item_ids, sequences, item_meta, source=str(reviews_path))
