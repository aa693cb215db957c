"""`bench render`: regenerate every table and plot under results/ from the run records and the
selection file `bench select` wrote: a pure function of the two (no profile or spec is read)."""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from bench.commands.common import check_output, writing
from bench.errors import UserError
from bench.records import PUBLISHED_STORE, load_store
from bench.tables.selected import build_selected
from bench.tables.selection import check_runs, read_selection, SELECTION_NAME, TableSelection
from bench.tables.names import format_value
from bench.atomic import atomic_write_text
from bench.report import REPORT_NAME, render_report
from bench.plots import (code_counts_from_store, plot_code_distribution, plot_coldstart, plot_param_curves,
                         plot_time_to_quality, PlotError)
from bench.tables import render
from bench.commands.select import select_all

SUFFIX = {"md": "md", "latex": "tex", "csv": "csv"}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "render", help="regenerate results/tables/* and results/plots/* from the results store and the selection file",
        description="Write every table that the selection file (OUT/selection.json, written by `bench select`) "
        "names (Markdown, LaTeX, CSV) to OUT/tables/, and the hyper-parameter curves and code-assignment "
        f"histograms (PNG, PDF) to OUT/plots/, and the HTML page of all of it to OUT/{REPORT_NAME} (bench report), "
        "from exactly the runs the file lists, read from the curated "
        f"store ({PUBLISHED_STORE}; `bench publish` puts runs there). Reads no profile or sweep spec: run "
        "`bench select` again to choose the runs anew.",
    )
    parser.add_argument("--results-dir", default=PUBLISHED_STORE,
                        help=f"folder of the curated store [default: {PUBLISHED_STORE}]")
    parser.add_argument("--out", default="results", help="folder that gets tables/ and plots/ and holds "
                        f"{SELECTION_NAME} [default: results]")
    parser.add_argument("--selection", metavar="FILE",
                        help=f"the selection file to build from [default: OUT/{SELECTION_NAME}]")
    parser.add_argument("--dataset", action="append", help="only these datasets (repeatable)")
    parser.add_argument("--prune", action="store_true",
                        help="delete the files under OUT/tables/ and OUT/plots/ that this render did not write "
                        "(a table whose rows left the store); without it they are only listed")
    parser.set_defaults(func=main)


def curve_slice(selection: TableSelection, name: str) -> tuple[set[str], str | None]:
    """The runs a sweep's curve of dimension ``name`` draws, and what it holds fixed: with other swept
    dimensions (alpha x beta), only the settings that hold those at the spec's default, as the papers'
    one-parameter curves do (otherwise each point would be the best over the others, chosen unsaid)."""
    dims = [d["name"] for d in selection.facts.get("dims", [])]
    default = selection.facts.get("default") or {}
    others = [d for d in dims if d != name]
    if not others or not all(o in default for o in others):
        return selection.run_ids, None
    at = [dims.index(o) for o in others]
    labels = selection.facts.get("default_labels") or []
    kept = {run for pick in selection.picks if all(pick.labels[i] == labels[i] for i in at) for run in pick.runs}
    return kept, ", ".join(f"{o} = {format_value(default[o])}" for o in others)


def _only(selection: TableSelection, datasets) -> TableSelection:
    """``selection`` with the picks of ``datasets`` only (all when None)."""
    if not datasets:
        return selection
    return replace(selection, picks=[p for p in selection.picks if p.dataset in datasets])


