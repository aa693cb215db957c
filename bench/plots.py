"""Figures from run records (matplotlib, no display needed): pure functions from records to files.

- ``plot_param_curves``: LETTER-style hyper-parameter curves, a metric against one config key
  (``tokenizer.letter.levels``, ``tokenizer.letter.codebook_size``, ``tokenizer.letter.alpha``,
  ``tokenizer.letter.beta``, ``tokenizer.letter.n_clusters``, ``train.tau``, ...), one line per
  (dataset, method), mean over seeds with a ± std band.
- ``plot_code_distribution``: LETTER's code-assignment figure, the number of items per first-level
  code, codes sorted by that number. The counts come from a run record (``first_level_counts``
  anywhere under ``method_info``, or a ``codes_path`` there pointing at a saved ``[n_items, L]`` code
  array) or from a saved code array (``.npy``, ``.npz``, ``.json``).

The object-oriented matplotlib API is used (``Figure``, no pyplot), so nothing depends on or
changes the global backend; PNG, PDF and SVG follow from the output file's suffix.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from bench.atomic import atomic_write
from bench.config import default_layer, get_path
from bench.identity import ADDED_LATER
from bench.errors import UserError
from bench.tables import (
    dataset_name, is_generative, tokenizer_name, format_value, metric_header, records_frame,
    select_best_configs,
)
from bench.tables.frame import standard_protocol
from tokenizers_zoo.stats import entropy_bits
from bench.tables.coldstart import shown_coldstart_runs


class PlotError(UserError, ValueError):
    """Nothing to plot (no matching records, no code counts)."""


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=120, layout="constrained")


# no creation date in a PDF: rendering the same records again gives the same bytes
_METADATA = {"pdf": {"CreationDate": None}}


# formats matplotlib writes without external tools (pgf needs LaTeX; raw/rgba are not image files)
PLOT_FORMATS = ("png", "pdf", "svg", "eps", "ps", "jpg", "jpeg", "tif", "tiff")


def plot_format(output: str | Path, option: str = "--output") -> str:
    """The image format of ``output``, from its suffix (none: PNG); a UserError naming the supported
    formats for any other suffix."""
    suffix = Path(output).suffix.lstrip(".").lower()
    if suffix and suffix not in PLOT_FORMATS:
        raise UserError(f"{option} {output}: unknown image format {suffix!r} (supported: "
                        f"{', '.join('.' + f for f in PLOT_FORMATS)})")
    return suffix or "png"


def _save(fig, output: str | Path) -> Path:
    output = Path(output)
    fmt = plot_format(output)
    return atomic_write(output, lambda handle: fig.savefig(handle, format=fmt, metadata=_METADATA.get(fmt)))


# ---------------------------------------------------------------------- hyper-parameter curves
def curve_frame(records, param: str, metrics: Iterable[str] = ("ndcg@10",), split: str = "test") -> pd.DataFrame:
    """Mean, std and number of seeds per (dataset, method, value of ``param``, metric)."""
    metrics = list(metrics)
    frame, _ = standard_protocol(records_frame(list(records), split=split, params=[param]))
    column = f"param:{param}"
    if frame.empty or frame[column].isna().all():
        return pd.DataFrame(columns=["dataset", "method", "value", "metric", "mean", "std", "n"])
    frame = frame[frame[column].notna()]
    frame = select_best_configs(frame, ["dataset", "method", column])
    rows = []
    for (dataset, method, value), runs in frame.groupby(["dataset", "method", column], sort=False):
        for metric in metrics:
            if metric not in runs.columns:
                continue
            values = runs[metric].dropna().astype(float)
            if values.empty:
                continue
            rows.append({"dataset": dataset, "method": method, "value": value, "metric": metric,
                         "mean": float(values.mean()),
                         "std": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
                         "n": int(len(values))})
    return pd.DataFrame(rows)


def _numeric(values) -> bool:
    return all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in values)


@dataclass
class CurveAxis:
    """Where a curve's x values go: their positions, the axis scale and the ticks."""

    positions: dict  # value -> x position
    scale: str = "linear"  # "linear", "log", or "symlog" (a log-spaced grid with 0: linear up to linthresh)
    linthresh: float | None = None
    ticks: list | None = None  # values to tick (each labelled), or None for matplotlib's own

    def apply(self, ax) -> None:
        if self.scale == "symlog":  # [0, linthresh] as wide as a decade; a quarter of one as margin each side
            ax.set_xscale("symlog", linthresh=self.linthresh, linscale=1.0)
            ax.set_xlim(-0.25 * self.linthresh, max(self.positions.values()) * 10 ** 0.25)
        elif self.scale == "log":
            ax.set_xscale("log")
        if self.ticks is not None:
            ax.set_xticks([self.positions[v] for v in self.ticks], [format_value(v) for v in self.ticks])
            ax.minorticks_off()


