"""Options shared by subcommands that resolve a run config."""
from __future__ import annotations

import argparse

from bench.config import profile_names, resolve_config

DEFAULT_PROFILE = "cpu"


def add_config_options(parser: argparse.ArgumentParser, dataset: bool = True) -> None:
    group = parser.add_argument_group("configuration (defaults < --profile < --config < --set)")
    if dataset:
        group.add_argument("--dataset", help="dataset name (beauty, sports, toys, ml-100k, synthetic)")
        group.add_argument("--data-dir", help="folder holding the dataset (else $BENCH_DATA_DIR, else the cache)")
    group.add_argument(
        "--profile", default=DEFAULT_PROFILE, choices=profile_names(),
        help=f"compute preset: smoke (seconds), cpu (2-core machine), paper (papers' settings) "
             f"[default: {DEFAULT_PROFILE}]",
    )
    group.add_argument("--config", action="append", default=[], metavar="FILE", help="YAML file layered on the profile (repeatable)")
    group.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", dest="assignments",
                       help="override config values, e.g. --set split.max_history=50 train.lr=0.001 (repeatable)")


def config_from_args(args: argparse.Namespace, overrides: dict | None = None) -> dict:
    overrides = dict(overrides or {})
    if getattr(args, "dataset", None):
        overrides["dataset"] = args.dataset
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    return resolve_config(args.profile, args.config, args.assignments, overrides)
