"""`bench select`: choose, once, the runs of every table `bench render` writes, and freeze the choice
in a selection file (``results/selection.json``) with a reason for every run each table leaves out.

Choosing reads today's profiles and sweep specs (the profile's budget and default configuration, a
spec's trials and default setting); `bench render` then builds every table from the records and
this file alone, so editing a profile changes no rendered table until `bench select` runs again."""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from bench.commands.common import check_output, writing
from bench.errors import UserError
from bench.records import PUBLISHED_STORE, load_store
from bench.tables.selection import SELECTION_NAME, TableSelection, selection_json
from sweeps.spec import load_spec, shipped_specs
from bench.tables import records_frame
from bench.tables.coldstart import select_coldstart
from bench.tables.decoding import select_decoding
from bench.tables.model import select_ablation, select_architectures, select_main, select_tokenizers
from bench.tables.sweep import sweep_selections
from bench.atomic import atomic_write

# hyper-parameters whose ablation tables are rendered when the store holds at least two values of
# them for one (dataset, method); the shipped sweep specs' keys are added to these
ABLATION_PARAMS = (
    "model.encoder_layers", "tokenizer.letter.levels", "tokenizer.letter.codebook_size", "train.tau",
    "tokenizer.letter.alpha", "tokenizer.letter.beta", "tokenizer.letter.n_clusters",
    "tokenizer.rqvae.levels", "tokenizer.rqvae.codebook_size",
)
SKIP_PARAMS = ("seed", "method", "tokenizer.name", "dataset")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "select", help="choose the runs of every rendered table and write them to results/selection.json",
        description="Choose, from the completed runs of the curated store, the runs of every table `bench render` "
        "writes (main, tokenizers, sweeps, ablations, cold start, decoding) and write them, with a reason for every "
        f"run a table leaves out, to OUT/{SELECTION_NAME} (commit it). `bench render` builds the tables from that "
        "file and the records only.",
    )
    parser.add_argument("--results-dir", default=PUBLISHED_STORE,
                        help=f"folder of the curated store [default: {PUBLISHED_STORE}]")
    parser.add_argument("--out", default="results", help=f"folder that gets {SELECTION_NAME} [default: results]")
    parser.set_defaults(func=main)


def swept_params() -> list[str]:
    params = list(ABLATION_PARAMS)

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
    frame = records_frame(records, params=[param])
    column = f"param:{param}"
    if frame.empty or frame[column].isna().all():
        return False
    counts = frame[frame[column].notna()].groupby(["dataset", "method"])[column].nunique()
    return bool((counts >= 2).any())


def _compares(selection: TableSelection) -> bool:
    """Whether some method of an ablation has two values of its parameter (with everything else held fixed)."""
    rows = {tuple(p.labels) for p in selection.picks}
    return bool(rows) and max(Counter(labels[0] for labels in rows).values()) >= 2


def _skipped_for_ids(selection: TableSelection) -> dict | None:
    """Why an ablation that compared nothing after leaving out runs of other semantic IDs is not rendered."""
    ids = {run: why for run, why in selection.left_out.items() if why.startswith("semantic IDs differ")}
    if not ids:
        return None
    return {"why": "no method has two values left once runs with other semantic IDs than the default's are left out",
            "left_out": ids, "runs": sorted(selection.run_ids)}


def select_all(records) -> tuple[dict[str, TableSelection], dict[str, dict]]:
    """The selection of every table `bench render` writes (by file stem), and the tables that are
    not rendered though they had runs (why, and the runs they left out)."""
    records = [r for r in records if r.get("status", "completed") == "completed"]
    tables: dict[str, TableSelection] = {}
    for selection in (select_main(records), select_tokenizers(records), select_architectures(records),
                      select_coldstart(records),
                      select_decoding(records, "diversity"), select_decoding(records, "invalid")):
        if selection.picks:
            tables[selection.name] = selection
    sweeps, not_rendered = sweep_selections(records, shipped_specs())
    tables.update({s.name: s for s in sweeps})
    swept = [s.run_ids for s in sweeps]
    for param in swept_params():
        if not varied(records, param):
            continue
        selection = select_ablation(records, param)
        if not _compares(selection):
            skipped = _skipped_for_ids(selection)
            if skipped:
                not_rendered[selection.name] = skipped
            continue
        if selection.run_ids in swept:
            continue  # exactly a sweep's trials: its table shows them, marked against the sweep's default
        tables[selection.name] = selection
    return dict(sorted(tables.items())), dict(sorted(not_rendered.items()))


def main(args: argparse.Namespace) -> int:
    out = check_output(args.out, "--out", folder=True)
    store = load_store(args.results_dir)
    completed = store.completed
    if not completed:
        raise UserError(f"no completed run records to select from: {store.summary(used=0)}")
    tables, not_rendered = select_all(completed)
    path = Path(out) / SELECTION_NAME
    with writing("--out", out):
        atomic_write(path, selection_json(tables, not_rendered).encode("utf-8"))
    print(store.summary(used=len(completed)))
    for name, selection in tables.items():
        rows = len({tuple(p.labels) for p in selection.picks})
        print(f"{name}: {rows} row(s), {len(selection.run_ids)} run(s), {len(selection.left_out)} left out")
    for name, skipped in not_rendered.items():
        print(f"{name}: not rendered ({skipped['why']})")
    print(f"wrote {path}")
    return 0
