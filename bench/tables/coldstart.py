"""The cold-start table (TIGER Fig. 5's numbers): per method, Recall@K on the cold users (whose test
item no training or validation interaction names) next to Recall@K on all users."""
from __future__ import annotations

import pandas as pd

from bench.tables.frame import best_configs, choose_profiles, latest_code, records_frame
from bench.tables.model import (
    COUNTS, Table, _finish_selection, _group, _mark_best, _profile_title, details_note, frame_picks, rows_from_picks,
)
from bench.tables.names import method_order, order_datasets
from bench.tables.selection import TableSelection

KS = (10, 20, 50)


def coldstart_records(records) -> list[dict]:
    return [r for r in records if r.get("status", "completed") == "completed"
            and ((r.get("config") or {}).get("coldstart") or {}).get("enabled") and "test_cold" in r.get("metrics", {})]


def coldstart_frame(records, ks=KS) -> tuple[pd.DataFrame, list[str]]:
    """One row per cold-start run with its cold-user Recall@K (``recall@K``) and all-user Recall@K
    (``all recall@K``), and the metric names."""
    cold = records_frame(records, split="test_cold")
    every = records_frame(records, split="test")
    metrics = [f"recall@{k}" for k in ks if f"recall@{k}" in cold.columns]
    for metric in metrics:
        cold[f"all {metric}"] = cold["run_id"].map(dict(zip(every["run_id"], every.get(metric, pd.Series(dtype=float)))))
        cold[f"cold {metric}"] = cold[metric]
    return cold, metrics


def select_coldstart(records, profile: str | None = None, name: str = "coldstart") -> TableSelection:
    """The cold-start rows: one profile per dataset, one code identity per configuration, per method
    the configuration best on validation. The table and the plot both draw these runs."""
    records = list(records)
    selection = TableSelection(name, "coldstart", "Cold-start recommendation", ["Method"],
                               empty_message="(no completed runs under the cold-start protocol)")
    cold = coldstart_records(records)
    if not cold:
        return _finish_selection(selection, records, {}, "not a cold-start run")
    frame, _ = coldstart_frame(cold)
    frame, profiles, reasons = choose_profiles(frame, profile)
    frame, other_code = latest_code(frame)
    frame, other_config, counts = best_configs(frame, ["dataset", "method"])
    reasons.update({**other_code, **other_config})
    picked = frame_picks(frame, ["method"], lambda k, f: [k[0]], _group, lambda k, d: counts[(d, k[0])])
    datasets = order_datasets(frame["dataset"])
    picked.sort(key=lambda t: (method_order(t[0]["method_key"], t[0]["tokenizer"], t[1].labels[0]),
                               datasets.index(t[1].dataset)))
    selection.picks, selection.profiles = [pick for _, pick in picked], profiles
    return _finish_selection(selection, records, reasons, "not a cold-start run")


def shown_coldstart_runs(records, profile: str | None = None) -> dict[str, list[dict]]:
    """The runs the cold-start table shows, by row label (what the plot draws)."""
    records = coldstart_records(records)
    by_id = {r["run_id"]: r for r in records}
    shown: dict[str, list[dict]] = {}
    for pick in select_coldstart(records, profile).picks:
        shown.setdefault(pick.labels[0], []).extend(by_id[run] for run in pick.runs)
    return shown


def table_from_coldstart_selection(records, selection: TableSelection, ks=KS) -> Table:
    """The cold-start table from exactly the runs ``selection`` names."""
    table = Table(_profile_title(selection.title, selection.profiles), list(selection.label_columns), [], [], [],
                  empty_message=selection.empty_message, profiles=dict(selection.profiles))
    records = coldstart_records(records)
    if not records or not selection.picks:
        return table
    frame, metrics = coldstart_frame(records, ks)
    columns = [f"cold {m}" for m in metrics] + [f"all {m}" for m in metrics]
    table.datasets = order_datasets(p.dataset for p in selection.picks)
    table.metrics, table.rows = columns, rows_from_picks(frame, selection.picks, columns)
    _mark_best(table.rows, table.columns)
    shown = table.run_ids
    cold_users = sorted({int((r.get("coldstart") or {}).get("cold_users", 0)) for r in records if r.get("run_id") in shown})
    table.notes = [f"Test split under the cold-start protocol (bench/coldstart.py): 'cold' = the users whose test item "
                   f"is unseen ({'/'.join(map(str, cold_users))} users), 'all' = every user. ID-based methods cannot "
                   "recommend unseen items (0 on cold users); generative models mix in at most "
                   "floor(epsilon K) unseen items (coldstart.epsilon).",
                   f"Cells: {COUNTS}; no significance test.",
                   details_note(table, users=False)]
    return table


def build_coldstart_table(records, ks=KS, profile: str | None = None) -> Table:
    """Rows: methods run under the cold-start protocol; columns: cold-user and all-user Recall@K."""
    records = list(records)
    return table_from_coldstart_selection(records, select_coldstart(records, profile), ks)
