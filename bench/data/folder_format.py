"""Reader for the ``sequences.txt`` + ``items.jsonl`` folder format (P5 / S3-Rec numbering)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from bench.data.types import DataError, SequenceDataset

SEQUENCES_FILE = "sequences.txt"
ITEMS_FILE = "items.jsonl"


def has_folder_format(folder: Path) -> bool:
    return (folder / SEQUENCES_FILE).is_file() and (folder / ITEMS_FILE).is_file()


def _nonempty_lines(path: Path):
    """(line number, stripped text) for every non-blank line; an empty file is an error."""
    seen, number = False, 0
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                text = line.strip()
                if text:
                    seen = True
                    yield number, text
    except UnicodeDecodeError:
        raise DataError(f"{path}:{number + 1}: not UTF-8 text (is this the right file?)") from None
    if not seen:
        raise DataError(f"{path}: file is empty")


_ID = re.compile(r"[0-9]+")


def parse_id(value) -> int | None:
    """An id written as ASCII digits (or a JSON integer); None for anything else: Python's int()
    would also read '1_0' as 10 and ' 7', '٣' or '+7' as numbers."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    if isinstance(value, str) and _ID.fullmatch(value):
        return int(value)
    return None


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
        item_id = parse_id(record["item_id"])
        if item_id is None:
            raise DataError(f"{path}:{number}: item_id {record['item_id']!r} is not a non-negative integer")
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
        sequence = []
        for item in items:
            parsed = parse_id(item)
            if parsed is None:
                raise DataError(f"{path}:{number}: item id {item!r} is not a non-negative integer (ASCII digits)")
            if str(parsed) not in index_of:
                raise DataError(f"{path}:{number}: item id {item} is not in {ITEMS_FILE}")
            sequence.append(index_of[str(parsed)])
        users.append(user)
        sequences.append(np.asarray(sequence, dtype=np.int64))
    return users, sequences


def load_folder(folder: Path, name: str) -> SequenceDataset:
    item_ids, item_meta = read_items(folder / ITEMS_FILE)
    index_of = {item: i for i, item in enumerate(item_ids)}
    user_ids, sequences = read_sequences(folder / SEQUENCES_FILE, index_of)
    return SequenceDataset(name, user_ids, item_ids, sequences, item_meta, source=str(folder))
