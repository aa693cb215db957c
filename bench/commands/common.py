"""Options shared by subcommands: the run-config options, and checks of --alpha and output paths."""
from __future__ import annotations

import argparse
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from bench.config import profile_names, resolve_config
from bench.config_schema import RunConfig
from bench.data import DATASETS
from bench.errors import UserError

DEFAULT_PROFILE = "cpu"


def add_config_options(parser: argparse.ArgumentParser, dataset: bool = True) -> None:
    group = parser.add_argument_group("configuration (defaults < --profile < --config < --set)")
    if dataset:
        group.add_argument("--dataset", help=f"dataset name ({', '.join(DATASETS.names())})")
        group.add_argument("--data-dir", help="folder holding the dataset (else $BENCH_DATA_DIR, else the cache)")
    group.add_argument(
        "--profile", default=DEFAULT_PROFILE, choices=profile_names(),
        help=f"compute preset: smoke (seconds), cpu (2-core machine), paper (papers' settings) "
             f"[default: {DEFAULT_PROFILE}]",
    )
    group.add_argument("--config", action="append", default=[], metavar="FILE", help="YAML file layered on the profile (repeatable)")
    group.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", dest="assignments",
                       help="override config values, e.g. --set split.max_history=50 train.lr=0.001 (repeatable)")


def config_from_args(args: argparse.Namespace, overrides: dict | None = None) -> RunConfig:
    overrides = dict(overrides or {})
    if getattr(args, "dataset", None):
        overrides["dataset"] = args.dataset
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    return resolve_config(args.profile, args.config, args.assignments, overrides)


def seed_list(text: str) -> list[int]:
    """argparse type of ``--seeds``: comma-separated distinct integers (their range is checked with
    the config, like every seed)."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 2024,2025,2026, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("expected at least one seed")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"a seed is repeated in {text!r}")
    return seeds


def significance_level(text: str) -> float:
    """argparse type of ``--alpha``: a number in the open interval (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a significance level between 0 and 1, got {text!r}") from None
    if not (math.isfinite(value) and 0 < value < 1):
        raise argparse.ArgumentTypeError(f"a significance level must lie strictly between 0 and 1 "
                                         f"(e.g. 0.05), got {text}")
    return value


def check_output(path: str | os.PathLike, option: str, folder: bool = False) -> Path:
    """``path`` when a file (``folder``: a folder) can be written there; otherwise a UserError naming
    ``option`` and the path, raised before any work is done."""
    path = Path(path)
    if not str(path).strip():
        raise UserError(f"{option}: empty path")
    if folder and path.exists() and not path.is_dir():
        raise UserError(f"{option} {path}: exists and is not a folder")
    if not folder and path.is_dir():
        raise UserError(f"{option} {path}: is a folder; give a file name")
    ancestor = path if folder else path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise UserError(f"{option} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: cannot write in {ancestor} (permission denied)")
    return path


@contextmanager
def writing(option: str, path: str | os.PathLike) -> Iterator[None]:
    """Turn an operating-system error while writing ``path`` into a UserError naming ``option``,
    the path and the reason (``[Errno 2] ...`` alone names neither)."""
    try:
        yield
    except FileExistsError:  # a store that never overwrites says so itself
        raise
    except OSError as err:
        where = f" ({err.filename})" if err.filename and str(err.filename) != str(path) else ""
        raise UserError(f"{option} {path}: cannot write{where}: {err.strerror or err}") from None
