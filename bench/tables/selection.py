"""Which runs a table shows, as data: the frozen selection that `bench select` writes and `bench
render` builds its tables from.

A :class:`TableSelection` names, per row and dataset, the run ids behind the row (:class:`Pick`),
how many configurations the validation-based choice of the row chose among, which row the table's
marks compare with, and for every other run of the store one short reason why the table leaves it
out. Choosing the runs reads today's profiles and sweep specs; building a table from a selection
reads only the records, so a rendered table changes only when the selection file does.

File (``results/selection.json``, stable sorted keys)::

    {"version": 1,
     "tables": {"main": {"kind": "main", "title": ..., "label_columns": [...], "profiles": {...},
                         "facts": {...},
                         "rows": [{"labels": [...], "dataset": "beauty", "runs": [...], "configs": 19,
                                   "group": "generative", "reference": false}, ...],
                         "left_out": {"<run id>": "<why>", ...}}, ...},
     "not_rendered": {"<table>": {"why": ..., "left_out": {...}}}}
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.errors import UserError

SELECTION_VERSION = 1
SELECTION_NAME = "selection.json"  # under `--out` (results/selection.json)

# keys whose value can change the items' semantic IDs: rows varying only other keys must share them
ID_KEY_PREFIXES = ("tokenizer.", "embed.", "baseline.cf_embed.", "data.", "split.")
ID_KEYS = ("seed", "data", "split", "dataset", "method", "tokenizer")


@dataclass
class Pick:
    """One row of a table on one dataset: its label cells and the runs (seeds) behind it."""

    labels: list[str]
    dataset: str
    runs: list[str]
    configs: int = 1  # configurations the validation-based choice chose among (1: no choice)
    group: str = "generative"  # baseline | generative | default | tuned | ablation
    reference: bool = False  # the row the table's marks compare with (its family, this dataset)


@dataclass
class TableSelection:
    """The runs of one table, and why every other run of the store is not in it."""

    name: str  # file stem: main, tokenizers, sweep-tau-cpu, ...
    kind: str  # main | tokenizers | ablation | sweep | coldstart | diversity | invalid
    title: str
    label_columns: list[str]
    picks: list[Pick] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)  # dataset -> compute profile shown
    facts: dict = field(default_factory=dict)  # what the kind needs beyond runs (param, sweep dims, ...)
    empty_message: str = "(no completed runs)"

    @property
    def run_ids(self) -> set[str]:
        return {run for pick in self.picks for run in pick.runs}

    def to_json(self) -> dict:
        return {"kind": self.kind, "title": self.title, "label_columns": list(self.label_columns),
                "rows": [asdict(pick) for pick in self.picks], "left_out": dict(self.left_out),
                "profiles": dict(self.profiles), "facts": self.facts}

    @classmethod
    def from_json(cls, name: str, data: dict) -> "TableSelection":
        return cls(name=name, kind=data["kind"], title=data["title"], label_columns=list(data["label_columns"]),
                   picks=[Pick(**row) for row in data["rows"]], left_out=dict(data.get("left_out", {})),
                   profiles=dict(data.get("profiles", {})), facts=dict(data.get("facts", {})))


def changes_item_ids(key: str) -> bool:
    """Whether varying config key ``key`` can change the items' semantic IDs (tokenizer, text
    embedding, CF embedding, data, split, seed, dataset, method)."""
    return key in ID_KEYS or key.startswith(ID_KEY_PREFIXES)


def keys_keep_item_ids(keys) -> bool:
    """Whether a table varies keys (at least one) none of which can change the items' semantic IDs:
    then its rows must use the default row's IDs at each seed."""
    keys = list(keys or [])
    return bool(keys) and not any(changes_item_ids(key) for key in keys)


def left_out_reasons(all_ids, shown: set[str], reasons: dict[str, str], fallback: str) -> dict[str, str]:
    """Why each run of ``all_ids`` that is not ``shown`` is left out: its reason in ``reasons``, else
    ``fallback``."""
    return {run: reasons.get(run, fallback) for run in sorted(all_ids) if run not in shown}


def selection_json(tables: dict[str, TableSelection], not_rendered: dict[str, dict]) -> str:
    """The selection file's text: stable (sorted keys, 1-space indent, trailing newline)."""
    data = {"version": SELECTION_VERSION, "tables": {name: t.to_json() for name, t in tables.items()},
            "not_rendered": not_rendered}
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def read_selection(path: str | Path, option: str = "--selection", select: str = "bench select"
                   ) -> dict[str, TableSelection]:
    """The tables of a selection file; a missing file is a UserError naming ``option`` and saying to
    run ``select`` (the `bench select` command that writes it) first."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{option}: no selection file {path}: run `{select}` first (it chooses each table's runs "
                        "and writes that file; `bench render` builds the tables from it)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != SELECTION_VERSION:
            raise ValueError(f"version {data.get('version')!r}, expected {SELECTION_VERSION}")
        return {name: TableSelection.from_json(name, table) for name, table in sorted(data["tables"].items())}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise UserError(f"{option} {path}: not a selection file `bench select` wrote ({err}); run `{select}` "
                        "again") from None


def check_runs(selection: TableSelection, known: set[str]) -> None:
    """UserError naming the runs a selection lists that are not completed runs of the store."""
    missing = sorted(selection.run_ids - known)
    if missing:
        raise UserError(f"table {selection.name}: the selection names run(s) that are not completed runs of the store: "
                        f"{', '.join(missing)}; run `bench select` again")
