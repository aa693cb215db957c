"""``bench tokenize``: fit (or load from the cache) an item tokenizer and print its quality statistics."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from bench.config import ConfigError, profile_names, resolve_config
from bench.data import DataError, SequenceDataset, load_dataset
from bench.embed import EmbedError, embed_config, item_embeddings, model_identity, resolve_template
from bench.registry import UnknownNameError


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "tokenize",
        help="fit (or load) an item tokenizer and print its quality statistics",
        description=(
            "Embed the dataset's item texts, fit the tokenizer (random_id, lsh, rqvae, letter) or load it "
            "from the cache, and print codebook utilisation, collisions, first-level entropy/Gini and, "
            "where there is one, reconstruction error and CF alignment."
        ),
    )
    parser.add_argument("--tokenizer", metavar="NAME", help="random_id | lsh | rqvae | letter (default: the config's)")
    parser.add_argument("--dataset", metavar="NAME", help="beauty, sports, toys, ml-100k, synthetic (default: the config's)")
    parser.add_argument("--data-dir", metavar="DIR", help="folder holding the dataset (else $BENCH_DATA_DIR, else the cache)")
    parser.add_argument("--profile", default="cpu", choices=profile_names(), help="compute profile (default: cpu)")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set tokenizer.rqvae.epochs=50 (repeatable)")
    parser.add_argument("--config", dest="config_files", action="append", default=[], metavar="FILE",
                        help="YAML file merged over the profile (repeatable)")
    parser.add_argument("--refit", action="store_true", help="fit again even when a cached tokenizer exists (and replace it)")
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON instead of a table")
    parser.set_defaults(func=run)
    return parser


class CFUnavailableError(RuntimeError):
    """LETTER's collaborative loss needs CF embeddings that cannot be produced here."""


def cf_embeddings(dataset: SequenceDataset, config: dict, split=None) -> np.ndarray:
    """32-d SASRec item embeddings from ``baselines.cf_embed`` (imported lazily)."""
    try:
        from baselines.cf_embed import cf_item_embeddings
    except ImportError as err:
        raise CFUnavailableError(
            "LETTER's collaborative loss (tokenizer.letter.alpha > 0) needs CF item embeddings from "
            f"baselines.cf_embed, which cannot be imported ({err}). Use --set tokenizer.letter.alpha=0 "
            "to fit LETTER without the collaborative loss."
        ) from err
    if split is None:
        from bench.split import LeaveOneOutSplit

        split = LeaveOneOutSplit(dataset, max_history=int(config.get("split", {}).get("max_history", 20)))
    work_dir = Path(config.get("work_dir") or "results/work") / "cf_embed" / dataset.name
    return np.asarray(cf_item_embeddings(split, config, work_dir), dtype=np.float32)


def needs_cf(config: dict) -> bool:
    from tokenizers_zoo import build_tokenizer

    return build_tokenizer(config).needs_cf


def dataset_options(config: dict, name: str) -> dict | None:
    options = (config.get("data") or {}).get(name)
    return options if isinstance(options, dict) else None


def fit_for_dataset(config: dict, dataset: SequenceDataset | None = None, split=None, cache: bool = True, refit: bool = False):
    """(tokenizer, facts): the config's tokenizer fitted on ``dataset``'s item embeddings (+ CF where needed)."""
    from tokenizers_zoo import fit_tokenizer

    if dataset is None:
        dataset = load_dataset(config["dataset"], config.get("data_dir"), dataset_options(config, config["dataset"]))
    timings = {}
    start = time.perf_counter()
    item_emb = item_embeddings(dataset, config)
    timings["embed_seconds"] = round(time.perf_counter() - start, 3)
    cf_emb = None
    if needs_cf(config):
        start = time.perf_counter()
        cf_emb = cf_embeddings(dataset, config, split)
        timings["cf_seconds"] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()
    tokenizer = fit_tokenizer(config, item_emb, cf_emb, cache=cache, refit=refit)
    timings["tokenizer_seconds"] = round(time.perf_counter() - start, 3)
    section = embed_config(config)
    facts = {
        "dataset": dataset.name,
        "n_items": dataset.n_items,
        "embedding_model": model_identity(section["model"]),
        "embedding_template": resolve_template(dataset.name, section["template"]),
        "embedding_dim": int(item_emb.shape[1]),
        "cf_embeddings": cf_emb is not None,
        "loaded_from": tokenizer.source,
        **timings,
    }
    return tokenizer, facts


def run(args: argparse.Namespace) -> int:
    from tokenizers_zoo import TokenizerError, TrainingDivergedError, stats_table

    overrides: dict = {}
    if args.dataset:
        overrides["dataset"] = args.dataset
    if args.tokenizer:
        overrides["tokenizer"] = {"name": args.tokenizer}
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    try:
        config = resolve_config(args.profile, args.config_files, args.assignments, overrides=overrides or None)
        from tokenizers_zoo import TOKENIZERS

        TOKENIZERS.get(config["tokenizer"]["name"])  # unknown names fail before any work
        tokenizer, facts = fit_for_dataset(config, refit=args.refit)
    except (ConfigError, DataError, EmbedError, TokenizerError, UnknownNameError, CFUnavailableError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingDivergedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    stats = tokenizer.stats()
    if args.json:
        print(json.dumps({"stats": stats, "facts": facts, "info": {k: v for k, v in tokenizer.info.items() if k != "history"}}, indent=2))
    else:
        origin = f"loaded from {facts['loaded_from']}" if facts["loaded_from"] else f"fitted in {tokenizer.info.get('fit_seconds', 0):.1f}s"
        print(
            f"{tokenizer.name} on {facts['dataset']} ({facts['n_items']} items; text embeddings "
            f"{facts['embedding_model']}, d={facts['embedding_dim']}, template '{facts['embedding_template']}'; "
            f"profile {args.profile}; seed {tokenizer.seed}): {origin}"
        )
        print(stats_table(stats))
    if stats["collapse_warning"]:
        print(f"WARNING: {tokenizer.name} shows codebook collapse (see collapse_warning above)", file=sys.stderr)
    return 0
