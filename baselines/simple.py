"""Reference recommenders that make the whole path run before the real models exist."""
from __future__ import annotations

import numpy as np

from bench.config_schema import RunConfig
from bench.methods import Recommender
from bench.metrics import compact_rankings
from bench.split import LeaveOneOutSplit


class MostPopular(Recommender):
    """Every user gets the items most frequent in the training parts (ties: lower index first)."""

    version = 1

    @classmethod
    def label(cls, config: RunConfig) -> str:
        return "Pop"

    def fit(self, split: LeaveOneOutSplit) -> None:
        self.order = np.argsort(-split.train_item_counts, kind="stable")

    def max_history(self) -> None:
        return None

    def rank(self, split: LeaveOneOutSplit, stage: str, k: int) -> np.ndarray:
        return np.tile(self.order[:k], (split.n_users, 1))


class RandomItems(Recommender):
    """Each user gets k distinct items drawn uniformly from the catalogue (seeded)."""

    version = 1

    @classmethod
    def label(cls, config: RunConfig) -> str:
        return "Random"

    def fit(self, split: LeaveOneOutSplit) -> None:
        self.rng = np.random.default_rng(self.config.seed)

    def max_history(self) -> None:
        return None

    def rank(self, split: LeaveOneOutSplit, stage: str, k: int) -> np.ndarray:
        k = min(k, split.n_items)
        # oversample with replacement, keep first occurrences; redraw the rare rows left short
        candidates = self.rng.integers(0, split.n_items, size=(split.n_users, 3 * k))
        ranked = compact_rankings(candidates)[:, :k]
        for row in np.flatnonzero((ranked < 0).any(axis=1)):
            ranked[row] = self.rng.choice(split.n_items, size=k, replace=False)
        return ranked
