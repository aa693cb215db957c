"""Reader for the ``sequences.txt`` + ``items.jsonl`` folder format (P5 / S3-Rec numbering)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.data.types import DataError, SequenceDataset

SEQUENCES_FILE = "sequences.txt"
ITEMS_FILE = "items.jsonl"


def has_folder_format(folder: Path) -> bool:
    return (folder / SEQUENCES_FILE).is_file() and (folder / ITEMS_FILE).is_file()


def _nonempty_lines(path: Path):
    """(line number, stripped text) for every non-blank line; an empty file is an error."""
    seen = False
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if text:
                seen = True
                yield number, text
    if not seen:
        raise DataError(f"{path}: file is empty")


def read_items(path: Path) -> tuple[list[str], list[dict]]:
    """Item ids (as strings, in ascending numeric order) and their metadata."""
    records: dict[int, dict] = {}
    for number, text in _nonempty_lines(path):
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{number}: not valid JSON ({err.msg})") from err
        if not isinstance(record, dict) or "item_id" not in record:
            raise DataError(f"{path}:{number}: expected a JSON object with an 'item_id' field")
        try:
            item_id = int(record["item_id"])
        except (TypeError, ValueError) as err:
            raise DataError(f"{path}:{number}: item_id {record['item_id']!r} is not an integer") from err
        if item_id in records:
            raise DataError(f"{path}:{number}: item_id {item_id} appears twice")
        records[item_id] = record
    ids = sorted(records)
    return [str(i) for i in ids], [records[i] for i in ids]


def read_sequences(path: Path, index_of: dict[str, int]) -> tuple[list[str], list[np.ndarray]]:
    """User ids and their item sequences mapped to internal indices."""
    users: list[str] = []
    sequences: list[np.ndarray] = []
    seen_users: set[str] = set()
    for number, text in _nonempty_lines(path):
        fields = text.split()
        if len(fields) < 2:
            raise DataError(f"{path}:{number}: expected '<user_id> <item_id> ...', got {text[:80]!r}")
        user, items = fields[0], fields[1:]
        if user in seen_users:
            raise DataError(f"{path}:{number}: user {user} appears on more than one line")
        seen_users.add(user)
        try:
            sequence = [index_of[str(int(item))] for item in items]
        except ValueError:
            bad = next(i for i in items if not i.lstrip("-").isdigit())
            raise DataError(f"{path}:{number}: item id {bad!r} is not an integer") from None
        except KeyError:
            bad = next(i for i in items if str(int(i)) not in index_of)
            raise DataError(f"{path}:{number}: item id {bad} is not in {ITEMS_FILE}") from None
        users.append(user)
        sequences.append(np.asarray(sequence, dtype=np.int64))
    return users, sequences


def load_folder(folder: Path, name: str) -> SequenceDataset:
    item_ids, item_meta = read_items(folder / ITEMS_FILE)
    index_of = {item: i for i, item in enumerate(item_ids)}
    user_ids, sequences = read_sequences(folder / SEQUENCES_FILE, index_of)
    return SequenceDataset(name, user_ids, item_ids, sequences, item_meta, source=str(folder))
