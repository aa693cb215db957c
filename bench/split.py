"""Leave-one-out split (TIGER/LETTER protocol), the one object every method consumes.

Per user: the last item is the test target, the second-to-last the validation target, the rest is
training. Training examples are every prefix of the training part (target = the item after the
prefix); every history is truncated to the last ``max_history`` items.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from bench.data.types import DataError, SequenceDataset

MIN_SEQUENCE_LENGTH = 3  # one training item, one validation target, one test target


@dataclass(frozen=True)
class HistoryBatch:
    """Histories as a right-aligned matrix: ``items[u, -lengths[u]:]`` are user ``u``'s items, -1 pads."""

    items: np.ndarray  # [n, max_history] int64, left-padded with -1
    lengths: np.ndarray  # [n]
    users: np.ndarray  # [n] internal user indices
    targets: np.ndarray  # [n] the item to predict


def _pad_left(histories: list[np.ndarray], width: int) -> tuple[np.ndarray, np.ndarray]:
    items = np.full((len(histories), width), -1, dtype=np.int64)
    lengths = np.zeros(len(histories), dtype=np.int64)
    for row, history in enumerate(histories):
        history = history[-width:]
        lengths[row] = len(history)
        if len(history):
            items[row, width - len(history):] = history
    return items, lengths


@dataclass(frozen=True)
class LeaveOneOutSplit:
    dataset: SequenceDataset
    max_history: int = 20

    def __post_init__(self):
        short = [u for u, s in enumerate(self.dataset.sequences) if len(s) < MIN_SEQUENCE_LENGTH]
        if short:
            user = self.dataset.user_ids[short[0]]
            raise DataError(
                f"{self.dataset.name}: {len(short)} users have fewer than {MIN_SEQUENCE_LENGTH} "
                f"interactions (first: user {user}); leave-one-out needs at least {MIN_SEQUENCE_LENGTH}"
            )
        if self.max_history < 1:
            raise ValueError("max_history must be at least 1")

    @property
    def n_users(self) -> int:
        return self.dataset.n_users

    @property
    def n_items(self) -> int:
        return self.dataset.n_items

    @cached_property
    def train_sequences(self) -> list[np.ndarray]:
        """Each user's training part: the full sequence minus the last two items."""
        return [s[:-2] for s in self.dataset.sequences]

    @cached_property
    def valid_targets(self) -> np.ndarray:
        return np.array([s[-2] for s in self.dataset.sequences], dtype=np.int64)

    @cached_property
    def test_targets(self) -> np.ndarray:
        return np.array([s[-1] for s in self.dataset.sequences], dtype=np.int64)

    def targets(self, stage: str) -> np.ndarray:
        return {"valid": self.valid_targets, "test": self.test_targets}[stage]

    def eval_batch(self, stage: str) -> HistoryBatch:
        """Per user the history before the ``stage`` ('valid' or 'test') target, truncated."""
        if stage not in ("valid", "test"):
            raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")
        cut = 2 if stage == "valid" else 1
        histories = [s[:-cut] for s in self.dataset.sequences]
        items, lengths = _pad_left(histories, self.max_history)
        users = np.arange(self.n_users, dtype=np.int64)
        return HistoryBatch(items, lengths, users, self.targets(stage))

    @cached_property
    def train_examples(self) -> HistoryBatch:
        """Every prefix of every training part: history = items before t (truncated), target = item t."""
        histories, users, targets = [], [], []
        for user, sequence in enumerate(self.train_sequences):
            for t in range(1, len(sequence)):
                histories.append(sequence[max(0, t - self.max_history):t])
                users.append(user)
                targets.append(sequence[t])
        items, lengths = _pad_left(histories, self.max_history)
        return HistoryBatch(
            items, lengths, np.asarray(users, dtype=np.int64), np.asarray(targets, dtype=np.int64)
        )

    @cached_property
    def train_item_counts(self) -> np.ndarray:
        """How often each item occurs in the training parts (what popularity may use)."""
        counts = np.zeros(self.n_items, dtype=np.int64)
        for sequence in self.train_sequences:
            np.add.at(counts, sequence, 1)
        return counts

    @cached_property
    def fingerprint(self) -> dict:
        """Counts plus a hash of every user's sequence (hence of every target) and the history cap."""
        digest = hashlib.sha256()
        digest.update(f"{self.dataset.name}|{self.n_users}|{self.n_items}|{self.max_history}".encode())
        for sequence in self.dataset.sequences:
            digest.update(np.asarray(sequence, dtype="<i8").tobytes())
            digest.update(b"|")
        stats = self.dataset.stats()
        return {
            "name": self.dataset.name,
            "users": stats["users"],
            "items": stats["items"],
            "interactions": stats["interactions"],
            "train_examples": int(sum(max(0, len(s) - 1) for s in self.train_sequences)),
            "max_history": self.max_history,
            "split": "leave-one-out",
            "sha256": digest.hexdigest(),
        }
