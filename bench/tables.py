"""Paper-style tables from run records: pure functions from records to Markdown / LaTeX / CSV.

Kinds (``bench table --kind``):

- ``main``: TIGER Table 1. Methods x datasets x R@5 N@5 R@10 N@10, best per column bold, second
  underlined, and an "Improvement over best baseline" row (best generative vs best non-generative).
- ``tokenizers``: TIGER Table 2. One row per item tokenizer of the generative model.
- ``ablation``: one row per value of a config key (e.g. ``model.encoder_layers``, TIGER Table 5).
- ``simple``: one table per dataset, one row per method (``render_table``).

What a table compares, and how it says so:

- One compute profile per dataset (``profile=``, else the most common one of the dataset's runs),
  named in the title; runs of other profiles are left out and counted in a note.
- Seeds are averaged only within one configuration *and* one code identity (component versions +
  git commit + dirty flag, ``bench.identity.code_identity``); where one configuration was run by
  different code, the newest code's runs are shown and the others named in a note.
- Every row carries its budget (optimizer steps, epochs, train time, device x threads, stop reason)
  in a Budget column.
- Every selection uses validation NDCG@10 only: the configuration shown for a row, the reference
  baseline of the significance test and the two rows of the "Improvement over best baseline" row.

Every cell is the mean over seeds (± the sample std where there are several). A marker (†) says that
a row is better than the reference baseline (the baseline row with the best validation NDCG@10 on
that dataset) and that a two-sided paired test on per-user values (Wilcoxon signed-rank by default;
recall@K: per-user hit, NDCG@K: per-user gain, from ``per_user_test_rank``, averaged over seeds)
gives p < 0.05; only records with the same dataset fingerprint are paired.
"""
from __future__ import annotations

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

from bench.identity import PATH_KEYS, code_identity
from bench.identity import config_identity as _config_identity
from bench.records import record_budget, record_max_history

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
NO_TRAINING = "no training (closed form)"


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
    return _config_identity(config, drop)


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
        row["profile"] = record.get("profile", config.get("profile"))
        git = record.get("git") or {}
        row["code_key"] = code_identity(record.get("components"), git)
        row["commit"] = git.get("commit")
        row["dirty"] = git.get("dirty")
        row["budget"] = record_budget(record)
        row["max_history"], row["split_max_history"] = record_max_history(record)
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


def choose_profiles(frame: pd.DataFrame, profile: str | None = None) -> tuple[pd.DataFrame, dict, list[str]]:
    """Only one compute profile per dataset: ``profile`` where given, else the most common profile
    of the dataset's runs (ties: the name first in sort order). Returns the kept runs, dataset ->
    profile, and a note per dataset whose other-profile runs were left out."""
    if frame.empty or "profile" not in frame.columns:
        return frame, {}, []
    keep, chosen, notes = [], {}, []
    for dataset, part in frame.groupby("dataset", sort=False):
        names = part["profile"].fillna("(none)")
        if profile is not None:
            pick = profile
        else:
            counts = names.value_counts()
            pick = sorted(counts[counts == counts.max()].index)[0]
        kept = part[names == pick]
        if kept.empty:
            continue
        chosen[dataset] = pick
        keep.append(kept)
        left = names[names != pick].value_counts()
        if len(left):
            others = ", ".join(f"{n} of profile {name}" for name, n in sorted(left.items()))
            notes.append(f"{dataset_name(dataset)}: left out {others} (this table shows profile {pick}; "
                         "--profile picks another).")
    frame = pd.concat(keep) if keep else frame.iloc[0:0]
    return frame, chosen, notes


