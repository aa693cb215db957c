"""The cold-start protocol (TIGER Sec. 4.3): a seeded share of the items is *unseen*: every
interaction with one of them is removed from every user's training and validation part, while the
test targets stay as they are. Methods then never train on an unseen item, and a user whose test
target is unseen (a *cold user*) can only be served by a method that knows items from their text.

Config (``coldstart``): ``enabled``; ``fraction`` of the distinct test-target items made unseen
(default 5 %); ``seed`` (null = the run's seed); ``epsilon`` (TIGER's share of unseen items a
generative model may mix into its top-K). Users left with fewer than 4 items are dropped (counted
in the record): 4 is what RecBole's leave-one-out needs to give a user the harness's validation
and test targets, so every method sees the same users (version 2; version 1 kept users with 3).
ID-based methods (descriptor ``id_based``: RecBole's models) have no learned embedding for an
unseen item, so in this protocol unseen items are removed from their rankings and they score 0 on
cold users; the record says so.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from bench.data.types import SequenceDataset

# part of every cold-start run's components; 3: generative tokenizers are fitted on the seen items only
# and encode the unseen ones frozen (2: the fit saw every item's text, the unseen ones included)
COLDSTART_VERSION = 3
MIN_LENGTH = 4  # two training items (RecBole's first training prefix needs them), validation, test


@dataclass
class ColdStart:
    dataset: SequenceDataset  # the sequences every method sees
    unseen: np.ndarray  # item indices with no training or validation interaction
    dropped_users: int  # users left with fewer than MIN_LENGTH items

    def facts(self) -> dict:
        return {"unseen_items": int(len(self.unseen)), "dropped_users": self.dropped_users,
                "unseen_item_sha": _sha(self.unseen)}


def _sha(array: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.asarray(array, dtype="<i8").tobytes()).hexdigest()[:16]


def choose_unseen(dataset: SequenceDataset, fraction: float, seed: int) -> np.ndarray:
    """A seeded ``fraction`` (at least one) of the distinct test-target items, sorted."""
    targets = np.unique([int(s[-1]) for s in dataset.sequences if len(s)])
    count = max(1, int(round(fraction * len(targets))))
    return np.sort(np.random.default_rng(seed).choice(targets, size=min(count, len(targets)), replace=False))


def apply_coldstart(dataset: SequenceDataset, fraction: float, seed: int) -> ColdStart:
    """``dataset`` with the unseen items removed from every sequence but its last item (the test target)."""
    unseen = choose_unseen(dataset, fraction, seed)
    is_unseen = np.zeros(dataset.n_items, dtype=bool)
    is_unseen[unseen] = True
    users, sequences, dropped = [], [], 0
    for user, sequence in zip(dataset.user_ids, dataset.sequences):
        sequence = np.asarray(sequence, dtype=np.int64)
        prefix = sequence[:-1][~is_unseen[sequence[:-1]]]
        kept = np.concatenate([prefix, sequence[-1:]])
        if len(kept) < MIN_LENGTH:
            dropped += 1
            continue
        users.append(user)
        sequences.append(kept)
    cold = replace(dataset, user_ids=users, sequences=sequences,
                   source=f"{dataset.source} (cold-start: {len(unseen)} unseen items)")
    return ColdStart(cold, unseen, dropped)


def cold_users(test_targets: np.ndarray, unseen: np.ndarray) -> np.ndarray:
    """Indices of the users whose test target is an unseen item."""
    return np.flatnonzero(np.isin(test_targets, unseen))


def drop_unseen(rankings: np.ndarray, unseen: np.ndarray) -> np.ndarray:
    """Rankings with the unseen items removed (later items move up; -1 padded)."""
    keep = ~np.isin(rankings, unseen) & (rankings >= 0)
    out = np.full_like(rankings, -1)
    for row in range(len(rankings)):
        items = rankings[row][keep[row]]
        out[row, :len(items)] = items
    return out
