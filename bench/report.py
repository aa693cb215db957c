"""One self-contained HTML page of the curated results: every table of the frozen selection with its
notes and budgets, the plots embedded, and a section per shown run (config, budget, machine, code
version, learning curve, tokenizer statistics) that the table rows link to.

Self-contained means it opens offline from a file: no script, no stylesheet or font from anywhere,
the plots as ``data:`` URIs, the learning curves as inline SVG drawn here. Rendered with Jinja2
(autoescaped) from ``bench/templates/report.html.j2``.
"""
from __future__ import annotations

import base64
import json
import math
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from bench.tables.names import SIGNIFICANCE_MARK, WORSE_MARK, dataset_name, metric_header
from bench.tables.selected import build_selected
from bench.tables.selection import TableSelection

REPORT_NAME = "report.html"  # beside tables/ and plots/
# table stems first in this order, then the rest alphabetically
ORDER = ("main", "tokenizers", "architectures", "coldstart")
STATS_SHOWN = ("n_items", "levels", "codebook_sizes", "utilisation", "unique_tuples", "collision_rate",
               "max_collision_group", "first_level_entropy_norm", "first_level_gini", "reconstruction_mse",
               "quantization_mse")


def table_view(name: str, table, digits: int = 4) -> dict:
    """What the template needs of one table: headers, rows of cells (text, mark, significance) and
    each row's runs per dataset (the links)."""
    one = len(table.datasets) == 1
    headers = list(table.label_columns) + [metric_header(m) if one else f"{dataset_name(d)} {metric_header(m)}"
                                           for d, m in table.columns] + ["n", "Configs"]
    show_budget = table.show_budget
    if show_budget:
        headers.append("Budget")
    rows = []
    for row in table.rows:
        cells = []
        for column in table.columns:
            cell = row.cells.get(column)
            if cell is None:
                cells.append({"text": "–", "mark": "", "sign": ""})
                continue
            text = f"{cell.mean:.{digits}f}" + ("" if math.isnan(cell.std) else f" ± {cell.std:.{digits}f}")
            sign = (WORSE_MARK if cell.worse else SIGNIFICANCE_MARK) if cell.significant else ""
            cells.append({"text": text, "mark": cell.mark, "sign": sign})
        counts = [row.seeds_cell(table.datasets), row.configs_cell(table.datasets)]
        if show_budget:
            counts.append(row.budget_cell(table.datasets))
        runs = [(dataset_name(d), [(run, f"s{seed}") for run, seed in zip(row.runs[d]["run_id"], row.runs[d]["seed"])])
                for d in table.datasets if d in row.runs and len(row.runs[d])]
        rows.append({"labels": row.labels, "cells": cells, "counts": counts, "runs": runs,
                     "reference": bool(row.reference)})
    summary = [{"label": label, "cells": [f"{values[c][0]:+.1f}%" + (SIGNIFICANCE_MARK if values[c][1] else "")
                                          if c in values else "–" for c in table.columns]}
               for label, values in table.summary_rows]
    title = table.title + (f" ({dataset_name(table.datasets[0])})" if one and table.datasets else "")
    return {"name": name, "title": title, "headers": headers, "rows": rows, "summary": summary,
            "n_labels": len(table.label_columns), "n_counts": len(headers) - len(table.label_columns)
            - len(table.columns), "notes": list(table.notes)}


def curve_svg(points: list[tuple[float, float]], x_label: str, y_label: str, width: int = 360,
              height: int = 160) -> Markup | None:
    """A small line chart of ``points`` as inline SVG (numbers only, drawn here: safe to embed)."""
    points = [(float(x), float(y)) for x, y in points if x is not None and y is not None
              and math.isfinite(float(x)) and math.isfinite(float(y))]
    if len(points) < 2:
        return None
    pad_l, pad_b, pad_t, pad_r = 46, 28, 8, 8
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(0.0, min(ys)), max(ys) if max(ys) > min(0.0, min(ys)) else 1.0

    def sx(x):
        return pad_l + (x - x0) / (x1 - x0) * (width - pad_l - pad_r)

    def sy(y):
        return height - pad_b - (y - y0) / (y1 - y0) * (height - pad_b - pad_t)

    line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
    best = max(points, key=lambda p: p[1])
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{y_label} against {x_label}">'
        f'<rect x="{pad_l}" y="{pad_t}" width="{width - pad_l - pad_r}" height="{height - pad_b - pad_t}" '
        f'fill="none" stroke="#ccc"/>'
        f'<polyline points="{line}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>'
        f'<circle cx="{sx(best[0]):.1f}" cy="{sy(best[1]):.1f}" r="3" fill="#d62728"/>'
        f'<text x="{pad_l}" y="{height - 8}" font-size="10">{x0:g}</text>'
        f'<text x="{width - pad_r}" y="{height - 8}" font-size="10" text-anchor="end">{x1:g} {x_label}</text>'
        f'<text x="2" y="{pad_t + 10}" font-size="10">{y1:.4f}</text>'
        f'<text x="2" y="{height - pad_b}" font-size="10">{y0:.4f}</text>'
        f'<text x="{width / 2:.0f}" y="{pad_t + 12}" font-size="10" text-anchor="middle">{y_label} '
        f'(best {best[1]:.4f} at {best[0]:g})</text></svg>')


