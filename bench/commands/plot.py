"""`bench plot`: hyper-parameter curves and code-assignment histograms from the results store."""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.commands.common import check_output, writing
from bench.commands.table import check_metrics, open_store, parse_where, scratch_hint
from bench.config import ConfigError
from bench.errors import UserError
from bench.records import SCRATCH_STORE, read_record
from bench.tables import filter_records
from bench.plots import code_counts_from_store, code_series_label, counts_from_codes, load_codes, plot_code_distribution, plot_coldstart, plot_format, plot_param_curves, plot_time_to_quality, PlotError, record_code_counts


def check_plot_output(output: str) -> None:
    """--output: a known image format, in a folder that can be written; checked before any work."""
    plot_format(output, "--output")
    check_output(output, "--output")


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
    _add_store_figure(
        kinds, "coldstart", plot_coldstart,
        help="Recall@K on cold users vs K, and Recall@10 vs epsilon (TIGER's cold-start panels)",
        description="From the runs of the cold-start protocol (coldstart.enabled): Recall@K on the users whose "
        "test item is unseen, against K per method; and Recall@10 on them against epsilon for the generative "
        "runs that recorded an epsilon curve (coldstart.epsilon_curve).",
    )
    _add_store_figure(
        kinds, "quality", plot_time_to_quality,
        help="validation NDCG@10 against training time and examples seen (generative runs)",
        description="Time to quality: each generative run's validation NDCG@10 during training against training "
        "minutes and against examples seen, one colour per method and one line per seed, to compare models at "
        "equal compute (e.g. --where model.arch=decoder_only against the encoder-decoder). Minutes compare only "
        "runs timed on one machine under one load.",
    )


def _add_store_figure(kinds, name: str, plot, **texts) -> None:
    """A figure drawn by ``plot(records, output, title=...)`` from the (filtered) runs of a store."""
    parser = kinds.add_parser(name, **texts)
    _store_options(parser)
    parser.add_argument("--output", required=True, metavar="FILE")
    parser.add_argument("--title")
    parser.set_defaults(func=lambda args: main_store_figure(args, plot))


def main_store_figure(args: argparse.Namespace, plot) -> int:
    check_plot_output(args.output)
    store = open_store(args.results_dir)
    records = filter_records(store.records, args.dataset, parse_where(args.where))
    try:
        with writing("--output", args.output):
            path = plot(records, args.output, title=args.title)
    except PlotError as err:
        raise ConfigError(f"{err} in {args.results_dir}{scratch_hint(args.results_dir, store)}") from err
    print(f"wrote {path}")
    return 0


def _store_options(parser) -> None:
    parser.add_argument("--results-dir", default=SCRATCH_STORE, help=f"folder of the results store [default: {SCRATCH_STORE}]")
    parser.add_argument("--dataset", action="append", help="only these datasets (repeatable)")
    parser.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                        help="only runs whose config has this value (repeatable)")


def main_curve(args: argparse.Namespace) -> int:
    check_plot_output(args.output)
    store = open_store(args.results_dir)
    records = filter_records(store.records, args.dataset, parse_where(args.where))
    metrics = args.metric or ("recall@10", "ndcg@10")
    check_metrics(records, metrics, args.split, option="--metric")
    try:
        with writing("--output", args.output):
            path = plot_param_curves(records, args.param, args.output, metrics=metrics, split=args.split,
                                     title=args.title)
    except PlotError as err:
        raise ConfigError(f"{err} in {args.results_dir}{scratch_hint(args.results_dir, store)}") from err
    print(f"wrote {path}")
    return 0


def _codes_from(source: str, compute):
    """``compute()``, a damaged code file or record becoming one line naming ``source``."""
    try:
        return compute()
    except UserError:
        raise
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        raise UserError(f"{source}: cannot read code counts ({type(err).__name__}: {err})") from None


def main_codes(args: argparse.Namespace) -> int:
    check_plot_output(args.output)
    if args.level < 0:
        raise UserError(f"--level {args.level}: a code level counts from 0 (the first level)")
    if args.codebook_size is not None and args.codebook_size <= 0:
        raise UserError(f"--codebook-size {args.codebook_size}: must be a positive number of codes")
    series = {}
    for item in args.codes:
        path, _, label = item.partition("=")
        codes = _codes_from(f"--codes {path}", lambda: load_codes(path))
        if codes.ndim == 2 and args.level >= codes.shape[1] or codes.ndim == 1 and args.level > 0:
            levels = codes.shape[1] if codes.ndim == 2 else 1
            raise UserError(f"--level {args.level}: {path} has {levels} code level(s) (levels 0 to {levels - 1})")
        if codes.size and codes.min() < 0:
            raise UserError(f"--codes {path}: holds negative codes; expected codes 0, 1, 2, ...")
        series[label or Path(path).stem] = counts_from_codes(codes, args.level, args.codebook_size)
    if args.run:
        store = open_store(args.results_dir)
        records = {r.get("run_id"): r for r in store.records}
        for run in args.run:
            if Path(run).is_file():
                record = read_record(run)
            elif run in records:
                record = records[run]
            else:
                raise ConfigError(f"no run {run!r} in {args.results_dir}")
            counts = _codes_from(f"--run {run}", lambda: record_code_counts(record, args.level))
            if counts is None:
                raise ConfigError(f"run {run} has no code counts in its record (method_info.first_level_counts "
                                  "or method_info.codes_path); pass --codes FILE.npy instead")
            series[_codes_from(f"--run {run}", lambda: code_series_label(record))] = counts
    elif not args.codes:
        store = open_store(args.results_dir)
        records = filter_records(store.records, args.dataset, parse_where(args.where))
        series = _codes_from(f"--results-dir {args.results_dir}", lambda: code_counts_from_store(records, level=args.level))
    try:
        with writing("--output", args.output):
            path = plot_code_distribution(series, args.output, level=args.level, title=args.title)
    except PlotError as err:
        raise ConfigError(f"{err}: no run in {args.results_dir} carries code counts; pass --codes FILE.npy") from err
    print(f"wrote {path}")
    return 0
