"""`bench table`: render the results store as Markdown, LaTeX (booktabs) or CSV."""
from __future__ import annotations

import argparse

from bench.records import iter_records
from bench.tables import records_frame, render_table


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "table", help="render run records as a paper-style table",
        description="One table per dataset: one row per method (mean ± std over seeds), one column per "
        "metric; the best value per column in bold, the second underlined.",
    )
    parser.add_argument("--results-dir", default="results/runs", help="folder of the results store")
    parser.add_argument("--format", choices=("md", "latex", "csv"), default="md")
    parser.add_argument("--split", choices=("test", "valid"), default="test", help="which metrics to show")
    parser.add_argument("--dataset", action="append", help="only these datasets (repeatable)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    frame = records_frame(iter_records(args.results_dir), split=args.split)
    if frame.empty:
        print(f"no completed run records in {args.results_dir}")
        return 1
    if args.dataset:
        frame = frame[frame["dataset"].isin(args.dataset)]
    for dataset, part in frame.groupby("dataset", sort=True):
        print(f"{dataset} ({args.split})" if args.format == "md" else f"% {dataset} ({args.split})")
        print(render_table(part, args.format))
        print()
    return 0