def latest_code(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Seeds of one configuration share one code identity: where a configuration was run by
    different code (component versions, commit, dirty flag), keep the runs of the code of its newest
    run and name the others in a note."""
    if frame.empty or "code_key" not in frame.columns:
        return frame, []
    keep, notes = [], []
    for _, group in frame.groupby(["dataset", "method", "config_key"], sort=False, dropna=False):
        if group["code_key"].nunique(dropna=False) <= 1:
            keep.append(group)
            continue
        newest = group.loc[group["run_id"].idxmax(), "code_key"]
        kept, dropped = group[group["code_key"] == newest], group[group["code_key"] != newest]
        keep.append(kept)
        first = kept.iloc[0]
        notes.append(f"{first['method']} on {dataset_name(first['dataset'])}: {len(dropped)} run(s) of the same "
                     f"configuration made by other code left out (not averaged with commit "
                     f"{str(first['commit'])[:7]}): {', '.join(sorted(dropped['run_id']))}.")
    return (pd.concat(keep) if keep else frame.iloc[0:0]), notes


def _count(value: float) -> str:
    value = float(value)
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{value:.0f}"


def _duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _spread(values, fmt) -> str | None:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return None
    lo, hi = fmt(min(values)), fmt(max(values))
    return lo if lo == hi else f"{lo}–{hi}"


def budget_text(budgets: Iterable[dict]) -> str:
    """A compact budget of a row's runs: '2.5k steps · 5.1 ep · 20 min · cpu×1 · time limit'
    (a range where the seeds differ); '' when the records carry none."""
    budgets = [b for b in budgets if isinstance(b, dict)]
    if not budgets:
        return ""
    reasons = sorted({str(b.get("stop_reason")) for b in budgets if b.get("stop_reason")})
    if reasons == [NO_TRAINING]:
        return "no training"
    known = ("optimizer_steps", "epochs", "train_seconds", "stop_reason")
    if not any(b.get(key) is not None for b in budgets for key in known):
        return ""
    parts = []
    steps = _spread([b.get("optimizer_steps") for b in budgets], _count)
    if steps:
        parts.append(f"{steps} steps")
    epochs = _spread([b.get("epochs") for b in budgets], lambda e: f"{float(e):.1f}".rstrip("0").rstrip("."))
    if epochs:
        parts.append(f"{epochs} ep")
    seconds = _spread([b.get("train_seconds") for b in budgets], _duration)
    if seconds:
        parts.append(seconds)
    devices = sorted({f"{b.get('device') or '?'}×{b.get('threads') or '?'}" for b in budgets})
    parts.append("/".join(devices))
    if reasons:
        parts.append("/".join(reasons))
    return " · ".join(parts)


def _profile_title(title: str, profiles: dict) -> str:
    names = sorted(set(profiles.values()))
    if not names:
        return title
    if len(names) == 1:
        return f"{title} (profile {names[0]})"
    return f"{title} (profiles: " + ", ".join(f"{dataset_name(d)} {p}" for d, p in profiles.items()) + ")"


def _protocol_notes(frame: pd.DataFrame) -> list[str]:
    """A note where a row saw another history length than the split's (one protocol otherwise)."""
    if frame.empty or "max_history" not in frame.columns:
        return []
    notes = []
    for (dataset, method), runs in frame.groupby(["dataset", "method"], sort=False):
        seen = {int(v) for v in runs["max_history"].dropna()}
        split = {int(v) for v in runs["split_max_history"].dropna()}
        if seen and split and seen != split:
            notes.append(f"Protocol: {method} on {dataset_name(dataset)} saw up to {'/'.join(map(str, sorted(seen)))} "
                         f"history items; the split's max_history is {'/'.join(map(str, sorted(split)))}.")
    return notes


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


def best_on_validation(rows: list[Row], dataset: str) -> Row | None:
    """The row with the best mean validation NDCG@10 on ``dataset`` (ties: more seeds, then table
    order); None when no row has a validation value there. Never looks at test metrics."""
    present = [(i, r) for i, r in enumerate(rows) if dataset in r.valid]
    if not present:
        return None
    return max(present, key=lambda t: (t[1].valid[dataset], len(t[1].runs.get(dataset, ())), -t[0]))[1]


def _best_baselines(baselines: list[Row], columns) -> dict:
    """(dataset, metric) -> the reference baseline: per dataset the baseline row with the best
    validation NDCG@10 (the same row for every metric of the dataset)."""
    best = {}
    for dataset in dict.fromkeys(d for d, _ in columns):
        row = best_on_validation(baselines, dataset)
        if row is None:
            continue
        for column in columns:
            if column[0] == dataset and column in row.cells:
                best[column] = row
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
    dirty = [f"{r.labels[0]}" + (f" on {dataset_name(d)}" if len(datasets or []) > 1 else "")
             for r in table_rows for d, code in r.code.items() if "+dirty" in code]
    if dirty:
        notes.append(f"Made from a tree with uncommitted code changes (commit in the CSV): {', '.join(dirty)}.")
    return notes


def _prepare(records, split, params=(), profile: str | None = None) -> tuple[pd.DataFrame, dict, list[str]]:
    """The runs a table may use: one profile per dataset, one code identity per configuration."""
    frame = records_frame(list(records), split=split, params=params)
    frame, profiles, notes = choose_profiles(frame, profile)
    frame, code_notes = latest_code(frame)
    return frame, profiles, notes + code_notes


def _baseline_pool(frame: pd.DataFrame, metrics, datasets) -> list[Row]:
    if frame.empty:
        return []
    base = frame[~frame["method_key"].isin(GENERATIVE_METHODS)]
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
    datasets = _order_datasets(frame["dataset"])
    keyed = _make_rows(
        frame, ["method"], lambda k, f: [k[0]],
        lambda f: "generative" if f["method_key"] in GENERATIVE_METHODS else "baseline", metrics, datasets,
    )
    keyed.sort(key=lambda t: _method_order(t[1]["method_key"], t[1]["tokenizer"], t[0][0]))
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
    profiles = {d: p for d, p in profiles.items() if d in datasets}
    table.datasets, table.rows, table.profiles = datasets, rows, profiles
    table.title = _profile_title(table.title, profiles)
    _mark_best(rows, table.columns)
    significance = split == "test"
    if significance:
        _significance(rows, _best_baselines(_baseline_pool(frame, metrics, datasets), table.columns), alpha, test)
    table.notes = _notes(rows, alpha, test, split, significance, profiles) + _protocol_notes(gen) + choices + kept_notes
    return table


def build_ablation_table(records, param: str, metrics=MAIN_METRICS, split: str = "test", alpha: float = 0.05,
                         test: str = "wilcoxon", profile: str | None = None) -> Table:
    """One row per (method, value of ``param``), e.g. ``model.encoder_layers`` (TIGER Table 5)."""
    frame, profiles, kept_notes = _prepare(records, split, params=[param], profile=profile)
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
    profiles = {d: p for d, p in profiles.items() if d in datasets}
    table.datasets, table.rows, table.profiles = datasets, rows, profiles
    table.title = _profile_title(table.title, profiles)
    _mark_best(rows, table.columns)
    significance = split == "test"
    if significance:
        _significance(rows, _best_baselines(_baseline_pool(frame, metrics, datasets), table.columns), alpha, test)
    table.notes = _notes(rows, alpha, test, split, significance, profiles) + _protocol_notes(part) + kept_notes
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
                  "±": r"$\pm$", "†": r"$^{\dagger}$", "×": r"$\times$", "·": r"$\cdot$", "–": "--"}


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
    budget = table.show_budget
    headers = list(table.label_columns) + [
        metric_header(m) if one else f"{dataset_name(d)} {metric_header(m)}" for d, m in table.columns
    ] + (["Budget"] if budget else [])
    body = [row.labels + _body_cells(table, row, "md", digits) + ([row.budget_cell(table.datasets)] if budget else [])
            for row in table.rows]
    for label, values in table.summary_rows:
        body.append([f"*{label}*"] + [""] * (len(table.label_columns) - 1) + _summary_cells(table, values, "md")
                    + ([""] if budget else []))
    title = f"**{table.title}**" + (f" ({dataset_name(table.datasets[0])})" if one else "")
    text = tabulate(body, headers, tablefmt="github", disable_numparse=True)
    return "\n".join([title, "", text, ""] + [f"{note}  " for note in table.notes]).rstrip()