def render_all(records: list[dict], out: str | Path, plots: bool = True,
               selection: dict[str, TableSelection] | None = None, datasets=None) -> list[Path]:
    """Write the tables (and plots) of ``selection`` (by file stem; by default what `bench select`
    would choose from ``records`` now) built from ``records``; the written paths."""
    if selection is None:
        selection = select_all(records)[0]
    selection = {name: _only(s, datasets) for name, s in sorted(selection.items())}
    completed = {r.get("run_id") for r in records if r.get("status", "completed") == "completed"}
    for table_selection in selection.values():  # every named run is in the store before anything is written
        check_runs(table_selection, completed)
    out = Path(out)
    written, drawn, built = [], {}, {}
    for name, table_selection in selection.items():
        table = built[name] = build_selected(records, table_selection)
        if not table.rows:
            continue
        drawn[name] = table_selection
        for fmt, suffix in SUFFIX.items():
            written.append(atomic_write_text(out / "tables" / f"{name}.{suffix}", render(table, fmt)))
    if not plots:
        return written
    by_id = {r.get("run_id"): r for r in records}
    for name, table_selection in drawn.items():
        shown = [by_id[run] for run in sorted(table_selection.run_ids)]
        if table_selection.kind == "coldstart":
            for suffix in ("png", "pdf"):
                written.append(plot_coldstart(shown, out / "plots" / f"coldstart.{suffix}"))
        elif table_selection.kind == "architectures":  # equal compute: validation NDCG@10 against time and examples
            row_of = {run: ", ".join(pick.labels) for pick in table_selection.picks for run in pick.runs}
            for suffix in ("png", "pdf"):
                try:
                    written.append(plot_time_to_quality(shown, out / "plots" / f"quality-{name}.{suffix}",
                                                        title="Time to quality: the architecture table's rows",
                                                        series=lambda record: row_of[record["run_id"]]))
                except PlotError:
                    break
        elif table_selection.kind == "sweep":  # a curve per swept key, the default marked
            written += _sweep_curves(name, table_selection, by_id, out, plot_param_curves, PlotError)
        elif table_selection.kind == "ablation":  # the runs of its table: everything but the parameter held fixed
            param = table_selection.facts["param"]
            for suffix in ("png", "pdf"):
                try:
                    written.append(plot_param_curves(shown, param, out / "plots" / f"curve-{param}.{suffix}"))
                except PlotError:
                    break
    default_fits = {run for s in drawn.values() if s.kind == "tokenizers"
                    for pick in s.picks if pick.group == "default" for run in pick.runs}
    by_dataset: dict[str, list[dict]] = {}
    for record in records:
        if not datasets or record.get("dataset") in datasets:
            by_dataset.setdefault(record["dataset"], []).append(record)
    for dataset, part in sorted(by_dataset.items()):
        series = code_counts_from_store(part, prefer=default_fits)
        if series:
            for suffix in ("png", "pdf"):
                written.append(plot_code_distribution(series, out / "plots" / f"codes-{dataset}.{suffix}"))
    # the browsable page of all of it, beside tables/ and plots/ (bench report writes it alone)
    html = render_report(records, selection, [path for path in written if Path(path).suffix == ".png"], built=built)
    written.append(atomic_write_text(out / REPORT_NAME, html))
    return written


def _sweep_curves(stem: str, selection: TableSelection, by_id: dict, out: Path, plot_param_curves, PlotError) -> list[Path]:
    written = []
    default = selection.facts.get("default") or {}
    for dim in selection.facts.get("dims", []):
        # a dimension setting several keys to one value (layers: encoder = decoder) is drawn against the first
        if not dim["keys"] or dim["cases"]:
            continue
        runs, held = curve_slice(selection, dim["name"])
        trials = [by_id[run] for run in sorted(runs)]
        for suffix in ("png", "pdf"):
            try:
                written.append(plot_param_curves(trials, dim["keys"][0], out / "plots" / f"{stem}-{dim['keys'][0]}.{suffix}",
                                                 default=default.get(dim["name"]), held=held))
            except PlotError:
                break
    return written


def unwritten(out: str | Path, written: list[Path]) -> list[Path]:
    """Files under ``out``/tables and ``out``/plots that a render did not write: stale unless put there by hand."""
    kept = {Path(p).resolve() for p in written}
    return sorted(p for folder in ("tables", "plots") if (Path(out) / folder).is_dir()
                  for p in (Path(out) / folder).iterdir() if p.is_file() and p.resolve() not in kept)


def _selection_file(args: argparse.Namespace) -> tuple[Path, str, str]:
    """The selection file a render builds from, the option that named it, and the command that writes it."""
    if args.selection:
        return Path(args.selection), "--selection", "bench select"
    options = "".join(f" {flag} {value}" for flag, value, default in (
        ("--results-dir", args.results_dir, PUBLISHED_STORE), ("--out", args.out, "results")) if str(value) != default)
    return Path(args.out) / SELECTION_NAME, "--out", f"bench select{options}"


def main(args: argparse.Namespace) -> int:
    if args.prune and args.dataset:
        raise UserError("--prune with --dataset would delete the other datasets' tables: prune a full render")
    check_output(args.out, "--out", folder=True)
    store = load_store(args.results_dir)
    records = [r for r in store.records if not args.dataset or r.get("dataset") in args.dataset]
    completed = [r for r in records if r.get("status", "completed") == "completed"]
    other = [("completed runs of other datasets (--dataset)", len(store.completed) - len(completed))]
    if not completed:
        print(f"no completed run records to render: {store.summary(used=0, extra=other)}")
        return 1
    selection = read_selection(*_selection_file(args))
    with writing("--out", args.out):
        written = render_all(completed, args.out, selection=selection, datasets=args.dataset)
    print(store.summary(used=len(completed), extra=other))
    for path in written:
        print(f"wrote {path}")
    for path in unwritten(args.out, written):
        if args.prune:
            path.unlink()
            print(f"deleted {path} (not written by this render)")
        else:
            print(f"not written by this render (stale? --prune deletes it): {path}")
    return 0