def learning_curve(record: dict) -> Markup | None:
    """The run's validation curve: TIGER's (steps) or a RecBole model's (epochs)."""
    info = record.get("method_info") or {}
    curve = (info.get("training") or {}).get("curve")
    if curve:
        return curve_svg([(p.get("step"), p.get("valid_ndcg@10")) for p in curve], "steps", "validation NDCG@10")
    curve = info.get("valid_curve")
    if curve:
        return curve_svg([(p.get("epoch"), p.get("valid_score")) for p in curve], "epochs", "validation score")
    return None


def run_view(record: dict) -> dict:
    """One run's section: what ran, on what, with what budget and result."""
    info = record.get("method_info") or {}
    stats = ((info.get("tokenizer") or {}).get("stats")) or {}
    git = record.get("git") or {}
    hardware = record.get("hardware") or {}
    metrics = record.get("metrics") or {}
    names = sorted({name for values in metrics.values() for name in values})
    return {
        "id": record["run_id"], "label": record.get("label"), "dataset": dataset_name(record.get("dataset")),
        "seed": record.get("seed"), "profile": record.get("profile"), "status": record.get("status"),
        "started": record.get("started_at"), "finished": record.get("finished_at"),
        "commit": f"{git.get('commit') or '?'}" + (" (+dirty)" if git.get("dirty") else ""),
        "components": record.get("components") or {},
        "machine": (f"{hardware.get('cpu_model', '?')} ({hardware.get('cpu_generation', '?')}), "
                    f"{hardware.get('cpu_count', '?')} cores, {hardware.get('torch_threads', '?')} torch thread(s), "
                    f"device {hardware.get('device', '?')}, Python {hardware.get('python', '?')}"),
        "budget": record.get("budget") or {},
        "metrics": {"names": names, "rows": [(stage, [values.get(n) for n in names]) for stage, values in metrics.items()]},
        "curve": learning_curve(record),
        "stats": {key: stats[key] for key in STATS_SHOWN if key in stats},
        "config": json.dumps(record.get("config") or {}, indent=1, sort_keys=True),
    }


def embedded_plots(paths) -> list[dict]:
    """The PNGs among ``paths`` as ``data:`` URIs (the report opens offline, from one file)."""
    return [{"name": path.stem, "uri": "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")}
            for path in sorted(Path(p) for p in paths) if path.suffix == ".png"]


def render_report(records: list[dict], selection: dict[str, TableSelection], plots=(),
                  title: str = "genrec-bench results", built: dict | None = None) -> str:
    """The report's HTML, built from the records and the frozen selection, with the ``plots`` (the
    PNG paths a render wrote) embedded; ``built``: tables the caller already built, by name."""
    tables = []
    for name in sorted(selection, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n)):
        table = (built or {}).get(name) or build_selected(records, selection[name])
        if table.rows:
            tables.append(table_view(name, table))
    shown = {run for view in tables for row in view["rows"] for _, runs in row["runs"] for run, _ in runs}
    by_id = {r.get("run_id"): r for r in records}
    runs = [run_view(by_id[run]) for run in sorted(shown) if run in by_id]
    environment = Environment(loader=PackageLoader("bench", "templates"), autoescape=select_autoescape(["html", "j2"]),
                              trim_blocks=True, lstrip_blocks=True)
    template = environment.get_template("report.html.j2")
    return template.render(title=title, tables=tables, runs=runs, plots=embedded_plots(plots))
