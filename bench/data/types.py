"""The in-memory dataset every loader produces."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bench.errors import UserError


class DataError(UserError, ValueError):
    """Bad or missing input data; the message names the file (and line) and what is wrong."""


@dataclass
class SequenceDataset:
    """Per-user item sequences in time order plus per-item metadata.

    Items are addressed everywhere in the harness by a dense internal index ``0..n_items-1``;
    ``item_ids[i]`` is item ``i``'s id in the source data and ``user_ids[u]`` user ``u``'s.
    """

    name: str
    user_ids: list[str]
    item_ids: list[str]
    sequences: list[np.ndarray]  # per user, int64 internal item indices, oldest first
    item_meta: list[dict] = field(default_factory=list)  # per item: title, brand, categories, ...
    source: str = ""  # where it was read from

    @property
    def n_users(self) -> int:
        return len(self.sequences)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    def stats(self) -> dict:
        lengths = np.array([len(s) for s in self.sequences])
        return {
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.n_interactions,
            "avg_length": float(lengths.mean()) if len(lengths) else 0.0,
            "min_length": int(lengths.min()) if len(lengths) else 0,
            "max_length": int(lengths.max()) if len(lengths) else 0,
            "density": self.n_interactions / max(1, self.n_users * self.n_items),
        }
