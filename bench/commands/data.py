"""`bench data stats|download`: inspect and fetch datasets."""
from __future__ import annotations

import argparse
from pathlib import Path

from tabulate import tabulate

from bench.data import DATASETS, load_dataset
from bench.data.locate import cache_root
from bench.data.download import download_dataset


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("data", help="dataset statistics and downloads",
                                   description="Inspect and fetch the registered datasets.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    stats = actions.add_parser("stats", help="print users, items, interactions and average length",
                               description="Load a dataset and print users, items, interactions, average length.")
    stats.add_argument("name", help=f"dataset: {', '.join(DATASETS.names())}")
    stats.add_argument("--data-dir", help="folder holding the dataset (else $BENCH_DATA_DIR, else the cache)")
    stats.set_defaults(func=stats_main)

    download = actions.add_parser(
        "download", help="download the raw Amazon 2014 files (needs internet)",
        description="Download reviews_<Cat>_5.json.gz and meta_<Cat>.json.gz of an Amazon 2014 category. "
        "Fails at once with a clear message on a machine without internet.",
    )
    download.add_argument("name", help="dataset: " + ", ".join(n for n in DATASETS.names() if not DATASETS.info(n).extras.get("embedded")))
    download.add_argument("--data-dir", help=f"target folder [default: {cache_root() / 'data'}]")
    download.set_defaults(func=download_main)


def stats_main(args: argparse.Namespace) -> int:
    dataset = load_dataset(args.name, args.data_dir)
    stats = dataset.stats()
    rows = [
        ["users", stats["users"]],
        ["items", stats["items"]],
        ["interactions", stats["interactions"]],
        ["avg. length", f"{stats['avg_length']:.2f}"],
        ["min / max length", f"{stats['min_length']} / {stats['max_length']}"],
        ["density", f"{stats['density']:.6f}"],
    ]
    print(f"{dataset.name} ({dataset.source})")
    print(tabulate(rows, tablefmt="plain", disable_numparse=True))
    return 0


def download_main(args: argparse.Namespace) -> int:
    spec = DATASETS.get(args.name)
    root = Path(args.data_dir) if args.data_dir else cache_root() / "data"
    for path in download_dataset(spec, root / args.name, args.name):
        print(f"have {path}")
    return 0
