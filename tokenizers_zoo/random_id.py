"""Random IDs: every item gets L codes drawn uniformly from K, seeded (TIGER's Random ID baseline)."""
from __future__ import annotations

import numpy as np

from bench.config_schema import CodebookSize, PositiveInt, Section
from tokenizers_zoo.base import Tokenizer


class RandomIDParams(Section):
    levels: PositiveInt
    codebook_size: CodebookSize


class RandomIDTokenizer(Tokenizer):
    name = "random_id"
    version = 1  # bump when a change makes fitted random_id codes differ
    uses_text = False  # the codes depend on the seed and the item count only
    Params = RandomIDParams

    @property
    def level_sizes(self) -> list[int]:
        return [self.hp.codebook_size] * self.hp.levels

    def _fit(self, item_emb: np.ndarray, cf_emb: np.ndarray | None) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        return rng.integers(0, self.hp.codebook_size, size=(len(item_emb), self.hp.levels), dtype=np.int64)

    def encode(self, item_emb: np.ndarray) -> np.ndarray:
        """Fresh random codes for new items (cold start: an unseen item gets an ID the fit never drew),
        from a stream of their own so the fitted items' codes stay as they are."""
        rng = np.random.default_rng([self.seed, 1])
        return rng.integers(0, self.hp.codebook_size, size=(len(item_emb), self.hp.levels), dtype=np.int64)
