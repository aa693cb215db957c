"""Paper-style tables from run records: pure functions from records to Markdown / LaTeX / CSV.

Kinds (``bench table --kind``):

- ``main``: TIGER Table 1. Methods x datasets x R@5 N@5 R@10 N@10, best per column bold, second
  underlined, and an "Improvement over best baseline" row (best generative vs best non-generative).
- ``tokenizers``: TIGER Table 2. One row per item tokenizer of the generative model.
- ``ablation``: one row per value of a config key (e.g. ``model.encoder_layers``, TIGER Table 5).
- ``simple``: one table per dataset, one row per method (``render_table``).

Every cell is the mean over seeds (± the sample std where there are several). Where a row label
(or a row's parameter value) has several configurations in the store, the one with the best mean
validation NDCG@10 is shown (model selection on validation data, never on test). A marker (†) says
that a row is better than the best baseline of that column and that a two-sided paired test on
per-user values (Wilcoxon signed-rank by default; recall@K: per-user hit, NDCG@K: per-user gain,
from ``per_user_test_rank``, averaged over seeds) gives p < 0.05; only records with the same dataset
fingerprint are paired.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from tabulate import tabulate

DEFAULT_METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@20", "ndcg@20")
MAIN_METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
SELECT_METRIC = "ndcg@10"  # model selection among configurations, on validation
SHORT = {"recall": "R", "ndcg": "N", "coverage": "Cov"}

GENERATIVE_METHODS = ("tiger",)
TOKENIZER_ORDER = ("random_id", "lsh", "rqvae", "letter")
TOKENIZER_NAMES = {"random_id": "Random ID", "lsh": "LSH", "rqvae": "RQ-VAE", "letter": "LETTER"}
BASELINE_ORDER = ("random", "pop", "gru4rec", "bert4rec", "sasrec")
DATASET_ORDER = ("sports", "beauty", "toys", "ml-100k")
DATASET_NAMES = {"sports": "Sports", "beauty": "Beauty", "toys": "Toys", "ml-100k": "ML-100K",
                 "synthetic": "Synthetic"}
SIGNIFICANCE_MARK = "†"
IMPROVEMENT_ROW = "Improvement over best baseline"
# keys that say where files went, not what ran
PATH_KEYS = ("results_dir", "work_dir", "data_dir")


def metric_header(metric: str) -> str:
    name, _, k = metric.partition("@")
    return f"{SHORT.get(name, name)}@{k}"


def dataset_name(dataset: str) -> str:
    return DATASET_NAMES.get(dataset, dataset)


def _get(config, dotted: str):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def config_identity(config: dict | None, drop: Iterable[str] = ("seed", *PATH_KEYS)) -> str:
    """A hash of what ran, seeds and paths left out: runs sharing it are seeds of one configuration."""
    if not isinstance(config, dict):
        return ""
    drop = set(drop)
    text = json.dumps({k: v for k, v in config.items() if not k.startswith("_") and k not in drop},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def param_applies(record: dict, param: str) -> bool:
    """Whether ``param`` means something for this run: every config holds every section's defaults,
    so e.g. ``model.*`` is ignored for baselines and ``tokenizer.letter.*`` for other tokenizers."""
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    method = record.get("method") or config.get("method")
    parts = param.split(".")
    if parts[0] in ("tokenizer", "model", "train", "decode"):
        if method not in GENERATIVE_METHODS:
            return False
        if parts[0] == "tokenizer" and len(parts) > 2 and parts[1] in TOKENIZER_NAMES:
            return _get(config, "tokenizer.name") == parts[1]
        return True
    if parts[0] == "baseline":
        if method in GENERATIVE_METHODS:
            return False
        if len(parts) > 2 and parts[1] in ("sasrec", "bert4rec", "gru4rec"):
            return method == parts[1]
    return True


def records_frame(records, split: str = "test", params: Iterable[str] = ()) -> pd.DataFrame:
    """One row per completed run: dataset, label (column ``method``), seed and the ``split`` metrics,
    plus ``method_key``, ``tokenizer``, ``fingerprint``, ``config_key``, validation metrics
    (``valid:<metric>``, for model selection), ``ranks`` (per-user test ranks) and ``param:<key>``."""
    params = list(params)
    rows = []
    for record in records:
        if record.get("status", "completed") != "completed":
            continue
        config = record.get("config") if isinstance(record.get("config"), dict) else {}
        metrics = record.get("metrics", {})
        method_key = record.get("method") or config.get("method") or record.get("label")
        row = {"dataset": record["dataset"], "method": record["label"], "seed": record.get("seed"),
               "run_id": record.get("run_id", ""), **metrics.get(split, {})}
        row["method_key"] = method_key
        row["tokenizer"] = _get(config, "tokenizer.name") if method_key in GENERATIVE_METHODS else None
        row["fingerprint"] = (record.get("dataset_fingerprint") or {}).get("sha256")
        row["config_key"] = config_identity(config) if config else f"label:{record['label']}"
        row["profile"] = config.get("profile")
        for name, value in metrics.get("valid", {}).items():
            row[f"valid:{name}"] = value
        ranks = record.get("per_user_test_rank")
        row["ranks"] = np.asarray(ranks, dtype=np.int64) if ranks is not None else None
        for key in params:
            row[f"param:{key}"] = _hashable(_get(config, key)) if param_applies(record, key) else None
        rows.append(row)
    return pd.DataFrame(rows)


def _hashable(value):
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


def filter_records(records, datasets=None, where: dict | None = None) -> list[dict]:
    """Records of these datasets whose config has these values (``where``: dotted key -> value)."""
    kept = []
    for record in records:
        if datasets and record.get("dataset") not in datasets:
            continue
        config = record.get("config") or {}
        if where and not all(_same(_get(config, key), value) for key, value in where.items()):
            continue
        kept.append(record)
    return kept


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a == b or str(a) == str(b)


def select_best_configs(frame: pd.DataFrame, keys: list[str], metric: str = SELECT_METRIC) -> pd.DataFrame:
    """Within each group of ``keys``, only the runs of the configuration with the best mean
    validation ``metric`` (ties: more runs, then the newest)."""
    if frame.empty or "config_key" not in frame.columns:
        return frame
    column = f"valid:{metric}"
    keep = []
    for _, group in frame.groupby(keys, sort=False, dropna=False):
        if group["config_key"].nunique() <= 1:
            keep.append(group)
            continue
        scores = []
        for key, runs in group.groupby("config_key", sort=False):
            score = runs[column].mean() if column in runs.columns else float("nan")
            score = -math.inf if pd.isna(score) else float(score)
            scores.append((score, len(runs), runs["run_id"].max(), key))
        best = max(scores)[3]
        keep.append(group[group["config_key"] == best])
    return pd.concat(keep) if keep else frame.iloc[0:0]


def selection_notes(frame: pd.DataFrame, chosen: pd.DataFrame, keys: list[str],
                    metric: str = SELECT_METRIC) -> list[str]:
    """One line per group of ``keys`` with several configurations in ``frame``: which runs the
    table shows (``chosen``, what :func:`select_best_configs` kept), so a reader can find their
    configuration."""
    if frame.empty or "config_key" not in frame.columns:
        return []
    shown = {key: sorted(group["run_id"]) for key, group in chosen.groupby(keys, sort=False, dropna=False)}
    notes = []
    for group_key, group in frame.groupby(keys, sort=False, dropna=False):
        n_configs = group["config_key"].nunique()
        if n_configs <= 1:
            continue
        values = dict(zip(keys, group_key))
        name = " ".join(str(TOKENIZER_NAMES.get(v, v)) for k, v in values.items() if k != "dataset")
        where = f" on {dataset_name(values['dataset'])}" if "dataset" in values else ""
        notes.append(f"{name}{where}: best of {n_configs} configurations by validation {metric.upper()}; "
                     f"shown: {', '.join(shown[group_key])}.")
    return notes


def rank_marks(values: pd.Series) -> pd.Series:
    """'best' / 'second' / '' per cell of one column (higher is better; ties share a mark)."""
    distinct = sorted(values.dropna().unique(), reverse=True)
    marks = pd.Series("", index=values.index)
    if distinct:
        marks[values == distinct[0]] = "best"
    if len(distinct) > 1:
        marks[values == distinct[1]] = "second"
    return marks


# ---------------------------------------------------------------------- significance
def per_user_values(ranks: np.ndarray, metric: str) -> np.ndarray | None:
    """Each user's value of ``metric`` from the 1-based rank of their target (0 = not ranked)."""
    name, _, k = metric.partition("@")
    if not k.isdigit():
        return None
    ranks = np.asarray(ranks)
    hit = (ranks >= 1) & (ranks <= int(k))
    if name in ("recall", "hit"):
        return hit.astype(np.float64)
    if name == "ndcg":
        gain = np.zeros(len(ranks), dtype=np.float64)
        gain[hit] = 1.0 / np.log2(ranks[hit] + 1.0)
        return gain
    return None


