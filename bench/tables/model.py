"""The table model (cells, rows, tables) and the paper tables built from run records."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from bench.tables.budget import budget_text, machines_note
from bench.tables.frame import (
    _protocol_notes, choose_profiles, latest_code, profile_budget, records_frame, select_best_configs, selection_notes,
    standard_protocol,
)
from bench.tables.names import (
    IMPROVEMENT_ROW, MAIN_METRICS, SELECT_METRIC, SIGNIFICANCE_MARK, dataset_name, format_value, is_generative,
    method_order, order_datasets, tokenizer_name, value_order,
)
from bench.tables.significance import _best_baselines, _significance, best_on_validation


def rank_marks(values: pd.Series) -> pd.Series:
    """'best' / 'second' / '' per cell of one column (higher is better; ties share a mark; a score
    of 0, e.g. an ID-based model on cold-start users, is never marked)."""
    distinct = [v for v in sorted(values.dropna().unique(), reverse=True) if v != 0]
    marks = pd.Series("", index=values.index)
    if distinct:
        marks[values == distinct[0]] = "best"
    if len(distinct) > 1:
        marks[values == distinct[1]] = "second"
    return marks


@dataclass
class Cell:
    mean: float
    std: float = float("nan")
    n: int = 1
    mark: str = ""  # best | second | ""
    p_value: float | None = None
    significant: bool = False
    worse: bool = False  # significant, and worse than the reference (ablation tables against a default)


@dataclass
class Row:
    labels: list[str]
    group: str  # baseline | generative
    cells: dict = field(default_factory=dict)  # (dataset, metric) -> Cell
    runs: dict = field(default_factory=dict)  # dataset -> DataFrame of the runs behind the row
    valid: dict = field(default_factory=dict)  # dataset -> mean validation SELECT_METRIC (for selection)
    budget: dict = field(default_factory=dict)  # dataset -> compact budget text
    code: dict = field(default_factory=dict)  # dataset -> short commit of the runs (+dirty)

    def budget_cell(self, datasets: list[str]) -> str:
        texts = {d: self.budget.get(d, "") for d in datasets if self.budget.get(d)}
        if len(set(texts.values())) <= 1:
            return next(iter(texts.values()), "")
        return "; ".join(f"{dataset_name(d)}: {t}" for d, t in texts.items())


@dataclass
class Table:
    title: str
    label_columns: list[str]
    datasets: list[str]
    metrics: list[str]
    rows: list[Row]
    summary_rows: list[tuple[str, dict]] = field(default_factory=list)  # (label, (d, m) -> (percent, significant))
    notes: list[str] = field(default_factory=list)
    empty_message: str = "(no completed runs)"
    profiles: dict = field(default_factory=dict)  # dataset -> the compute profile shown

    @property
    def columns(self) -> list[tuple[str, str]]:
        return [(d, m) for d in self.datasets for m in self.metrics]

    @property
    def show_budget(self) -> bool:
        return any(row.budget_cell(self.datasets) for row in self.rows)

    @property
    def run_ids(self) -> set[str]:
        """The runs the table's rows show."""
        return {run for row in self.rows for runs in row.runs.values() for run in runs["run_id"]}