def curve_axis(values: list) -> CurveAxis:
    """The x axis of a sweep's values. A grid of positive values spanning two orders of magnitude is
    drawn on a log scale; a grid of 0 and positive values spanning one (beta = 0, 1e-4, 1e-3) on a
    symmetric log scale linear below its smallest positive value, so 0 and 1e-4 do not crowd at one
    end; a grid of a few values (layers, codebook sizes, one run so far) gets a tick at each; text
    values are evenly spaced."""
    if not _numeric(values):
        ordered = sorted(values, key=str)
        return CurveAxis({v: float(i) for i, v in enumerate(ordered)}, ticks=ordered)
    ordered = sorted(values, key=float)
    positions = {v: float(v) for v in values}
    positive = [float(v) for v in ordered if float(v) > 0]
    ratio = positive[-1] / positive[0] if len(positive) >= 2 else 1.0
    scale, linthresh = "linear", None
    if ratio >= 100 and len(positive) == len(values):
        scale = "log"
    elif ratio >= 10 and float(ordered[0]) == 0 and len(positive) == len(values) - 1:
        scale, linthresh = "symlog", positive[0]
    few = len(values) <= 10 and (scale != "linear" or len(values) == 1 or all(float(v).is_integer() for v in values))
    return CurveAxis(positions, scale, linthresh, ordered if few else None)


def plot_param_curves(records, param: str, output: str | Path, metrics: Iterable[str] = ("recall@10", "ndcg@10"),
                      split: str = "test", title: str | None = None, default=None, held: str | None = None) -> Path:
    """One panel per metric: the metric against ``param``, one line per (dataset, method); a dashed
    vertical line marks the ``default`` value where one is given; ``held`` (e.g. ``beta = 0.0001``)
    names what the runs hold fixed, in the title."""
    metrics = list(metrics)
    data = curve_frame(records, param, metrics, split)
    if data.empty:
        raise PlotError(f"no completed runs whose config has {param!r} (for the methods it applies to)")
    axis = curve_axis(list(data["value"].unique()))
    positions = axis.positions
    several_datasets = data["dataset"].nunique() > 1
    fig = _figure(4.2 * len(metrics), 3.4)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        part = data[data["metric"] == metric]
        for (dataset, method), line in part.groupby(["dataset", "method"], sort=True):
            line = line.assign(x=line["value"].map(positions)).sort_values("x")
            label = f"{method} ({dataset_name(dataset)})" if several_datasets else str(method)
            x, y, s = line["x"].to_numpy(), line["mean"].to_numpy(), line["std"].to_numpy()
            drawn = ax.plot(x, y, marker="o", label=label)[0]
            if np.isfinite(s).any():
                s = np.nan_to_num(s, nan=0.0)
                ax.fill_between(x, y - s, y + s, color=drawn.get_color(), alpha=0.2, linewidth=0)
        if default is not None and default in positions:
            ax.axvline(positions[default], color="grey", linestyle="--", linewidth=1, label=f"default ({format_value(default)})")
        axis.apply(ax)
        ax.set_xlabel(param)
        ax.set_ylabel(f"{metric_header(metric)} ({split})")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    held_text = f" ({held}, the default)" if held else ""
    fig.suptitle(title or f"{', '.join(metric_header(m) for m in metrics)} vs {param}{held_text}", fontsize="medium")
    return _save(fig, output)


# ---------------------------------------------------------------------- code assignment
def _find(node, key: str):
    """The first value stored under ``key`` anywhere in nested dicts/lists."""
    if isinstance(node, dict):
        if key in node:
            return node[key]
        children = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = _find(child, key)
        if found is not None:
            return found
    return None