def paired_pvalue(x: np.ndarray, y: np.ndarray, test: str = "wilcoxon") -> float:
    """Two-sided p-value of a paired test between per-user values ``x`` and ``y``."""
    from scipy import stats

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or len(x) < 2:
        return float("nan")
    diff = x - y
    if not np.any(diff != 0):
        return 1.0
    if test == "ttest":
        return float(stats.ttest_rel(x, y).pvalue)
    return float(stats.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided").pvalue)


def _user_vector(runs: pd.DataFrame, metric: str) -> tuple[np.ndarray | None, str | None]:
    """Per-user values averaged over a row's seeds, and the dataset fingerprint they share."""
    if "ranks" not in runs.columns or runs["ranks"].isna().any() or runs["fingerprint"].nunique(dropna=False) != 1:
        return None, None
    fingerprint = runs["fingerprint"].iloc[0]
    if fingerprint is None or (isinstance(fingerprint, float) and math.isnan(fingerprint)):
        return None, None
    vectors = [per_user_values(r, metric) for r in runs["ranks"]]
    if any(v is None for v in vectors) or len({len(v) for v in vectors}) != 1:
        return None, None
    return np.mean(vectors, axis=0), fingerprint


# ---------------------------------------------------------------------- table model
@dataclass
class Cell:
    mean: float
    std: float = float("nan")
    n: int = 1
    mark: str = ""  # best | second | ""
    p_value: float | None = None
    significant: bool = False


@dataclass
class Row:
    labels: list[str]
    group: str  # baseline | generative
    cells: dict = field(default_factory=dict)  # (dataset, metric) -> Cell
    runs: dict = field(default_factory=dict)  # dataset -> DataFrame of the runs behind the row


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

    @property
    def columns(self) -> list[tuple[str, str]]:
        return [(d, m) for d in self.datasets for m in self.metrics]


def _order_datasets(datasets) -> list[str]:
    datasets = list(dict.fromkeys(datasets))
    known = [d for d in DATASET_ORDER if d in datasets]
    return known + sorted(d for d in datasets if d not in DATASET_ORDER)


def _method_order(method_key: str, tokenizer, label: str) -> tuple:
    if method_key in GENERATIVE_METHODS:
        tok = TOKENIZER_ORDER.index(tokenizer) if tokenizer in TOKENIZER_ORDER else len(TOKENIZER_ORDER)
        return (1, tok, str(tokenizer), label)
    base = BASELINE_ORDER.index(method_key) if method_key in BASELINE_ORDER else len(BASELINE_ORDER)
    return (0, base, str(method_key), label)


def _value_order(value) -> tuple:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


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


def _best_baselines(baselines: list[Row], columns) -> dict:
    """(dataset, metric) -> the baseline row with the best mean."""
    best = {}
    for column in columns:
        present = [r for r in baselines if column in r.cells]
        if present:
            best[column] = max(present, key=lambda r: r.cells[column].mean)
    return best


def _significance(rows: list[Row], best_baselines: dict, alpha: float, test: str) -> None:
    for (dataset, metric), baseline in best_baselines.items():
        base_vec, base_fp = _user_vector(baseline.runs[dataset], metric)
        if base_vec is None:
            continue
        base_mean = baseline.cells[(dataset, metric)].mean
        for row in rows:
            cell = row.cells.get((dataset, metric))
            if row is baseline or cell is None or not cell.mean > base_mean:
                continue
            vec, fp = _user_vector(row.runs[dataset], metric)
            if vec is None or fp != base_fp or len(vec) != len(base_vec):
                continue
            cell.p_value = paired_pvalue(vec, base_vec, test)
            cell.significant = bool(cell.p_value < alpha)


def _notes(table_rows: list[Row], alpha: float, test: str, split: str, significance: bool) -> list[str]:
    notes = [f"{split.capitalize()} split, full-catalogue ranking, leave-one-out. "
             "Bold: best per column; underlined: second best."]
    if any(c.n > 1 for r in table_rows for c in r.cells.values()):
        notes.append("Cells with several seeds: mean ± sample std over seeds.")
    if significance:
        name = "Wilcoxon signed-rank" if test == "wilcoxon" else "paired t"
        notes.append(f"{SIGNIFICANCE_MARK}: better than the best baseline of the column and significant at "
                     f"p < {alpha:g} (two-sided {name} test on per-user values, same dataset fingerprint).")
    notes.append("Where a row has several configurations, the one with the best mean validation "
                 "NDCG@10 is shown.")
    return notes


def _prepare(records, split, params=()) -> pd.DataFrame:
    return records_frame(list(records), split=split, params=params)


def _baseline_pool(frame: pd.DataFrame, metrics, datasets) -> list[Row]:
    base = frame[~frame["method_key"].isin(GENERATIVE_METHODS)]
    base = select_best_configs(base, ["dataset", "method"])
    rows = _make_rows(base, ["method"], lambda k, f: [k[0]], lambda f: "baseline", metrics, datasets)
    return [r for _, _, r in rows]


def build_main_table(records, metrics=MAIN_METRICS, split: str = "test", alpha: float = 0.05,
                     test: str = "wilcoxon") -> Table:
    """TIGER Table 1: every method (label) x every dataset, plus the improvement row."""
    frame = _prepare(records, split)
    table = Table("Main results", ["Method"], [], list(metrics), [])
    if frame.empty:
        return table
    chosen = select_best_configs(frame, ["dataset", "method"])
    choices = selection_notes(frame, chosen, ["dataset", "method"])
    frame = chosen
    datasets = _order_datasets(frame["dataset"])
    keyed = _make_rows(
        frame, ["method"], lambda k, f: [k[0]],
        lambda f: "generative" if f["method_key"] in GENERATIVE_METHODS else "baseline", metrics, datasets,
    )
    keyed.sort(key=lambda t: _method_order(t[1]["method_key"], t[1]["tokenizer"], t[0][0]))
    rows = [r for _, _, r in keyed]
    table.datasets, table.rows = datasets, rows
    columns = table.columns
    _mark_best(rows, columns)
    baselines = [r for r in rows if r.group == "baseline"]
    best_base = _best_baselines(baselines, columns)
    significance = split == "test"
    if significance:
        _significance(rows, best_base, alpha, test)
    improvement = {}
    generative = [r for r in rows if r.group == "generative"]
    for column in columns:
        gen = [r for r in generative if column in r.cells]
        if not gen or column not in best_base:
            continue
        best_gen = max(gen, key=lambda r: r.cells[column].mean)
        g, b = best_gen.cells[column].mean, best_base[column].cells[column].mean
        if b > 0:
            improvement[column] = ((g - b) / b * 100, best_gen.cells[column].significant)
    if improvement:
        table.summary_rows.append((IMPROVEMENT_ROW, improvement))
    table.notes = _notes(rows, alpha, test, split, significance)
    if improvement:
        table.notes.insert(1, f"{IMPROVEMENT_ROW}: best generative (TIGER) row vs best non-generative row, "
                              "per column, in percent.")
    table.notes.extend(choices)
    return table


def build_tokenizer_table(records, metrics=MAIN_METRICS, split: str = "test", alpha: float = 0.05,
                          test: str = "wilcoxon") -> Table:
    """TIGER Table 2: the generative model with each item tokenizer (random_id, lsh, rqvae, letter)."""
    frame = _prepare(records, split)
    table = Table("Item tokenizers (generative model)", ["Tokenizer"], [], list(metrics), [],
                  empty_message="(no completed runs of the generative model)")
    if frame.empty:
        return table
    datasets_all = _order_datasets(frame["dataset"])
    gen = frame[frame["method_key"].isin(GENERATIVE_METHODS)].copy()
    if gen.empty:
        return table
    gen["tokenizer"] = gen["tokenizer"].fillna("?")
    chosen = select_best_configs(gen, ["dataset", "tokenizer"])
    choices = selection_notes(gen, chosen, ["dataset", "tokenizer"])
    gen = chosen
    datasets = [d for d in datasets_all if d in set(gen["dataset"])]
    keyed = _make_rows(gen, ["tokenizer"], lambda k, f: [TOKENIZER_NAMES.get(k[0], str(k[0]))],
                       lambda f: "generative", metrics, datasets)
    keyed.sort(key=lambda t: _method_order("tiger", t[0][0], ""))
    rows = [r for _, _, r in keyed]
    table.datasets, table.rows = datasets, rows
    _mark_best(rows, table.columns)
    significance = split == "test"
    if significance:
        _significance(rows, _best_baselines(_baseline_pool(frame, metrics, datasets), table.columns), alpha, test)
    table.notes = _notes(rows, alpha, test, split, significance) + choices
    return table


def build_ablation_table(records, param: str, metrics=MAIN_METRICS, split: str = "test", alpha: float = 0.05,
                         test: str = "wilcoxon") -> Table:
    """One row per (method, value of ``param``), e.g. ``model.encoder_layers`` (TIGER Table 5)."""
    frame = _prepare(records, split, params=[param])
    column = f"param:{param}"
    table = Table(f"Ablation over {param}", ["Method", param], [], list(metrics), [],
                  empty_message=f"(no completed runs whose config has {param})")
    if frame.empty:
        return table
    datasets_all = _order_datasets(frame["dataset"])
    part = frame[frame[column].notna()]
    if part.empty:
        return table
    part = select_best_configs(part, ["dataset", "method", column])
    datasets = [d for d in datasets_all if d in set(part["dataset"])]
    keyed = _make_rows(
        part, ["method", column], lambda k, f: [k[0], format_value(k[1])],
        lambda f: "generative" if f["method_key"] in GENERATIVE_METHODS else "baseline", metrics, datasets,
    )
    keyed.sort(key=lambda t: (_method_order(t[1]["method_key"], t[1]["tokenizer"], t[0][0]), _value_order(t[0][1])))
    rows = [r for _, _, r in keyed]
    table.datasets, table.rows = datasets, rows
    _mark_best(rows, table.columns)
    significance = split == "test"
    if significance:
        _significance(rows, _best_baselines(_baseline_pool(frame, metrics, datasets), table.columns), alpha, test)
    table.notes = _notes(rows, alpha, test, split, significance)
    return table


# ---------------------------------------------------------------------- rendering
def _cell(value: float, std: float, mark: str, fmt: str, digits: int, significant: bool = False) -> str:
    text = f"{value:.{digits}f}"
    if pd.notna(std):
        text += (r" $\pm$ " if fmt == "latex" else " ± ") + f"{std:.{digits}f}"
    if fmt == "latex":
        text = {"best": rf"\textbf{{{text}}}", "second": rf"\underline{{{text}}}"}.get(mark, text)
        return text + (r"$^{\dagger}$" if significant else "")
    if fmt == "md":
        text = {"best": f"**{text}**", "second": f"<u>{text}</u>"}.get(mark, text)
        return text + (SIGNIFICANCE_MARK if significant else "")
    return text


LATEX_SPECIALS = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                  "±": r"$\pm$", "†": r"$^{\dagger}$"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIALS.get(c, c) for c in str(text))


