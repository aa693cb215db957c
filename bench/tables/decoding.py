"""Decoding studies of the generative model from its run records: TIGER's Table 3 (category entropy
of the top-K under beam search and under temperature sampling, with the recall it costs) and the
invalid-ID rate of unconstrained decoding (TIGER Fig. 6)."""
from __future__ import annotations

import numpy as np

from bench.metrics import ENTROPY_UNIT
from bench.tables.budget import budget_text
from bench.tables.frame import choose_profiles, config_differences, latest_code, records_frame
from bench.tables.model import Cell, Row, Table, _profile_title
from bench.tables.names import is_generative, method_order, order_datasets


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


def build_decoding_table(records, kind: str = "diversity", profile: str | None = None) -> Table:
    """``diversity``: rows (run, decoding setting: beam, T=1.0, ...) x entropy@K and recall@K;
    ``invalid``: rows (run, decoding) x invalid_id_rate@K. Means over seeds of one configuration."""
    title = {"diversity": "Top-K category entropy by decoding (TIGER Table 3)",
             "invalid": "Invalid semantic IDs of unconstrained decoding"}[kind]
    table = Table(title, ["Method", "Decoding"], [], [], [], empty_message=f"(no generative runs with a {kind} study)")
    records = [r for r in records if r.get("status", "completed") == "completed" and is_generative(r.get("method"))
               and _study(r, kind)]
    if not records:
        return table
    frame = records_frame(records)
    frame, profiles, notes = choose_profiles(frame, profile)
    frame, code_notes = latest_code(frame)
    kept = set(frame["run_id"])
    by_id = {r["run_id"]: r for r in records if r["run_id"] in kept}
    metrics = sorted({m for r in by_id.values() for values in _study(r, kind).values() for m in values},
                     key=lambda m: (m.split("@")[0], int(m.split("@")[1]) if "@" in m and m.split("@")[1].isdigit() else 0))
    datasets = order_datasets(frame["dataset"])
    rows = []
    groups = sorted(frame.groupby(["dataset", "method", "config_key"], sort=False),
                    key=lambda g: method_order(g[1]["method_key"].iloc[0], g[1]["tokenizer"].iloc[0], g[0][1]))
    # several configurations of one method (e.g. a layers sweep): a column says what sets each apart
    differences = {}
    for (dataset, label), runs in frame.groupby(["dataset", "method"], sort=False):
        one_each = {key: by_id[ids.iloc[0]] for key, ids in runs.groupby("config_key", sort=False)["run_id"]}
        differences.update({(dataset, label, key): text for key, text in config_differences(one_each).items()})
    if any(differences.values()):
        table.label_columns = ["Method", "Configuration", "Decoding"]
    shown = []  # which runs each block of rows is: a researcher can open their records
    for (dataset, label, config_key), runs in groups:
        studies = [_study(by_id[run], kind) for run in runs["run_id"]]
        apart = differences[(dataset, label, config_key)]
        shown.append(f"{label}{f' ({apart})' if apart else ''}: {', '.join(sorted(runs['run_id']))}")
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
            rows.append(row)
    table.datasets, table.metrics, table.rows = datasets, metrics, rows
    table.profiles = profiles
    table.title = _profile_title(title, profiles)
    table.notes = [
        f"Test users. Entropy ({ENTROPY_UNIT}) of the top-K items' categories, averaged over users; samples ranked by the "
        "model's log-probability, duplicates removed. R@K: the beam row's is the run's test recall, a sampled "
        "row's that of its ranked samples." if kind == "diversity" else
        "Test users, beam search without the trie: share of the top-K generated semantic IDs that name no item."
    ] + [f"Runs: {'; '.join(shown)}."] + notes + code_notes
    return table
