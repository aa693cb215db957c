"""A table from its frozen selection: the builder of the selection's kind over the records it names."""
from __future__ import annotations

from bench.tables.coldstart import table_from_coldstart_selection
from bench.tables.decoding import table_from_decoding_selection
from bench.tables.model import table_from_selection
from bench.tables.selection import TableSelection, check_runs

# a selection's kind -> its table builder; every other kind is a model table (main, tokenizers, ablation, sweep)
BUILDERS = {
    "diversity": table_from_decoding_selection,
    "invalid": table_from_decoding_selection,
    "coldstart": table_from_coldstart_selection,
}


def build_selected(records, selection: TableSelection, **options):
    """The table of ``selection`` from ``records`` (which must hold its runs): the builder of its kind."""
    by_id = {r.get("run_id"): r for r in records if r.get("status", "completed") == "completed"}
    check_runs(selection, set(by_id))
    shown = [by_id[run] for run in sorted(selection.run_ids)]
    if selection.kind in BUILDERS:
        return BUILDERS[selection.kind](shown, selection)
    return table_from_selection(shown, selection, **options)
