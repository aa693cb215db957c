"""`bench render`: regenerate every table and plot under results/ from the run records."""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from bench.errors import UserError
from bench.records import PUBLISHED_STORE, iter_records

# hyper-parameters whose tables/curves are rendered when the store holds at least two values of them
# for one (dataset, method); the shipped sweep specs' keys are added to these
ABLATION_PARAMS = (
    "model.encoder_layers", "tokenizer.letter.levels", "tokenizer.letter.codebook_size", "train.tau",
    "tokenizer.letter.alpha", "tokenizer.letter.beta", "tokenizer.letter.n_clusters",
    "tokenizer.rqvae.levels", "tokenizer.rqvae.codebook_size",
)
SKIP_PARAMS = ("seed", "method", "tokenizer.name", "dataset")
SUFFIX = {"md": "md", "latex": "tex", "csv": "csv"}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "render", help="regenerate results/tables/* and results/plots/* from the results store",
        description="Write the main table, the tokenizer table and an ablation table per swept "
        "hyper-parameter (Markdown, LaTeX, CSV) to OUT/tables/, and the hyper-parameter curves and "
        "code-assignment histograms (PNG, PDF) to OUT/plots/, from the completed runs of the curated "
        f"store ({PUBLISHED_STORE}; `bench publish` puts runs there).",
    )
    parser.add_argument("--results-dir", default=PUBLISHED_STORE,
                        help=f"folder of the curated store [default: {PUBLISHED_STORE}]")
    parser.add_argument("--out", default="results", help="folder that gets tables/ and plots/ [default: results]")
    parser.add_argument("--dataset", action="append", help="only these datasets (repeatable)")
    parser.add_argument("--prune", action="store_true",
                        help="delete the files under OUT/tables/ and OUT/plots/ that this render did not write "
                        "(a table whose rows left the store); without it they are only listed")
    parser.set_defaults(func=main)


def swept_params() -> list[str]:
    params = list(ABLATION_PARAMS)
    from sweeps.spec import load_spec, shipped_specs

    for path in shipped_specs():  # a broken shipped spec is a ConfigError naming it, not skipped
        for dim in load_spec(path).dimensions:
            if not dim.keys:  # a `cases` dimension: its keys vary together, no single parameter
                continue
            key = dim.keys[0]
            if key not in SKIP_PARAMS and key not in params:
                params.append(key)
    return params


def varied(records, param: str) -> bool:
    """Whether some (dataset, method) has runs with two or more values of ``param``."""
    from bench.tables import records_frame

    frame = records_frame(records, params=[param])
    column = f"param:{param}"
    if frame.empty or frame[column].isna().all():
        return False
    counts = frame[frame[column].notna()].groupby(["dataset", "method"])[column].nunique()
    return bool((counts >= 2).any())


def curve_slice(spec, name: str, found: list[tuple[dict, dict]]) -> tuple[list[dict], str | None]:
    """The trials a sweep's curve of dimension ``name`` draws, and what it holds fixed: with other swept
    dimensions (alpha x beta), only the trials that hold those at the spec's default, as the papers'
    one-parameter curves do (otherwise each point would be the best over the others, chosen unsaid)."""
    others = [d.name for d in spec.dimensions if d.name != name and d.keys != ["seed"]]
    if not others or not all(o in spec.default for o in others):
        return [record for record, _ in found], None
    kept = [record for record, point in found if all(point.get(o) == spec.default[o] for o in others)]
    from bench.tables.names import format_value

    return kept, ", ".join(f"{o} = {format_value(spec.default[o])}" for o in others)