def _make_rows(frame: pd.DataFrame, row_keys: list[str], label_fn, group_fn, metrics, datasets) -> list[Row]:
    rows = []
    for key, runs in frame.groupby(row_keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        first = runs.iloc[0]
        row = Row(labels=label_fn(key, first), group=group_fn(first))
        for dataset in datasets:
            part = runs[runs["dataset"] == dataset]
            if part.empty:
                continue
            row.runs[dataset] = part
            select = f"valid:{SELECT_METRIC}"
            if select in part.columns and part[select].notna().any():
                row.valid[dataset] = float(part[select].dropna().astype(float).mean())
            if "budget" in part.columns:
                row.budget[dataset] = budget_text(part["budget"])
            if "commit" in part.columns:
                row.code[dataset] = "/".join(sorted({
                    (str(c)[:7] if isinstance(c, str) else "unknown") + ("+dirty" if d else "")
                    for c, d in zip(part["commit"], part["dirty"])}))
            for metric in metrics:
                if metric not in part.columns:
                    continue
                values = part[metric].dropna().astype(float)
                if values.empty:
                    continue
                std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
                row.cells[(dataset, metric)] = Cell(float(values.mean()), std, int(len(values)))
        rows.append((key, first, row))
    return rows


def _mark_best(rows: list[Row], columns) -> None:
    for column in columns:
        present = [(i, r.cells[column].mean) for i, r in enumerate(rows) if column in r.cells]
        if not present:
            continue
        marks = rank_marks(pd.Series([v for _, v in present]))
        for (i, _), mark in zip(present, marks):
            rows[i].cells[column].mark = mark


def _profile_title(title: str, profiles: dict) -> str:
    names = sorted(set(profiles.values()))
    if not names:
        return title
    if len(names) == 1:
        return f"{title} (profile {names[0]})"
    return f"{title} (profiles: " + ", ".join(f"{dataset_name(d)} {p}" for d, p in profiles.items()) + ")"


def _notes(table_rows: list[Row], alpha: float, test: str, split: str, significance: bool,
           profiles: dict | None = None, datasets: list[str] | None = None) -> list[str]:
    notes = [f"{split.capitalize()} split, full-catalogue ranking, leave-one-out. "
             "Bold: best per column; underlined: second best."]
    names = sorted(set((profiles or {}).values()))
    if names:
        notes.append(f"Compute profile: {', '.join(names)}. Budget: optimizer steps · epochs · training time · "
                     "device×threads · why training stopped; rows with different budgets are not a like-for-like "
                     "comparison of the methods.")
    if any(c.n > 1 for r in table_rows for c in r.cells.values()):
        notes.append("Cells with several seeds: mean ± sample std over seeds (one configuration, one code version).")
    if significance:
        name = "Wilcoxon signed-rank" if test == "wilcoxon" else "paired t"
        notes.append(f"{SIGNIFICANCE_MARK}: better than the reference baseline (the baseline with the best validation "
                     f"NDCG@10 on the dataset) and significant at p < {alpha:g} (two-sided {name} test on per-user "
                     "values, same dataset fingerprint).")
    notes.append("Where a row has several configurations, the one with the best mean validation "
                 "NDCG@10 is shown.")
    notes.extend(machines_note(table_rows))
    dirty = [" ".join(r.labels) + (f" on {dataset_name(d)}" if len(datasets or []) > 1 else "")
             for r in table_rows for d, code in r.code.items() if "+dirty" in code]
    if dirty:
        notes.append(f"Made from a tree with uncommitted code changes (commit in the CSV): {', '.join(dirty)}.")
    return notes


def _prepare(records, split, params=(), profile: str | None = None) -> tuple[pd.DataFrame, dict, list[str]]:
    """The runs a table may use: one profile per dataset, one code identity per configuration, the
    profile's current training budget where a method has runs at it."""
    frame, protocol_notes = standard_protocol(records_frame(list(records), split=split, params=params))
    frame, profiles, notes = choose_profiles(frame, profile)
    frame, code_notes = latest_code(frame)
    frame, budget_notes = profile_budget(frame)
    return frame, profiles, notes + code_notes + budget_notes + protocol_notes


def _baseline_pool(frame: pd.DataFrame, metrics, datasets) -> list[Row]:
    if frame.empty:
        return []
    base = frame[~frame["method_key"].map(is_generative).astype(bool)]
    base = select_best_configs(base, ["dataset", "method"])
    rows = _make_rows(base, ["method"], lambda k, f: [k[0]], lambda f: "baseline", metrics, datasets)
    return [r for _, _, r in rows]


def build_main_table(records, metrics=MAIN_METRICS, split: str = "test", alpha: float = 0.05,
                     test: str = "wilcoxon", profile: str | None = None) -> Table:
    """TIGER Table 1: every method (label) x every dataset, plus the improvement row."""
    frame, profiles, kept_notes = _prepare(records, split, profile=profile)
    table = Table("Main results", ["Method"], [], list(metrics), [])
    if frame.empty:
        return table
    chosen = select_best_configs(frame, ["dataset", "method"])
    choices = selection_notes(frame, chosen, ["dataset", "method"])
    frame = chosen
    datasets = order_datasets(frame["dataset"])
    keyed = _make_rows(
        frame, ["method"], lambda k, f: [k[0]],
        lambda f: "generative" if is_generative(f["method_key"]) else "baseline", metrics, datasets,
    )
    keyed.sort(key=lambda t: method_order(t[1]["method_key"], t[1]["tokenizer"], t[0][0]))
    rows = [r for _, _, r in keyed]
    table.datasets, table.rows, table.profiles = datasets, rows, profiles
    table.title = _profile_title(table.title, profiles)
    columns = table.columns
    _mark_best(rows, columns)
    baselines = [r for r in rows if r.group == "baseline"]
    best_base = _best_baselines(baselines, columns)
    significance = split == "test"
    if significance:
        _significance(rows, best_base, alpha, test)
    improvement, compared = {}, []
    generative = [r for r in rows if r.group == "generative"]
    for dataset in datasets:
        best_gen = best_on_validation(generative, dataset)
        if best_gen is None:
            continue
        base = None
        for column in columns:
            if column[0] != dataset or column not in best_base or column not in best_gen.cells:
                continue
            base = best_base[column]
            g, b = best_gen.cells[column].mean, base.cells[column].mean
            if b > 0:
                improvement[column] = ((g - b) / b * 100, best_gen.cells[column].significant)
        if base is not None:
            compared.append(f"{dataset_name(dataset)}: {best_gen.labels[0]} vs {base.labels[0]}")
    if improvement:
        table.summary_rows.append((IMPROVEMENT_ROW, improvement))
    table.notes = _notes(rows, alpha, test, split, significance, profiles, datasets)
    if improvement:
        table.notes.insert(1, f"{IMPROVEMENT_ROW}: the generative (TIGER) row vs the non-generative row with the "
                              f"best validation NDCG@10 on each dataset, in percent ({'; '.join(compared)}).")
    table.notes.extend(_protocol_notes(frame) + choices + kept_notes)
    return table


def build_tokenizer_table(records, metrics=MAIN_METRICS, split: str = "test", alpha: float = 0.05,
                          test: str = "wilcoxon", profile: str | None = None) -> Table:
    """TIGER Table 2: the generative model with each item tokenizer (random_id, lsh, rqvae, letter)."""
    frame, profiles, kept_notes = _prepare(records, split, profile=profile)
    table = Table("Item tokenizers of the generative model", ["Tokenizer"], [], list(metrics), [],
                  empty_message="(no completed runs of the generative model)")
    if frame.empty:
        return table
    datasets_all = order_datasets(frame["dataset"])
    gen = frame[frame["method_key"].map(is_generative).astype(bool)].copy()
    if gen.empty:
        return table
    gen["tokenizer"] = gen["tokenizer"].fillna("?")
    chosen = select_best_configs(gen, ["dataset", "tokenizer"])
    choices = selection_notes(gen, chosen, ["dataset", "tokenizer"])
    gen = chosen
    datasets = [d for d in datasets_all if d in set(gen["dataset"])]
    keyed = _make_rows(gen, ["tokenizer"], lambda k, f: [tokenizer_name(k[0])],
                       lambda f: "generative", metrics, datasets)
    keyed.sort(key=lambda t: method_order(t[1]["method_key"], t[0][0], ""))
    return _finish(table, [r for _, _, r in keyed], frame, gen, datasets, profiles, metrics, split, alpha, test,
                   choices + kept_notes)


def build_ablation_table(records, param: str, metrics=MAIN_METRICS, split: str = "test", alpha: float = 0.05,
                         test: str = "wilcoxon", profile: str | None = None) -> Table:
    """One row per (method, value of ``param``), e.g. ``model.encoder_layers`` (TIGER Table 5)."""
    frame, profiles, kept_notes = _prepare(records, split, params=[param], profile=profile)
    column = f"param:{param}"
    table = Table(f"Ablation over {param}", ["Method", param], [], list(metrics), [],
                  empty_message=f"(no completed runs whose config has {param})")
    if frame.empty:
        return table
    datasets_all = order_datasets(frame["dataset"])
    part = frame[frame[column].notna()]
    if part.empty:
        return table
    part, held = _held_fixed(part, records, param)
    part = select_best_configs(part, ["dataset", "method", column])
    datasets = [d for d in datasets_all if d in set(part["dataset"])]
    kept_notes = held + kept_notes
    keyed = _make_rows(
        part, ["method", column], lambda k, f: [k[0], format_value(k[1])],
        lambda f: "generative" if is_generative(f["method_key"]) else "baseline", metrics, datasets,
    )
    keyed.sort(key=lambda t: (method_order(t[1]["method_key"], t[1]["tokenizer"], t[0][0]), value_order(t[0][1])))
    return _finish(table, [r for _, _, r in keyed], frame, part, datasets, profiles, metrics, split, alpha, test,
                   kept_notes)


def _held_fixed(part: pd.DataFrame, records, param: str) -> tuple[pd.DataFrame, list[str]]:
    """Per (dataset, method) only the runs that differ in ``param`` (and the seed) alone: the group of
    runs sharing every other setting with the most values of ``param`` (ties: more runs, newest), so
    an ablation row never mixes other changes in. Returns the runs and a note per narrowed group."""
    import copy

    from bench.identity import PATH_KEYS, config_identity

    rest, shown = {}, set(part["run_id"])
    for record in records:
        config = record.get("config")
        if isinstance(config, dict) and record.get("run_id") in shown:
            other = copy.deepcopy(config)
            node = other
            *parents, last = param.split(".")
            for key in parents:
                node = node.get(key, {}) if isinstance(node, dict) else {}
            if isinstance(node, dict):
                node.pop(last, None)
            rest[record["run_id"]] = config_identity(other, ("seed", *PATH_KEYS))
    part = part.assign(_rest=part["run_id"].map(rest))
    keep, notes = [], []
    column = f"param:{param}"
    for (dataset, method), group in part.groupby(["dataset", "method"], sort=False):
        options = [(g[column].nunique(), len(g), g["run_id"].max(), key) for key, g in group.groupby("_rest")]
        best = max(options)[3]
        chosen = group[group["_rest"] == best]
        keep.append(chosen)
        if len(options) > 1:
            notes.append(f"{method} on {dataset_name(dataset)}: only runs that differ in {param} alone are compared "
                         f"({len(group) - len(chosen)} run(s) with other changes left out).")
    return pd.concat(keep).drop(columns="_rest"), notes


def _finish(table: Table, rows: list[Row], frame: pd.DataFrame, shown: pd.DataFrame, datasets: list[str],
            profiles: dict, metrics, split: str, alpha: float, test: str, extra_notes: list[str]) -> Table:
    """Marks, significance against the reference baseline of ``frame``, title and notes of a
    tokenizer or ablation table whose rows are ``rows`` (made from the runs ``shown``)."""
    profiles = {d: p for d, p in profiles.items() if d in datasets}
    table.datasets, table.rows, table.profiles = datasets, rows, profiles
    table.title = _profile_title(table.title, profiles)
    _mark_best(rows, table.columns)
    significance = split == "test"
    if significance:
        _significance(rows, _best_baselines(_baseline_pool(frame, metrics, datasets), table.columns), alpha, test)
    table.notes = _notes(rows, alpha, test, split, significance, profiles) + _protocol_notes(shown) + extra_notes
    return table


def build_table(kind: str, records, param: str | None = None, **options) -> Table:
    records = list(records)
    if kind == "main":
        return build_main_table(records, **options)
    if kind == "tokenizers":
        return build_tokenizer_table(records, **options)
    if kind == "ablation":
        if not param:
            raise ValueError("an ablation table needs the config key to vary (--param)")
        return build_ablation_table(records, param, **options)
    raise ValueError(f"unknown table kind {kind!r}")
