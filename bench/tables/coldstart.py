"""The cold-start table (TIGER Fig. 5's numbers): per method, Recall@K on the cold users (whose test
item no training or validation interaction names) next to Recall@K on all users."""
from __future__ import annotations

import pandas as pd

from bench.tables.frame import choose_profiles, latest_code, records_frame, select_best_configs
from bench.tables.model import Table, _make_rows, _mark_best, _profile_title
from bench.tables.names import is_generative, method_order, order_datasets


def coldstart_records(records) -> list[dict]:
    return [r for r in records if r.get("status", "completed") == "completed"
            and ((r.get("config") or {}).get("coldstart") or {}).get("enabled") and "test_cold" in r.get("metrics", {})]


def select_coldstart_runs(records, profile: str | None = None, ks=(10, 20, 50)):
    """The cold-start rows: one profile per dataset, one code identity per configuration, the
    validation-best configuration per method; the frame holds each run's cold-user Recall@K
    (``recall@K``) and all-user Recall@K (``all recall@K``). Returns the frame, metric names,
    profiles and notes. The table and the plot both draw these runs."""
    cold = records_frame(records, split="test_cold")
    every = records_frame(records, split="test")
    metrics = [f"recall@{k}" for k in ks if f"recall@{k}" in cold.columns]
    for metric in metrics:
        cold[f"all {metric}"] = cold["run_id"].map(dict(zip(every["run_id"], every.get(metric, pd.Series(dtype=float)))))
    frame, profiles, notes = choose_profiles(cold, profile)
    frame, code_notes = latest_code(frame)
    return select_best_configs(frame, ["dataset", "method"]), metrics, profiles, notes + code_notes


def shown_coldstart_runs(records, profile: str | None = None) -> dict[str, list[dict]]:
    """The runs the cold-start table shows, by row label (what the plot draws)."""
    records = coldstart_records(records)
    if not records:
        return {}
    frame = select_coldstart_runs(records, profile)[0]
    by_id = {r["run_id"]: r for r in records}
    shown: dict[str, list[dict]] = {}
    for run_id, label in zip(frame["run_id"], frame["method"]):
        shown.setdefault(label, []).append(by_id[run_id])
    return shown


def build_coldstart_table(records, ks=(10, 20, 50), profile: str | None = None) -> Table:
    """Rows: methods run under the cold-start protocol; columns: cold-user and all-user Recall@K."""
    table = Table("Cold-start recommendation", ["Method"], [], [], [],
                  empty_message="(no completed runs under the cold-start protocol)")
    records = coldstart_records(records)
    if not records:
        return table
    frame, metrics, profiles, notes = select_coldstart_runs(records, profile, ks)
    columns = [f"cold {m}" for m in metrics] + [f"all {m}" for m in metrics]
    for metric in metrics:
        frame[f"cold {metric}"] = frame[metric]
    datasets = order_datasets(frame["dataset"])
    keyed = _make_rows(frame, ["method"], lambda k, f: [k[0]],
                       lambda f: "generative" if is_generative(f["method_key"]) else "baseline", columns, datasets)
    keyed.sort(key=lambda t: method_order(t[1]["method_key"], t[1]["tokenizer"], t[0][0]))
    table.datasets, table.metrics, table.rows = datasets, columns, [r for _, _, r in keyed]
    table.profiles = profiles
    table.title = _profile_title(table.title, profiles)
    _mark_best(table.rows, table.columns)
    shown = set(frame["run_id"])
    cold_users = sorted({int((r.get("coldstart") or {}).get("cold_users", 0)) for r in records if r.get("run_id") in shown})
    table.notes = [f"Test split under the cold-start protocol (bench/coldstart.py): 'cold' = the users whose test item "
                   f"is unseen ({'/'.join(map(str, cold_users))} users), 'all' = every user. ID-based methods cannot "
                   "recommend unseen items (0 on cold users); generative models mix in at most "
                   "floor(epsilon K) unseen items (coldstart.epsilon)."] + notes
    return table
