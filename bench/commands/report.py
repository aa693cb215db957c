"""`bench report`: one self-contained HTML page of the curated results (tables, plots, a section per
run), for a browser, offline. `bench render` writes the same page beside the tables."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.atomic import atomic_write_text
from bench.commands.common import check_output, writing
from bench.commands.render import _only, render_all
from bench.errors import UserError
from bench.records import PUBLISHED_STORE, load_store
from bench.report import REPORT_NAME
from bench.tables.selection import SELECTION_NAME, read_selection


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help=f"write one self-contained HTML page of the results (default: results/{REPORT_NAME})",
        description="Write one static HTML page of the curated results: every table of the selection file "
        "(bench select) with its notes and budgets, the plots embedded, and a section per shown run (config, "
        "budget, machine, code version, learning curve, tokenizer statistics) that the rows link to. It loads "
        "nothing from anywhere: open it offline in any browser. Writes only OUT (tables and plots are drawn in a "
        "temporary folder); `bench render` writes the same page beside results/tables/.",
    )
    parser.add_argument("--results-dir", default=PUBLISHED_STORE,
                        help=f"folder of the curated store [default: {PUBLISHED_STORE}]")
    parser.add_argument("--selection", metavar="FILE", default=f"results/{SELECTION_NAME}",
                        help=f"the selection file to build from [default: results/{SELECTION_NAME}]")
    parser.add_argument("--out", metavar="FILE", default=f"results/{REPORT_NAME}",
                        help=f"the HTML file to write [default: results/{REPORT_NAME}]")
    parser.add_argument("--dataset", action="append", help="only these datasets (repeatable)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"--out {out}: the report is an HTML file (give a name ending in .html)")
    check_output(out, "--out")
    store = load_store(args.results_dir)
    completed = [r for r in store.completed if not args.dataset or r.get("dataset") in args.dataset]
    if not completed:
        print(f"no completed run records to report: {store.summary(used=0)}")
        return 1
    selection = read_selection(args.selection, "--selection", "bench select")
    with tempfile.TemporaryDirectory(prefix="bench-report-") as scratch:
        render_all(completed, scratch, selection={n: _only(s, args.dataset) for n, s in selection.items()},
                   datasets=args.dataset)
        html = (Path(scratch) / REPORT_NAME).read_text(encoding="utf-8")
    with writing("--out", str(out.parent)):
        path = atomic_write_text(out, html)
    print(store.summary(used=len(completed)))
    print(f"wrote {path} ({len(html) / 1e6:.1f} MB): open it in a browser")
    return 0