def latex_booktabs(headers: list[str], rows: list[list], escape_columns: int = 1) -> str:
    """A booktabs tabular; the first ``escape_columns`` cells of a row are text and get escaped."""
    align = "l" * escape_columns + "r" * (len(headers) - escape_columns)
    lines = [rf"\begin{{tabular}}{{{align}}}", r"\toprule", " & ".join(map(latex_escape, headers)) + r" \\",
             r"\midrule"]
    for row in rows:
        cells = [latex_escape(c) if i < escape_columns else str(c) for i, c in enumerate(row)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def _body_cells(table: Table, row: Row, fmt: str, digits: int) -> list[str]:
    out = []
    for column in table.columns:
        cell = row.cells.get(column)
        out.append("–" if cell is None and fmt == "md" else "--" if cell is None else
                   _cell(cell.mean, cell.std, cell.mark, fmt, digits, cell.significant))
    return out


def _summary_cells(table: Table, values: dict, fmt: str) -> list[str]:
    out = []
    for column in table.columns:
        if column not in values:
            out.append("–" if fmt == "md" else "--")
            continue
        percent, significant = values[column]
        text = f"{percent:+.1f}%"
        if fmt == "latex":
            out.append(latex_escape(text) + (r"$^{\dagger}$" if significant else ""))
        else:
            out.append(text + (SIGNIFICANCE_MARK if significant else ""))
    return out


def table_to_markdown(table: Table, digits: int = 4) -> str:
    if not table.rows:
        return table.empty_message
    one = len(table.datasets) == 1
    headers = list(table.label_columns) + [
        metric_header(m) if one else f"{dataset_name(d)} {metric_header(m)}" for d, m in table.columns
    ]
    body = [row.labels + _body_cells(table, row, "md", digits) for row in table.rows]
    for label, values in table.summary_rows:
        body.append([f"*{label}*"] + [""] * (len(table.label_columns) - 1) + _summary_cells(table, values, "md"))
    title = f"**{table.title}**" + (f" ({dataset_name(table.datasets[0])})" if one else "")
    text = tabulate(body, headers, tablefmt="github", disable_numparse=True)
    return "\n".join([title, "", text, ""] + [f"{note}  " for note in table.notes]).rstrip()


def table_to_latex(table: Table, digits: int = 4) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``); notes as comments above it."""
    if not table.rows:
        return f"% {table.empty_message}"
    n_labels = len(table.label_columns)
    n_metrics = len(table.metrics)
    align = "l" * n_labels + "".join("r" * n_metrics for _ in table.datasets)
    lines = [f"% {table.title}"] + [f"% {latex_escape(note)}" for note in table.notes]
    lines += [rf"\begin{{tabular}}{{{align}}}", r"\toprule"]
    groups = " & ".join([""] * n_labels + [rf"\multicolumn{{{n_metrics}}}{{c}}{{{latex_escape(dataset_name(d))}}}"
                                           for d in table.datasets])
    lines.append(groups + r" \\")
    rules = []
    for i, _ in enumerate(table.datasets):
        start = n_labels + i * n_metrics + 1
        rules.append(rf"\cmidrule(lr){{{start}-{start + n_metrics - 1}}}")
    lines.append(" ".join(rules))
    headers = [latex_escape(h) for h in table.label_columns] + [metric_header(m) for _, m in table.columns]
    lines += [" & ".join(headers) + r" \\", r"\midrule"]
    previous = None
    for row in table.rows:
        if previous is not None and row.group != previous:
            lines.append(r"\midrule")
        previous = row.group
        cells = [latex_escape(label) for label in row.labels] + _body_cells(table, row, "latex", digits)
        if cells[0].startswith("["):  # else read as the optional argument of the \\ or \midrule before it
            cells[0] = "{}" + cells[0]
        lines.append(" & ".join(cells) + r" \\")
    for label, values in table.summary_rows:
        lines.append(r"\midrule")
        cells = [latex_escape(label)] + [""] * (n_labels - 1) + _summary_cells(table, values, "latex")
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def table_to_csv(table: Table, digits: int = 6) -> str:
    """Tidy CSV: one line per (row, dataset, metric) with mean, std, n, mark, p-value."""
    records = []
    for row in table.rows:
        for (dataset, metric), cell in row.cells.items():
            records.append({
                **dict(zip([c.lower() for c in table.label_columns], row.labels)), "group": row.group,
                "dataset": dataset, "metric": metric, "mean": cell.mean, "std": cell.std, "n": cell.n,
                "mark": cell.mark, "p_value": cell.p_value, "significant": cell.significant,
            })
    for label, values in table.summary_rows:
        for (dataset, metric), (percent, significant) in values.items():
            records.append({table.label_columns[0].lower(): label, "group": "summary", "dataset": dataset,
                            "metric": metric, "mean": percent, "std": None, "n": None,
                            "mark": "percent", "p_value": None, "significant": significant})
    if not records:
        return ""
    frame = pd.DataFrame(records)
    frame["n"] = frame["n"].astype("Int64")
    frame["p_value"] = frame["p_value"].astype(float).map(lambda p: "" if pd.isna(p) else f"{p:.3g}")
    return frame.to_csv(index=False, float_format=f"%.{digits}f")


def render(table: Table, fmt: str = "md", digits: int = 4) -> str:
    if fmt == "latex":
        return table_to_latex(table, digits)
    if fmt == "csv":
        return table_to_csv(table)
    return table_to_markdown(table, digits)


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


# ---------------------------------------------------------------------- the simple per-dataset table
def summarize(frame: pd.DataFrame, metrics=DEFAULT_METRICS) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Mean and std over seeds per method, and the number of runs behind each row."""
    metrics = [m for m in metrics if m in frame.columns]
    grouped = frame.groupby("method", sort=False)[metrics]
    return grouped.mean(), grouped.std(ddof=1), grouped.size()


def render_table(frame: pd.DataFrame, fmt: str = "md", metrics=DEFAULT_METRICS, digits: int = 4) -> str:
    """One row per method, one column per metric; best per column bold, second underlined."""
    if frame.empty:
        return "(no completed runs)"
    mean, std, runs = summarize(frame, metrics)
    marks = mean.apply(rank_marks)
    body = [
        [method, int(runs[method])]
        + [_cell(mean.at[method, m], std.at[method, m], marks.at[method, m], fmt, digits) for m in mean.columns]
        for method in mean.index
    ]
    headers = ["Method", "runs"] + [metric_header(m) for m in mean.columns]
    if fmt == "csv":
        out = mean.copy()
        out.insert(0, "runs", runs)
        return out.to_csv(float_format=f"%.{digits}f")
    if fmt == "latex":
        return latex_booktabs(headers, body)
    return tabulate(body, headers, tablefmt="github", disable_numparse=True)


# ---------------------------------------------------------------------- output
def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write via a temp file in the same folder + rename: readers see the old or the new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text if text.endswith("\n") else text + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