def load_codes(path: str | Path) -> np.ndarray:
    """A saved code array ``[n_items, L]`` (or ``[n_items]``): ``.npy``, ``.npz`` (key ``codes`` or
    the first array) or ``.json`` (a list, or ``{"codes": [...]}``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no code file at {path}")
    if path.suffix == ".npz":
        with np.load(path) as archive:
            codes = archive["codes"] if "codes" in archive.files else archive[archive.files[0]]
    elif path.suffix == ".json":
        data = json.loads(path.read_text())
        codes = np.asarray(data["codes"] if isinstance(data, dict) else data)
    else:
        codes = np.load(path, allow_pickle=False)
    codes = np.asarray(codes)
    if codes.ndim not in (1, 2) or not np.issubdtype(codes.dtype, np.integer):
        raise PlotError(f"{path}: expected an integer array [n_items, levels], got {codes.dtype} {codes.shape}")
    return codes


def counts_from_codes(codes: np.ndarray, level: int = 0, codebook_size: int | None = None) -> np.ndarray:
    """Items per code at ``level``, over all ``codebook_size`` codes (unused codes count 0)."""
    codes = np.asarray(codes)
    column = codes if codes.ndim == 1 else codes[:, level]
    size = max(int(codebook_size or 0), int(column.max()) + 1 if len(column) else 0)
    return np.bincount(column.astype(np.int64), minlength=size)


def record_code_counts(record: dict, level: int = 0) -> np.ndarray | None:
    """Items per first-level code of a run's tokenizer, from its record, or None if it has none."""
    info = record.get("method_info") or {}
    if level == 0:
        counts = _find(info, "first_level_counts")
        if counts is not None:
            return np.asarray(counts, dtype=np.int64)
    per_level = _find(info, "code_counts")  # optional: a list of per-level count lists
    if isinstance(per_level, list) and len(per_level) > level and isinstance(per_level[level], list):
        return np.asarray(per_level[level], dtype=np.int64)
    path = _find(info, "codes_path")
    if isinstance(path, str) and Path(path).is_file():
        sizes = _find(info, "codebook_sizes")
        size = sizes[level] if isinstance(sizes, list) and len(sizes) > level else None
        return counts_from_codes(load_codes(path), level, size)
    return None


def code_series_label(record: dict) -> str:
    config = record.get("config") or {}
    if is_generative(record.get("method")):
        name = (config.get("tokenizer") or {}).get("name")
        return f"{tokenizer_name(name) if name else record['label']} ({dataset_name(record['dataset'])})"
    return f"{record['label']} ({dataset_name(record['dataset'])})"


def plot_code_distribution(series: dict[str, np.ndarray], output: str | Path, level: int = 0,
                           title: str | None = None) -> Path:
    """Items per code at ``level``, codes sorted from the most to the least used (LETTER's figure)."""
    if not series:
        raise PlotError("no code counts to plot")
    fig = _figure(6.0, 3.4)
    ax = fig.subplots()
    single = len(series) == 1
    for name, counts in series.items():
        counts = np.sort(np.asarray(counts, dtype=np.int64))[::-1]
        if counts.sum() <= 0:
            continue
        used = int((counts > 0).sum())
        entropy = entropy_bits(counts)
        label = f"{name}: {used}/{len(counts)} codes used, max {int(counts[0])}, H={entropy:.2f} bits"
        x = np.arange(1, len(counts) + 1)
        if single:
            ax.bar(x, counts, width=1.0, label=label)
        else:
            ax.step(x, counts, where="mid", label=label)
    ax.set_xlabel(f"level-{level + 1} code (sorted by number of items)")
    ax.set_ylabel("items")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(title or f"Items per level-{level + 1} code", fontsize="medium")
    return _save(fig, output)


def code_counts_from_store(records, datasets=None, level: int = 0, prefer=()) -> dict[str, np.ndarray]:
    """Per series (a tokenizer, or a method, on a dataset) the newest run whose record carries code
    counts: one of the runs in ``prefer`` first (the tokenizer table's default rows, so the figure is
    the default fit's and does not move when another run lands), then a run of the standard protocol
    and the default architecture (the codes are the tokenizer's, whichever model trained on them; a
    cold-start run's tokenizer was fitted without the unseen items)."""
    prefer = set(prefer)
    default_arch = get_path(default_layer(), "model.arch")
    newest: dict[tuple, tuple] = {}
    for record in records:
        if record.get("status", "completed") != "completed":
            continue
        if datasets and record.get("dataset") not in datasets:
            continue
        if record_code_counts(record, level) is None:
            continue
        config = record.get("config") or {}
        arch = get_path(config, "model.arch", ADDED_LATER["model.arch"])
        cold = bool(get_path(config, "coldstart.enabled", False))
        rank = (record.get("run_id") in prefer, not cold, arch == default_arch, str(record.get("run_id", "")))
        key = (record["dataset"], code_series_label(record))
        if key not in newest or rank > newest[key][0]:
            newest[key] = (rank, record)
    return {label: record_code_counts(record, level) for (_, label), (_, record) in sorted(newest.items())}



