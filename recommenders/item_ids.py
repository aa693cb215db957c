"""The item-ID stage: item text embeddings (unless the tokenizer reads none) -> CF embeddings (only
when the tokenizer needs them) -> the tokenizer fitted, or loaded from its cache. ``bench run``
(TIGER), ``bench tokenize`` and sweep trials all call :func:`fit_item_ids`, so a fit made by any of
them is reused by the others."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import tokenizers_zoo
from bench import embed
from bench.config_schema import RunConfig
from bench.errors import UserError
from bench.progress import say
from bench.split import LeaveOneOutSplit


class CFUnavailableError(UserError, RuntimeError):
    """LETTER's collaborative loss needs CF embeddings that cannot be produced here."""


@dataclass
class ItemIds:
    tokenizer: object  # a fitted tokenizers_zoo.Tokenizer
    facts: dict = field(default_factory=dict)  # for run records and `bench tokenize`


def fit_item_ids(config: RunConfig, split: LeaveOneOutSplit, work_dir: str | Path | None = None,
                 cache: bool = True, refit: bool = False, unseen: np.ndarray | None = None) -> ItemIds:
    """The config's tokenizer fitted on ``split``'s items (from the caches where possible).

    ``unseen`` (the cold-start protocol's unseen items): the tokenizer is fitted on the other items
    only and the unseen ones are encoded by the frozen fit (RQ-VAE/LETTER: encoder + codebooks; LSH:
    its hyperplanes; random IDs: fresh codes), as a new item would be in practice."""
    dataset = split.dataset
    timings = {}
    unfitted = tokenizers_zoo.build_tokenizer(config)  # the one instance of this run: fitted below
    start = time.perf_counter()
    if unfitted.uses_text:
        say(f"item text embeddings of {dataset.n_items} {dataset.name} items")
        item_emb = embed.item_embeddings(dataset, config)  # through the module: tests replace the encoder
    else:  # no features: the tokenizer reads the item count only (and its cache key holds it)
        item_emb = np.zeros((dataset.n_items, 0), dtype=np.float32)
    timings["embed_s"] = round(time.perf_counter() - start, 2)
    cf_emb = cf_mask = None
    if unfitted.needs_cf:
        try:
            # defer: RecBole (seconds to import, patched on import), needed only by a tokenizer that uses CF embeddings
            from baselines.cf_embed import cf_item_embeddings
        except ImportError as err:
            raise CFUnavailableError(
                "LETTER's collaborative loss (tokenizer.letter.alpha > 0) needs CF item embeddings from "
                f"baselines.cf_embed, which cannot be imported ({err}). Use --set tokenizer.letter.alpha=0 "
                "to fit LETTER without the collaborative loss."
            ) from None

        start = time.perf_counter()
        say("CF item embeddings (SASRec on the training parts) for the tokenizer's collaborative loss")
        folder = Path(work_dir) if work_dir is not None else Path(config.work_dir) / "cf_embed" / dataset.name
        cf_emb = np.asarray(cf_item_embeddings(split, config, folder), dtype=np.float32)
        cf_mask = split.train_item_counts > 0  # an item in no training part has no CF target
        timings["cf_embed_s"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    name = config.tokenizer.name
    fitted = np.arange(dataset.n_items) if unseen is None else np.setdiff1d(np.arange(dataset.n_items), unseen)
    say(f"tokenizer {name}: " + ("fitting" if refit else "its cached fit, else fitting")
        + ("" if len(fitted) == dataset.n_items else f" on the {len(fitted)} seen items"))
    tokenizer = tokenizers_zoo.fit_tokenizer(
        config, item_emb[fitted], None if cf_emb is None else cf_emb[fitted], cache=cache, refit=refit,
        cf_mask=None if cf_mask is None else cf_mask[fitted], tokenizer=unfitted)
    if len(fitted) < dataset.n_items:
        tokenizer.extend(item_emb, fitted)
    timings["tokenizer_s"] = round(time.perf_counter() - start, 2)
    say(f"tokenizer {name}: " + (f"loaded from {tokenizer.source}" if tokenizer.source else
                                 f"fitted in {timings['tokenizer_s']} s" +
                                 (f", saved to {tokenizer.cache_folder}" if tokenizer.cache_folder else "")))
    text = dict.fromkeys(("embedding_model", "embedding_template", "embedding_dim"))  # none read: all None
    if unfitted.uses_text:
        section = embed.embed_config(config)
        text = {"embedding_model": embed.model_identity(section.model),
                "embedding_template": embed.resolve_template(dataset.name, section.template),
                "embedding_dim": int(item_emb.shape[1])}
    facts = {
        "name": tokenizer.name,
        "dataset": dataset.name,
        "n_items": dataset.n_items,
        "text_embeddings": unfitted.uses_text,
        **text,
        "cf_embeddings": cf_emb is not None,
        "cf_targets": int(cf_mask.sum()) if cf_mask is not None else None,
        "fitted_on_items": int(len(fitted)),
        "encoded_unseen_items": int(dataset.n_items - len(fitted)),
        "from_cache": tokenizer.source is not None,
        "loaded_from": tokenizer.source,
        "saved_to": str(tokenizer.cache_folder) if tokenizer.cache_folder is not None else None,
        "timings": timings,
    }
    return ItemIds(tokenizer, facts)