def render_all(records: list[dict], out: str | Path, plots: bool = True) -> list[Path]:
    from bench.plots import PlotError, code_counts_from_store, plot_code_distribution, plot_param_curves
    from bench.atomic import atomic_write_text
    from bench.tables import build_table, render

    out = Path(out)
    written = []
    tables = [("main", "main", None), ("tokenizers", "tokenizers", None)]
    params = [p for p in swept_params() if varied(records, p)]
    tables += [(f"ablation-{p}", "ablation", p) for p in params]
    from bench.tables.sweep import sweep_records, sweep_tables
    from sweeps.spec import shipped_specs

    sweeps = sweep_tables(records, shipped_specs())
    swept_runs = [table.run_ids for _, _, table in sweeps]
    compared = []
    for name, kind, param in tables:
        table = build_table(kind, records, param=param)
        if not table.rows:
            continue
        if kind == "ablation":
            if max(Counter(row.labels[0] for row in table.rows).values()) < 2:
                continue  # no method has two values of the parameter with everything else held fixed
            shown = table.run_ids
            if shown in swept_runs:
                continue  # exactly a sweep's trials: its table shows them, marked against the sweep's default
            compared.append((param, [r for r in records if r.get("run_id") in shown]))
        for fmt, suffix in SUFFIX.items():
            written.append(atomic_write_text(out / "tables" / f"{name}.{suffix}", render(table, fmt)))
    from bench.tables.decoding import build_decoding_table

    from bench.tables.coldstart import build_coldstart_table

    cold_table = build_coldstart_table(records)
    if cold_table.rows:
        for fmt, suffix in SUFFIX.items():
            written.append(atomic_write_text(out / "tables" / f"coldstart.{suffix}", render(cold_table, fmt)))
    for kind in ("diversity", "invalid"):
        table = build_decoding_table(records, kind)
        if table.rows:
            for fmt, suffix in SUFFIX.items():
                written.append(atomic_write_text(out / "tables" / f"decoding-{kind}.{suffix}", render(table, fmt)))
    for stem, _, table in sweeps:
        for fmt, suffix in SUFFIX.items():
            written.append(atomic_write_text(out / "tables" / f"{stem}.{suffix}", render(table, fmt)))
    if not plots:
        return written
    if cold_table.rows:
        from bench.plots import plot_coldstart

        for suffix in ("png", "pdf"):
            written.append(plot_coldstart(records, out / "plots" / f"coldstart.{suffix}"))
    for stem, spec, _ in sweeps:  # a curve per swept key, the default marked
        found = sweep_records(records, spec)
        for dim in spec.dimensions:
            # a dimension setting several keys to one value (layers: encoder = decoder) is drawn against the first
            if not dim.keys or dim.keys == ["seed"] or dim.cases:
                continue
            trials, held = curve_slice(spec, dim.name, found)
            for suffix in ("png", "pdf"):
                try:
                    written.append(plot_param_curves(trials, dim.keys[0], out / "plots" / f"{stem}-{dim.keys[0]}.{suffix}",
                                                     default=spec.default.get(dim.name), held=held))
                except PlotError:
                    break
    for param, shown in compared:  # the runs of its table: everything but the parameter held fixed
        for suffix in ("png", "pdf"):
            try:
                written.append(plot_param_curves(shown, param, out / "plots" / f"curve-{param}.{suffix}"))
            except PlotError:
                break
    by_dataset: dict[str, list[dict]] = {}
    for record in records:
        by_dataset.setdefault(record["dataset"], []).append(record)
    for dataset, part in sorted(by_dataset.items()):
        series = code_counts_from_store(part)
        if series:
            for suffix in ("png", "pdf"):
                written.append(plot_code_distribution(series, out / "plots" / f"codes-{dataset}.{suffix}"))
    return written


def unwritten(out: str | Path, written: list[Path]) -> list[Path]:
    """Files under ``out``/tables and ``out``/plots that a render did not write: stale unless put there by hand."""
    kept = {Path(p).resolve() for p in written}
    return sorted(p for folder in ("tables", "plots") if (Path(out) / folder).is_dir()
                  for p in (Path(out) / folder).iterdir() if p.is_file() and p.resolve() not in kept)


def main(args: argparse.Namespace) -> int:
    if args.prune and args.dataset:
        raise UserError("--prune with --dataset would delete the other datasets' tables: prune a full render")
    records = [r for r in iter_records(args.results_dir)
               if not args.dataset or r.get("dataset") in args.dataset]
    completed = [r for r in records if r.get("status", "completed") == "completed"]
    if not completed:
        print(f"no completed run records in {args.results_dir}")
        return 1
    written = render_all(completed, args.out)
    print(f"{len(completed)} completed runs in {args.results_dir} ({len(records) - len(completed)} failed left out)")
    for path in written:
        print(f"wrote {path}")
    for path in unwritten(args.out, written):
        if args.prune:
            path.unlink()
            print(f"deleted {path} (not written by this render)")
        else:
            print(f"not written by this render (stale? --prune deletes it): {path}")
    return 0