# ---------------------------------------------------------------------- cold start
def plot_coldstart(records, output: str | Path, title: str | None = None) -> Path:
    """TIGER's two cold-start panels: Recall@K on the cold users against K, one line per method; and
    Recall@10 on the cold users against epsilon, one line per generative method with an epsilon
    curve. The runs are those of the cold-start table (``shown_coldstart_runs``), means over seeds."""
    shown = shown_coldstart_runs(records)
    if not shown:
        raise PlotError("no completed runs under the cold-start protocol")
    fig = _figure(8.4, 3.4)
    by_k, by_eps = fig.subplots(1, 2)
    for index, label in enumerate(sorted(shown)):
        runs, color = shown[label], f"C{index}"  # one colour per method in both panels
        colds = [run["metrics"]["test_cold"] for run in runs]
        ks = sorted({int(name.split("@")[1]) for cold in colds for name in cold if name.startswith("recall@")})
        by_k.plot(ks, [np.mean([c[f"recall@{k}"] for c in colds if f"recall@{k}" in c]) for k in ks],
                  marker="o", label=label, color=color)
        curves = [c for c in ((run.get("method_info") or {}).get("coldstart_curve") for run in runs) if c]
        if curves:
            eps = sorted({e for curve in curves for e in curve}, key=float)
            by_eps.plot([float(e) for e in eps], [np.mean([c[e]["recall@10"] for c in curves if e in c]) for e in eps],
                        marker="o", label=label, color=color)
    by_k.set_xlabel("K")
    by_k.set_ylabel("Recall@K (cold users)")
    by_eps.set_xlabel("epsilon (max share of unseen items in top-K)")
    by_eps.set_ylabel("Recall@10 (cold users)")
    for ax in (by_k, by_eps):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    fig.suptitle(title or "Cold-start recommendation", fontsize="medium")
    return _save(fig, output)


def training_curves(records, series=None) -> dict[str, list[dict]]:
    """``{series: [run, ...]}`` (a series: the run's label, or ``series(record)``, e.g. its table row)
    of the completed runs that recorded a validation curve (generative
    runs: ``method_info.training.curve``), each run ``{"seed", "seconds", "examples", "ndcg"}``;
    examples seen = optimizer steps x ``train.batch_size`` (prefix examples for TIGER, user windows
    for the decoder-only model on all positions)."""
    out: dict[str, list[dict]] = {}
    for record in records:
        training = ((record.get("method_info") or {}).get("training") or {})
        curve = [point for point in training.get("curve") or [] if "valid_ndcg@10" in point]
        if record.get("status", "completed") != "completed" or not curve:
            continue
        batch = ((record.get("config") or {}).get("train") or {}).get("batch_size")
        out.setdefault(str(series(record) if series else record.get("label")), []).append({
            "seed": record.get("seed"),
            "seconds": [float(p.get("seconds", np.nan)) for p in curve],
            "examples": [float(p["step"]) * float(batch) if batch else np.nan for p in curve],
            "ndcg": [float(p["valid_ndcg@10"]) for p in curve],
        })
    return out


def plot_time_to_quality(records, output: str | Path, title: str | None = None, series=None) -> Path:
    """Validation NDCG@10 during training against training seconds and against examples seen, one
    colour per method, or per ``series(record)`` (a table's row), one line per run: which model is
    better at *equal compute*, not only at equal steps. Seconds compare only runs timed on one
    machine under one load."""
    curves = training_curves(records, series)
    if not curves:
        raise PlotError("no completed runs with a training curve (generative runs record one)")
    fig = _figure(8.4, 3.4 if len(curves) <= 4 else 4.4)
    by_time, by_examples = fig.subplots(1, 2)
    for index, label in enumerate(sorted(curves)):
        for run_index, run in enumerate(curves[label]):
            name = f"{label} ({len(curves[label])} run{'s' if len(curves[label]) > 1 else ''})" if run_index == 0 else None
            by_time.plot(np.array(run["seconds"]) / 60, run["ndcg"], color=f"C{index}", alpha=0.8, label=name)
            by_examples.plot(run["examples"], run["ndcg"], color=f"C{index}", alpha=0.8, label=name)
    by_time.set_xlabel("training minutes")
    by_examples.set_xlabel("training examples seen (steps x batch)")
    for ax in (by_time, by_examples):
        ax.set_ylabel("validation NDCG@10")
        ax.grid(True, alpha=0.3)
    if len(curves) <= 4:
        by_time.legend(fontsize="small")
    else:  # long row names: below both panels
        fig.legend(*by_time.get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize="x-small")
    fig.suptitle(title or "Time to quality", fontsize="medium")
    return _save(fig, output)
