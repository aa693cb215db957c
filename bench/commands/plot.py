"""`bench plot`: hyper-parameter curves and code-assignment histograms from the results store."""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.commands.table import parse_where
from bench.config import ConfigError
from bench.records import iter_records
from bench.tables import filter_records


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "plot", help="plot hyper-parameter curves or the first-level code distribution (PNG/PDF)",
        description="Figures from the results store, written as PNG, PDF or SVG (from --output's suffix).",
    )
    kinds = parser.add_subparsers(dest="plot_kind", required=True, metavar="KIND")

    curve = kinds.add_parser(
        "curve", help="a metric against one config key (LETTER's hyper-parameter curves)",
        description="Mean over seeds (± std band) of each metric against the values of --param, one line per "
        "(dataset, method). Where a value has several configurations, the best on validation NDCG@10 is used.",
    )
    curve.add_argument("--param", required=True, help="dotted config key, e.g. tokenizer.letter.alpha, train.tau")
    curve.add_argument("--metric", action="append", help="metric(s) to plot, one panel each (repeatable) "
                       "[default: recall@10 and ndcg@10]")
    curve.add_argument("--split", choices=("test", "valid"), default="test")
    _store_options(curve)
    curve.add_argument("--output", required=True, metavar="FILE", help="FILE.png, FILE.pdf or FILE.svg")
    curve.add_argument("--title")
    curve.set_defaults(func=main_curve)

    codes = kinds.add_parser(
        "codes", help="items per first-level code, sorted (LETTER's code-assignment figure)",
        description="Items per code of one level of the semantic IDs, codes sorted by count. Counts come from "
        "run records (method_info: first_level_counts, or codes_path to a saved code array) or from saved "
        "code arrays (--codes FILE.npy|.npz|.json, shape [n_items, levels]).",
    )
    codes.add_argument("--run", action="append", default=[], metavar="RUN_ID",
                       help="a run id (or record path) whose record carries code counts (repeatable); "
                       "default: the newest such run per dataset and method")
    codes.add_argument("--codes", action="append", default=[], metavar="FILE[=LABEL]",
                       help="a saved code array instead of a record (repeatable)")
    codes.add_argument("--level", type=int, default=0, help="code level, 0 = first [default: 0]")
    codes.add_argument("--codebook-size", type=int, help="codes per level (unused codes count 0) for --codes")
    _store_options(codes)
    codes.add_argument("--output", required=True, metavar="FILE")
    codes.add_argument("--title")
    codes.set_defaults(func=main_codes)
    _add_coldstart(kinds)


def _add_coldstart(kinds) -> None:
    cold = kinds.add_parser(
        "coldstart", help="Recall@K on cold users vs K, and Recall@10 vs epsilon (TIGER's cold-start panels)",
        description="From the runs of the cold-start protocol (coldstart.enabled): Recall@K on the users whose "
        "test item is unseen, against K per method; and Recall@10 on them against epsilon for the generative "
        "runs that recorded an epsilon curve (coldstart.epsilon_curve).",
    )
    _store_options(cold)
    cold.add_argument("--output", required=True, metavar="FILE")
    cold.add_argument("--title")
    cold.set_defaults(func=main_coldstart)


def main_coldstart(args: argparse.Namespace) -> int:
    from bench.plots import PlotError, plot_coldstart

    records = filter_records(iter_records(args.results_dir), args.dataset, parse_where(args.where))
    try:
        path = plot_coldstart(records, args.output, title=args.title)
    except PlotError as err:
        raise ConfigError(f"{err} in {args.results_dir}") from err
    print(f"wrote {path}")
    return 0


def _store_options(parser) -> None:
    parser.add_argument("--results-dir", default="results/runs", help="folder of the results store")
    parser.add_argument("--dataset", action="append", help="only these datasets (repeatable)")
    parser.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                        help="only runs whose config has this value (repeatable)")


def main_curve(args: argparse.Namespace) -> int:
    from bench.plots import PlotError, plot_param_curves

    records = filter_records(iter_records(args.results_dir), args.dataset, parse_where(args.where))
    try:
        path = plot_param_curves(records, args.param, args.output, metrics=args.metric or ("recall@10", "ndcg@10"),
                                 split=args.split, title=args.title)
    except PlotError as err:
        raise ConfigError(f"{err} in {args.results_dir}") from err
    print(f"wrote {path}")
    return 0


def main_codes(args: argparse.Namespace) -> int:
    import json

    from bench.plots import (
        PlotError, code_counts_from_store, code_series_label, counts_from_codes, load_codes, plot_code_distribution,
        record_code_counts,
    )

    series = {}
    for item in args.codes:
        path, _, label = item.partition("=")
        series[label or Path(path).stem] = counts_from_codes(load_codes(path), args.level, args.codebook_size)
    if args.run:
        records = {r.get("run_id"): r for r in iter_records(args.results_dir)}
        for run in args.run:
            if Path(run).is_file():
                record = json.loads(Path(run).read_text())
            elif run in records:
                record = records[run]
            else:
                raise ConfigError(f"no run {run!r} in {args.results_dir}")
            counts = record_code_counts(record, args.level)
            if counts is None:
                raise ConfigError(f"run {run} has no code counts in its record (method_info.first_level_counts "
                                  "or method_info.codes_path); pass --codes FILE.npy instead")
            series[code_series_label(record)] = counts
    elif not args.codes:
        records = filter_records(iter_records(args.results_dir), args.dataset, parse_where(args.where))
        series = code_counts_from_store(records, level=args.level)
    try:
        path = plot_code_distribution(series, args.output, level=args.level, title=args.title)
    except PlotError as err:
        raise ConfigError(f"{err}: no run in {args.results_dir} carries code counts; pass --codes FILE.npy") from err
    print(f"wrote {path}")
    return 0
