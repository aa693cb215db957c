"""``bench tokenize``: fit (or load from the cache) an item tokenizer and print its quality statistics."""
from __future__ import annotations

import argparse
import json
import sys

from bench.config import profile_names, resolve_config
from bench.data import DATASETS, load_dataset
from bench.plugins import TOKENIZERS
from recommenders.item_ids import fit_item_ids
from bench.split import LeaveOneOutSplit
from tokenizers_zoo import stats_table


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "tokenize",
        help="fit (or load) an item tokenizer and print its quality statistics",
        description=(
            f"Embed the dataset's item texts, fit the tokenizer ({', '.join(TOKENIZERS.names())}) or load it "
            "from the cache, and print codebook utilisation, collisions, first-level entropy/Gini and, "
            "where there is one, reconstruction error and CF alignment."
        ),
    )
    parser.add_argument("--tokenizer", metavar="NAME", help=f"{' | '.join(TOKENIZERS.names())} (default: the config's)")
    parser.add_argument("--dataset", metavar="NAME", help=f"{', '.join(DATASETS.names())} (default: the config's)")
    parser.add_argument("--data-dir", metavar="DIR", help="folder holding the dataset (else $BENCH_DATA_DIR, else the cache)")
    parser.add_argument("--profile", default="cpu", choices=profile_names(), help="compute profile (default: cpu)")
    parser.add_argument("--set", dest="assignments", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override config values, e.g. --set tokenizer.rqvae.epochs=50 seed=1 (repeatable)")
    parser.add_argument("--config", dest="config_files", action="append", default=[], metavar="FILE",
                        help="YAML file merged over the profile (repeatable)")
    parser.add_argument("--refit", action="store_true", help="fit again even when a cached tokenizer exists (and replace it)")
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON instead of a table")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    overrides: dict = {}
    if args.dataset:
        overrides["dataset"] = args.dataset
    if args.tokenizer:
        overrides["tokenizer"] = {"name": args.tokenizer}
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    config = resolve_config(args.profile, args.config_files, args.assignments, overrides=overrides or None)
    dataset = load_dataset(config.dataset, config.data_dir, config.plain(f"data.{config.dataset}"))
    split = LeaveOneOutSplit(dataset, max_history=config.split.max_history)
    stage = fit_item_ids(config, split, refit=args.refit)
    tokenizer, facts = stage.tokenizer, stage.facts
    stats = tokenizer.stats()
    if args.json:
        print(json.dumps({"stats": stats, "facts": facts, "info": {k: v for k, v in tokenizer.info.items() if k != "history"}}, indent=2))
    else:
        origin = f"loaded from {facts['loaded_from']}" if facts["loaded_from"] else f"fitted in {tokenizer.info.get('fit_seconds', 0):.1f}s"
        inputs = (f"text embeddings {facts['embedding_model']}, d={facts['embedding_dim']}, "
                  f"template '{facts['embedding_template']}'" if facts["text_embeddings"] else "no text embeddings")
        print(f"{tokenizer.name} on {facts['dataset']} ({facts['n_items']} items; {inputs}; "
              f"profile {args.profile}; seed {tokenizer.seed}): {origin}")
        print(stats_table(stats))
        if facts["saved_to"] and not facts["loaded_from"]:
            print(f"saved to {facts['saved_to']} (bench run with the same config reuses it)")
    if stats["collapse_warning"]:
        print(f"WARNING: {tokenizer.name} shows codebook collapse (see collapse_warning above)", file=sys.stderr)
    return 0
