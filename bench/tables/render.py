"""Tables as text: Markdown (GitHub), LaTeX (booktabs) and tidy CSV; the simple per-dataset table."""
from __future__ import annotations

import pandas as pd
from tabulate import tabulate

from bench.tables.model import Row, Table, rank_marks
from bench.tables.names import DEFAULT_METRICS, SIGNIFICANCE_MARK, WORSE_MARK, dataset_name, metric_header


def _cell(value: float, std: float, mark: str, fmt: str, digits: int, significant: bool = False,
          worse: bool = False) -> str:
    text = f"{value:.{digits}f}"
    if pd.notna(std):
        text += (r" $\pm$ " if fmt == "latex" else " ± ") + f"{std:.{digits}f}"
    if fmt == "latex":
        text = {"best": rf"\textbf{{{text}}}", "second": rf"\underline{{{text}}}"}.get(mark, text)
        return text + ((r"$^{\ddagger}$" if worse else r"$^{\dagger}$") if significant else "")
    if fmt == "md":
        text = {"best": f"**{text}**", "second": f"<u>{text}</u>"}.get(mark, text)
        return text + ((WORSE_MARK if worse else SIGNIFICANCE_MARK) if significant else "")
    return text


LATEX_SPECIALS = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                  "±": r"$\pm$", "†": r"$^{\dagger}$", "‡": r"$^{\ddagger}$", "×": r"$\times$", "·": r"$\cdot$",
                  "–": "--"}


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
                   _cell(cell.mean, cell.std, cell.mark, fmt, digits, cell.significant, cell.worse))
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


def _count_headers(table: Table) -> list[str]:
    """The columns after the metrics: seeds (n), configurations tried, and the budget where known."""
    return ["n", "Configs"] + (["Budget"] if table.show_budget else [])


def _count_cells(table: Table, row: Row) -> list[str]:
    cells = [row.seeds_cell(table.datasets), row.configs_cell(table.datasets)]
    return cells + ([row.budget_cell(table.datasets)] if table.show_budget else [])


def table_to_markdown(table: Table, digits: int = 4) -> str:
    if not table.rows:
        return table.empty_message
    one = len(table.datasets) == 1
    extra = _count_headers(table)
    headers = list(table.label_columns) + [
        metric_header(m) if one else f"{dataset_name(d)} {metric_header(m)}" for d, m in table.columns
    ] + extra
    body = [row.labels + _body_cells(table, row, "md", digits) + _count_cells(table, row) for row in table.rows]
    for label, values in table.summary_rows:
        body.append([f"*{label}*"] + [""] * (len(table.label_columns) - 1) + _summary_cells(table, values, "md")
                    + [""] * len(extra))
    title = f"**{table.title}**" + (f" ({dataset_name(table.datasets[0])})" if one else "")
    text = tabulate(body, headers, tablefmt="github", disable_numparse=True)
    return "\n".join([title, "", text, ""] + [f"{note}  " for note in table.notes]).rstrip()


def table_to_latex(table: Table, digits: int = 4) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``); notes as comments above it."""
    if not table.rows:
        return f"% {table.empty_message}"
    n_labels = len(table.label_columns)
    n_metrics = len(table.metrics)
    extra = _count_headers(table)
    align = ("l" * n_labels + "".join("r" * n_metrics for _ in table.datasets) + "rr"
             + ("l" if table.show_budget else ""))
    lines = [f"% {table.title}"] + [f"% {latex_escape(note)}" for note in table.notes]
    lines += [rf"\begin{{tabular}}{{{align}}}", r"\toprule"]
    groups = " & ".join([""] * n_labels + [rf"\multicolumn{{{n_metrics}}}{{c}}{{{latex_escape(dataset_name(d))}}}"
                                           for d in table.datasets] + [""] * len(extra))
    lines.append(groups + r" \\")
    rules = []
    for i, _ in enumerate(table.datasets):
        start = n_labels + i * n_metrics + 1
        rules.append(rf"\cmidrule(lr){{{start}-{start + n_metrics - 1}}}")
    lines.append(" ".join(rules))
    headers = [latex_escape(h) for h in table.label_columns] + [metric_header(m) for _, m in table.columns]
    headers += [latex_escape(h) for h in extra]
    lines += [" & ".join(headers) + r" \\", r"\midrule"]
    previous = None
    for row in table.rows:
        if previous is not None and row.group != previous:
            lines.append(r"\midrule")
        previous = row.group
        cells = [latex_escape(label) for label in row.labels] + _body_cells(table, row, "latex", digits)
        cells += [latex_escape(c) for c in _count_cells(table, row)]
        if cells[0].startswith("["):  # else read as the optional argument of the \\ or \midrule before it
            cells[0] = "{}" + cells[0]
        lines.append(" & ".join(cells) + r" \\")
    for label, values in table.summary_rows:
        lines.append(r"\midrule")
        cells = [latex_escape(label)] + [""] * (n_labels - 1) + _summary_cells(table, values, "latex") + [""] * len(extra)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def _p(value) -> str:
    return "" if value is None or pd.isna(value) else f"{value:.3g}"


def table_to_csv(table: Table, digits: int = 6) -> str:
    """Tidy CSV: one line per (row, dataset, metric) with mean, std, n (seeds), n_configs, mark, the
    Welch p over seeds (``p_welch``) and its Holm adjustment (``p_holm``, what ``significant`` rests
    on), the secondary per-user p (``p_users_<test>``: test users only, ignores training variance),
    budget, commit, machine and the row's run ids (``runs``, ``;``-separated)."""
    users = f"p_users_{table.users_test}"
    records = []
    for row in table.rows:
        for (dataset, metric), cell in row.cells.items():
            records.append({
                **dict(zip([c.lower() for c in table.label_columns], row.labels)), "group": row.group,
                "dataset": dataset, "metric": metric, "mean": cell.mean, "std": cell.std, "n": cell.n,
                "n_configs": row.configs.get(dataset), "mark": cell.mark, "p_welch": _p(cell.p_value),
                "p_holm": _p(cell.p_holm), "significant": cell.significant, "worse": cell.worse,
                users: _p(cell.p_users), "reference": dataset in row.reference,
                "budget": row.budget.get(dataset, ""), "code": row.code.get(dataset, ""),
                "machine": row.machines(dataset), "runs": ";".join(row.run_ids(dataset)),
            })
    for label, values in table.summary_rows:
        for (dataset, metric), (percent, significant) in values.items():
            records.append({table.label_columns[0].lower(): label, "group": "summary", "dataset": dataset,
                            "metric": metric, "mean": percent, "std": None, "n": None, "n_configs": None,
                            "mark": "percent", "p_welch": "", "p_holm": "", "significant": significant,
                            "worse": False, users: "", "reference": False, "budget": "", "code": "", "machine": "",
                            "runs": ""})
    if not records:
        return ""
    frame = pd.DataFrame(records)
    for column in ("n", "n_configs"):
        frame[column] = frame[column].astype("Int64")
    return frame.to_csv(index=False, float_format=f"%.{digits}f")


def render(table: Table, fmt: str = "md", digits: int = 4) -> str:
    if fmt == "latex":
        return table_to_latex(table, digits)
    if fmt == "csv":
        return table_to_csv(table)
    return table_to_markdown(table, digits)


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
