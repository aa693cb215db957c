"""Semantic-KNN (TIGER's content baseline): rank items by the cosine similarity of their text
embeddings to the user's most recent history items. It needs no interaction training, so it can
recommend items no one has interacted with (the cold-start protocol's point of comparison).

Score of item i for a user: the mean (``aggregate: mean``) or the maximum (``max``) of
cos(e_i, e_h) over the user's last ``history`` items h; the user's own history items are never
recommended (their similarity to themselves is 1). Item embeddings are the harness's cached text
embeddings (``bench.embed``, the ``embed`` section).
"""
from __future__ import annotations

from typing import Literal

import numpy as np

from bench.config_schema import PositiveInt, RunConfig, Section
from bench.methods import Recommender
from bench.split import LeaveOneOutSplit
from bench import embed


class SemanticKNN(Recommender):
    version = 1

    class Params(Section):  # baseline.semantic_knn (its values: the registration's defaults)
        history: PositiveInt  # the user's last items the score averages (or maximises) over
        aggregate: Literal["mean", "max"]
        batch_users: PositiveInt

    @classmethod
    def label(cls, config: RunConfig) -> str:
        return "Semantic-KNN"

    @classmethod
    def components(cls, config: RunConfig) -> dict[str, int]:
        return {**super().components(config), "embedder": embed.EMBEDDER_VERSION}

    def max_history(self) -> int:
        return min(self.config.baseline.semantic_knn.history, self.config.split.max_history)

    def fit(self, split: LeaveOneOutSplit) -> None:
        emb = np.asarray(embed.item_embeddings(split.dataset, self.config), dtype=np.float32)
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        self.embeddings = emb / np.maximum(norms, 1e-12)

    def rank(self, split: LeaveOneOutSplit, stage: str, k: int) -> np.ndarray:
        section = self.config.baseline.semantic_knn
        batch = split.eval_batch(stage)
        m = self.max_history()
        k = min(k, split.n_items)
        out = np.full((split.n_users, k), -1, dtype=np.int64)
        step = section.batch_users
        for start in range(0, split.n_users, step):
            rows = np.arange(start, min(start + step, split.n_users))
            items = batch.items[rows]  # left-padded with -1, most recent last
            recent = items[:, -m:]
            mask = recent >= 0
            vectors = self.embeddings[np.where(mask, recent, 0)]  # [b, m, d]
            sims = vectors @ self.embeddings.T  # [b, m, n_items]
            if section.aggregate == "max":
                scores = np.where(mask[:, :, None], sims, -np.inf).max(axis=1)
            else:
                scores = (sims * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1)
            history = np.zeros((len(rows), split.n_items), dtype=bool)
            r, c = np.nonzero(items >= 0)
            history[r, items[r, c]] = True
            scores = np.where(history, -np.inf, scores)
            no_history = ~mask.any(axis=1)
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
            ranked = np.take_along_axis(top, order, axis=1)
            ranked[no_history] = -1  # nothing to be similar to
            out[rows] = ranked
        return out
