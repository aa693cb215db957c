"""`bench cf-embed`: SASRec item embeddings (trained on the training parts only) for LETTER."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from bench.commands.common import add_config_options, config_from_args
from bench.data import load_dataset
from bench.split import LeaveOneOutSplit


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "cf-embed",
        help="train SASRec on the training parts and save its item embeddings (LETTER's CF signal)",
        description="Train RecBole's SASRec (hidden size baseline.cf_embed.hidden_size, 32 by default) on "
        "each user's training part only (never on validation or test targets) and save its item "
        "embedding table as a float32 .npy array [n_items, hidden_size], row i = the harness's item i. "
        "Cached by dataset, split and settings: a second call returns the same file at once.",
    )
    add_config_options(parser)
    parser.add_argument("--out", metavar="FILE", help="also copy the array to FILE (.npy)")
    parser.add_argument("--force", action="store_true", help="retrain even if a cached table exists")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    dataset = load_dataset(config.dataset, config.data_dir, config.plain(f"data.{config.dataset}"))
    split = LeaveOneOutSplit(dataset, max_history=config.split.max_history)
    # defer: RecBole (seconds to import, patched on import); `bench --help` must not pay for it
    from baselines.cf_embed import train_cf_embeddings

    embeddings, path, info = train_cf_embeddings(split, config, force=args.force)
    source = "cached" if info.get("cache_hit") else "trained"
    best = info.get("best_valid_score")
    detail = f", best valid {config.baseline.valid_metric} {best:.4f}" if best is not None else ""
    print(f"{dataset.name}: CF item embeddings {embeddings.shape[0]} x {embeddings.shape[1]} ({source}{detail})")
    print(f"embeddings: {path}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out)
        print(f"copied to: {out}")
    return 0