def table_to_latex(table: Table, digits: int = 4) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``); notes as comments above it."""
    if not table.rows:
        return f"% {table.empty_message}"
    n_labels = len(table.label_columns)
    n_metrics = len(table.metrics)
    budget = table.show_budget
    extra = [""] if budget else []
    align = "l" * n_labels + "".join("r" * n_metrics for _ in table.datasets) + ("l" if budget else "")
    lines = [f"% {table.title}"] + [f"% {latex_escape(note)}" for note in table.notes]
    lines += [rf"\begin{{tabular}}{{{align}}}", r"\toprule"]
    groups = " & ".join([""] * n_labels + [rf"\multicolumn{{{n_metrics}}}{{c}}{{{latex_escape(dataset_name(d))}}}"
                                           for d in table.datasets] + extra)
    lines.append(groups + r" \\")
    rules = []
    for i, _ in enumerate(table.datasets):
        start = n_labels + i * n_metrics + 1
        rules.append(rf"\cmidrule(lr){{{start}-{start + n_metrics - 1}}}")
    lines.append(" ".join(rules))
    headers = [latex_escape(h) for h in table.label_columns] + [metric_header(m) for _, m in table.columns]
    headers += ["Budget"] if budget else []
    lines += [" & ".join(headers) + r" \\", r"\midrule"]
    previous = None
    for row in table.rows:
        if previous is not None and row.group != previous:
            lines.append(r"\midrule")
        previous = row.group
        cells = [latex_escape(label) for label in row.labels] + _body_cells(table, row, "latex", digits)
        cells += [latex_escape(row.budget_cell(table.datasets))] if budget else []
        if cells[0].startswith("["):  # else read as the optional argument of the \\ or \midrule before it
            cells[0] = "{}" + cells[0]
        lines.append(" & ".join(cells) + r" \\")
    for label, values in table.summary_rows:
        lines.append(r"\midrule")
        cells = [latex_escape(label)] + [""] * (n_labels - 1) + _summary_cells(table, values, "latex") + extra
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
                "budget": row.budget.get(dataset, ""), "code": row.code.get(dataset, ""),
            })
    for label, values in table.summary_rows:
        for (dataset, metric), (percent, significant) in values.items():
            records.append({table.label_columns[0].lower(): label, "group": "summary", "dataset": dataset,
                            "metric": metric, "mean": percent, "std": None, "n": None,
                            "mark": "percent", "p_value": None, "significant": significant, "budget": "",
                            "code": ""})
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
