"""Random-hyperplane LSH (SimHash) of the item embeddings: L levels of b bits, K = 2^b per level.

Each level draws its own b Gaussian hyperplanes; an item's code at that level is the integer whose
bit j says on which side of hyperplane j the (optionally mean-centred) embedding lies.
"""
from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from bench.config_schema import PositiveInt, Section
from tokenizers_zoo.base import TokenizerError, Tokenizer, check_embeddings


class LSHParams(Section):
    levels: PositiveInt
    bits: Annotated[int, Field(ge=1, le=30)]  # K = 2^bits codes per level
    center: bool


class LSHTokenizer(Tokenizer):
    name = "lsh"
    version = 1  # bump when a change makes fitted lsh codes differ

    Params = LSHParams

    def _init_state(self) -> None:
        self.planes: np.ndarray | None = None  # [L, b, d]
        self.mean: np.ndarray | None = None  # [d]

    @property
    def level_sizes(self) -> list[int]:
        return [2 ** self.hp.bits] * self.hp.levels

    def _fit(self, item_emb: np.ndarray, cf_emb: np.ndarray | None) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        dim = item_emb.shape[1]
        self.planes = rng.standard_normal((self.hp.levels, self.hp.bits, dim)).astype(np.float32)
        self.mean = item_emb.mean(axis=0) if self.hp.center else np.zeros(dim, dtype=np.float32)
        return self.encode(item_emb)

    def encode(self, item_emb: np.ndarray) -> np.ndarray:
        if self.planes is None:
            raise TokenizerError("the lsh tokenizer is not fitted yet")
        x = check_embeddings(item_emb, "item embeddings") - self.mean
        if x.shape[1] != self.planes.shape[2]:
            raise TokenizerError(f"embeddings have dim {x.shape[1]}, the hyperplanes {self.planes.shape[2]}")
        bits = (np.einsum("nd,lbd->nlb", x, self.planes) > 0).astype(np.int64)  # [n, L, b]
        weights = 2 ** np.arange(self.hp.bits, dtype=np.int64)
        return bits @ weights

    def _state(self) -> dict:
        return {"planes": self.planes, "mean": self.mean}

    def _load_state(self, state: dict) -> None:
        self.planes = state["planes"].numpy()
        self.mean = state["mean"].numpy()
