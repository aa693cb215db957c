"""LETTER (Wang et al., CIKM 2024): RQ-VAE + alpha · collaborative loss + beta · diversity loss.

- Collaborative loss: in-batch InfoNCE between each item's quantised latent ẑ (straight-through,
  so its gradient reaches the encoder, as in LETTER's code) and the item's CF embedding (32-d item
  embeddings of a trained SASRec): ``CE(sim(ẑ_i, h_j) / tau, j = i)``. Similarity is the dot
  product (LETTER) or, with ``cf_normalize``, the cosine. If the CF dimension differs from the code
  dimension, ẑ is first mapped by a learned linear projection (not needed for LETTER's 32/32).
- Diversity loss: every ``recluster_every`` epochs each codebook's K code vectors are clustered by
  constrained (equal-size) k-means into ``n_clusters`` groups (``k-means-constrained``). For each
  item and level, the chosen code e_c is pulled towards a random other code of its own group and
  pushed from all other codes: ``CE(e_c · E^T / temp with e_c itself masked, target = that code)``
  (LETTER's ``diversity_loss``), summed over levels.

Paper settings: 4 levels × 256 codes × 32 dims, AdamW lr 1e-3, batch 1024, alpha 0.02, beta 1e-4.
"""
from __future__ import annotations

import math

from typing import Annotated

import numpy as np
from pydantic import Field, model_validator

from bench.config_schema import NonNegativeFloat, PositiveFloat, PositiveInt
from tokenizers_zoo.base import TokenizerError
from tokenizers_zoo.rqvae import RQVAEParams, RQVAETokenizer, _torch

ALIGNMENT_BATCH = 1024


def equal_size_clusters(points: np.ndarray, n_clusters: int, seed: int, n_init: int = 10, max_iter: int = 10) -> np.ndarray:
    """Labels of constrained k-means with cluster sizes floor(K/n) .. ceil(K/n)."""
    from k_means_constrained import KMeansConstrained

    k = len(points)
    size_min, size_max = k // n_clusters, math.ceil(k / n_clusters)
    model = KMeansConstrained(
        n_clusters=n_clusters, size_min=size_min, size_max=size_max, n_init=n_init, max_iter=max_iter,
        random_state=seed, n_jobs=1,
    )
    return np.asarray(model.fit_predict(np.asarray(points, dtype=np.float64)), dtype=np.int64)


class LetterParams(RQVAEParams):
    alpha: NonNegativeFloat  # 0 = no collaborative loss (no CF embeddings needed)
    beta: NonNegativeFloat  # 0 = no diversity loss
    cf_temperature: PositiveFloat
    cf_normalize: bool
    n_clusters: Annotated[int, Field(ge=2)]
    recluster_every: PositiveInt
    cluster_n_init: PositiveInt
    cluster_max_iter: PositiveInt
    diversity_temperature: PositiveFloat

    @model_validator(mode="after")
    def _groups_have_another_code(self):
        if self.n_clusters > self.codebook_size // 2:
            raise ValueError(f"n_clusters ({self.n_clusters}) must be at most codebook_size / 2 "
                             f"({self.codebook_size // 2}) so every group has another code to pull towards")
        return self


