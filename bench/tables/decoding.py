"""Decoding studies of the generative model from its run records: TIGER's Table 3 (category entropy
of the top-K under beam search and under temperature sampling, with the recall it costs) and the
invalid-ID rate of unconstrained decoding (TIGER Fig. 6)."""
from __future__ import annotations

import numpy as np

from bench.metrics import ENTROPY_UNIT
from bench.tables.budget import budget_text
from bench.tables.frame import choose_profiles, config_differences, latest_code, records_frame
from bench.tables.model import Cell, Row, Table, _finish_selection, _profile_title, details_note
from bench.tables.names import is_generative, method_order, order_datasets
from bench.tables.selection import Pick, TableSelection


def _study(record: dict, kind: str) -> dict:
    info = record.get("method_info") or {}
    if kind == "diversity":
        study = {setting: dict(values) for setting, values in (info.get("diversity") or {}).items()
                 if isinstance(values, dict)}
        if "beam" in study:  # the beam's recall is the run's test metric: the row it is compared with
            test = (record.get("metrics") or {}).get("test") or {}
            for metric in [m for m in study["beam"] if m.startswith("entropy@")]:
                recall = "recall@" + metric.removeprefix("entropy@")
                if recall in test:
                    study["beam"].setdefault(recall, test[recall])
        return study
    rates = info.get("invalid_id_rate") or {}
    return {setting: values for setting, values in rates.items() if isinstance(values, dict)}


TITLES = {"diversity": "Top-K category entropy by decoding (TIGER Table 3)",
          "invalid": "Invalid semantic IDs of unconstrained decoding"}


def _study_records(records, kind: str) -> list[dict]:
    return [r for r in records if r.get("status", "completed") == "completed" and is_generative(r.get("method"))
            and _study(r, kind)]


def select_decoding(records, kind: str = "diversity", profile: str | None = None, name: str | None = None
                    ) -> TableSelection:
    """The runs of a decoding table: generative runs with a ``kind`` study, one profile per dataset,
    one code identity per configuration; one pick per configuration (its decoding settings become
    rows when the table is built)."""
    records = list(records)
    selection = TableSelection(name or f"decoding-{kind}", kind, TITLES[kind], ["Method", "Decoding"],
                               empty_message=f"(no generative runs with a {kind} study)")
    studies = _study_records(records, kind)
    if not studies:
        return _finish_selection(selection, records, {}, f"no {kind} study in its record")
    frame = records_frame(studies)
    frame, profiles, reasons = choose_profiles(frame, profile)
    frame, other_code = latest_code(frame)
    reasons.update(other_code)
    groups = sorted(frame.groupby(["dataset", "method", "config_key"], sort=False),
                    key=lambda g: method_order(g[1]["method_key"].iloc[0], g[1]["tokenizer"].iloc[0], g[0][1]))
    selection.picks = [Pick([label], dataset, sorted(runs["run_id"]), 1, "generative")
                       for (dataset, label, _), runs in groups]
    selection.profiles = profiles
    return _finish_selection(selection, records, reasons, f"no {kind} study in its record")


def build_decoding_table(records, kind: str = "diversity", profile: str | None = None) -> Table:
    """``diversity``: rows (run, decoding setting: beam, T=1.0, ...) x entropy@K and recall@K;
    ``invalid``: rows (run, decoding) x invalid_id_rate@K. Means over seeds of one configuration."""
    records = list(records)
    return table_from_decoding_selection(records, select_decoding(records, kind, profile))


def table_from_decoding_selection(records, selection: TableSelection) -> Table:
    """A decoding table from exactly the runs ``selection`` names: per picked configuration one row
    per decoding setting of its runs' studies."""
    kind = selection.kind
    table = Table(_profile_title(TITLES[kind], selection.profiles), ["Method", "Decoding"], [], [], [],
                  empty_message=selection.empty_message, profiles=dict(selection.profiles))
    by_id = {r["run_id"]: r for r in _study_records(records, kind)}
    if not by_id or not selection.picks:
        return table
    frame = records_frame(list(by_id.values()))
    metrics = sorted({m for r in by_id.values() for values in _study(r, kind).values() for m in values},
                     key=lambda m: (m.split("@")[0], int(m.split("@")[1]) if "@" in m and m.split("@")[1].isdigit() else 0))
    # several configurations of one method (e.g. a layers sweep): a column says what sets each apart
    differences = {}
    for (dataset, label), picks in _by_row(selection.picks).items():
        one_each = {i: by_id[pick.runs[0]] for i, pick in enumerate(picks)}
        differences.update({(dataset, label, i): text for i, text in config_differences(one_each).items()})
    if any(differences.values()):
        table.label_columns = ["Method", "Configuration", "Decoding"]
    rows = []
    for (dataset, label), picks in _by_row(selection.picks).items():
        for i, pick in enumerate(picks):
            runs = frame[frame["run_id"].isin(pick.runs)]
            studies = [_study(by_id[run], kind) for run in pick.runs]
            apart = differences[(dataset, label, i)]
            for setting in dict.fromkeys(s for study in studies for s in study):
                labels = [label, apart or "–", setting]
                row = Row(labels=labels if len(table.label_columns) == 3 else [label, setting], group="generative")
                for metric in metrics:
                    values = [study[setting][metric] for study in studies if metric in study.get(setting, {})]
                    if values:
                        std = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
                        row.cells[(dataset, metric)] = Cell(float(np.mean(values)), std, len(values))
                row.runs[dataset] = runs
                row.budget[dataset] = budget_text(runs["budget"])
                row.configs[dataset] = pick.configs
                rows.append(row)
    table.datasets, table.metrics, table.rows = order_datasets(p.dataset for p in selection.picks), metrics, rows
    table.notes = [
        f"Test users. Entropy ({ENTROPY_UNIT}) of the top-K items' categories, averaged over users; samples ranked by the "
        "model's log-probability, duplicates removed. R@K: the beam row's is the run's test recall, a sampled "
        "row's that of its ranked samples." if kind == "diversity" else
        "Test users, beam search without the trie: share of the top-K generated semantic IDs that name no item.",
        "Cells: mean ± std over n seeds (no ± at n = 1), a row per configuration and decoding; no significance test.",
        details_note(table, users=False)]
    return table


def _by_row(picks: list[Pick]) -> dict[tuple[str, str], list[Pick]]:
    out: dict[tuple[str, str], list[Pick]] = {}
    for pick in picks:
        out.setdefault((pick.dataset, pick.labels[0]), []).append(pick)
    return out