class LetterTokenizer(RQVAETokenizer):
    name = "letter"
    version = 2  # 2: the collaborative loss leaves out items without a CF target (cf_mask)
    uses_cf = True
    Params = LetterParams

    def _init_state(self) -> None:
        super()._init_state()
        self.projection = None
        self.cluster_labels: list[np.ndarray] = []
        self._groups = None

    @classmethod
    def cf_needed(cls, hp) -> bool:
        return hp.alpha > 0

    def _fit(self, item_emb, cf_emb):
        if self.needs_cf and cf_emb is None:
            raise TokenizerError(
                f"letter with alpha={self.params['alpha']} needs CF item embeddings (cf_emb, e.g. from "
                "baselines.cf_embed); pass them, or set tokenizer.letter.alpha=0 to train without the collaborative loss"
            )
        self._generator = _torch().Generator().manual_seed(self.seed + 7919)
        self._cluster_rng = np.random.default_rng(self.seed + 104729)
        return super()._fit(item_emb, cf_emb)

    # -- hooks -----------------------------------------------------------------------------

    def _prepare(self, x, cf, device) -> None:
        torch = _torch()
        mask = getattr(self, "cf_mask", None)
        self._cf_rows = torch.from_numpy(mask).to(device) if cf is not None and mask is not None else None
        self.projection = None
        if cf is not None and cf.shape[1] != self.hp.code_dim:
            self.projection = torch.nn.Linear(self.hp.code_dim, cf.shape[1], bias=False).to(device)

    def _extra_parameters(self) -> list:
        return list(self.projection.parameters()) if self.projection is not None else []

    def _on_epoch_start(self, epoch: int) -> None:
        if self.hp.beta > 0 and epoch % self.hp.recluster_every == 0:
            self._recluster()

    def _recluster(self) -> None:
        """Constrained k-means of every codebook; cached as padded member tables for sampling."""
        torch = _torch()
        codebooks = self.model.codebooks.detach().cpu().numpy()
        n_clusters = self.hp.n_clusters
        self.cluster_labels = []
        groups = []
        for level in range(self.levels):
            labels = equal_size_clusters(
                codebooks[level], n_clusters, seed=int(self._cluster_rng.integers(2**31 - 1)),
                n_init=self.hp.cluster_n_init, max_iter=self.hp.cluster_max_iter,
            )
            self.cluster_labels.append(labels)
            sizes = np.bincount(labels, minlength=n_clusters)
            members = np.zeros((n_clusters, sizes.max()), dtype=np.int64)
            position = np.zeros(len(labels), dtype=np.int64)
            for group in range(n_clusters):
                idx = np.flatnonzero(labels == group)
                members[group, : len(idx)] = idx
                position[idx] = np.arange(len(idx))
            device = self.model.codebooks.device
            groups.append(
                {
                    "labels": torch.from_numpy(labels).to(device),
                    "sizes": torch.from_numpy(sizes).to(device),
                    "members": torch.from_numpy(members).to(device),
                    "position": torch.from_numpy(position).to(device),
                }
            )
        self._groups = groups

    def diversity_loss(self, codes, level: int):
        """LETTER's diversity loss for one level: the chosen codes vs a random same-group code."""
        torch = _torch()
        group = self._groups[level]
        codebook = self.model.codebooks[level]
        cluster = group["labels"][codes]
        size = group["sizes"][cluster]
        own = group["position"][codes]
        # a uniform draw among the other members of the group: skip the code's own slot
        draw = (torch.rand(len(codes), generator=self._generator).to(codes.device) * (size - 1).float()).long()
        draw = torch.minimum(draw, size - 2)
        draw = draw + (draw >= own).long()
        positive = group["members"][cluster, draw]
        chosen = codebook[codes]
        logits = chosen @ codebook.t() / self.hp.diversity_temperature
        logits = logits.masked_fill(torch.nn.functional.one_hot(codes, codebook.shape[0]).bool(), float("-inf"))
        return torch.nn.functional.cross_entropy(logits, positive)

    def _cf_similarity(self, z, cf):
        torch = _torch()
        if self.projection is not None:
            z = self.projection(z)
        if self.hp.cf_normalize:
            z = torch.nn.functional.normalize(z, dim=-1)
            cf = torch.nn.functional.normalize(cf, dim=-1)
        return z @ cf.t()

    def collaborative_loss(self, z_st, cf_batch):
        torch = _torch()
        logits = self._cf_similarity(z_st, cf_batch) / self.hp.cf_temperature
        targets = torch.arange(len(z_st), device=z_st.device)
        return torch.nn.functional.cross_entropy(logits, targets)

    def _extra_losses(self, out: dict, batch, cf) -> dict:
        losses = {}
        alpha, beta = self.hp.alpha, self.hp.beta
        if alpha > 0:
            z, target = out["z_st"], cf[batch]
            if self._cf_rows is not None:  # items with no training interaction have no CF target
                keep = self._cf_rows[batch]
                z, target = z[keep], target[keep]
            if len(z) >= 2:  # in-batch InfoNCE needs a negative
                losses["cf"] = (alpha, self.collaborative_loss(z, target))
        if beta > 0:
            diversity = sum(self.diversity_loss(out["codes"][:, level], level) for level in range(self.levels))
            losses["diversity"] = (beta, diversity)
        return losses

    def _finish(self, x, cf, out: dict) -> None:
        if cf is not None:
            rows = self._cf_rows if getattr(self, "_cf_rows", None) is not None else slice(None)
            self.extra_stats.update(self.cf_alignment(out["z_hat"][rows], cf[rows]))

    def cf_alignment(self, z_hat, cf) -> dict:
        """How well ẑ matches the CF embeddings.

        ``cf_alignment``: mean cosine between each item's ẑ (projected if needed) and its CF embedding.
        ``cf_top1_in_batch``: share of items whose own CF embedding has the highest training
        similarity with ẑ among a fixed random batch of up to 1024 items (chance = 1 / batch).
        """
        torch = _torch()
        with torch.no_grad():
            z = self.projection(z_hat) if self.projection is not None else z_hat
            cosine = torch.nn.functional.cosine_similarity(z, cf, dim=-1).mean()
            order = torch.randperm(len(cf), generator=torch.Generator().manual_seed(0)).to(cf.device)
            hits, batches = 0, 0
            for chunk in order.split(ALIGNMENT_BATCH):
                sim = self._cf_similarity(z_hat[chunk], cf[chunk])
                hits += int((sim.argmax(dim=1) == torch.arange(len(chunk), device=cf.device)).sum())
                batches += 1
        return {
            "cf_alignment": float(cosine),
            "cf_top1_in_batch": hits / len(cf),
            "cf_top1_chance": batches / len(cf),
        }

    # -- persistence -----------------------------------------------------------------------

    def _state(self) -> dict:
        state = super()._state()
        if self.projection is not None:
            state["projection.weight"] = self.projection.weight.detach().cpu()
        return state

    def _load_state(self, state: dict) -> None:
        super()._load_state(state)
        if "projection.weight" in state:
            weight = state["projection.weight"]
            self.projection = _torch().nn.Linear(weight.shape[1], weight.shape[0], bias=False)
            self.projection.weight.data.copy_(weight)
