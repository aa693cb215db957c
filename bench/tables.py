"""Paper-style tables from run records: pure functions from records to Markdown / LaTeX / CSV."""
from __future__ import annotations

import pandas as pd
from tabulate import tabulate

DEFAULT_METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@20", "ndcg@20")
SHORT = {"recall": "R", "ndcg": "N", "coverage": "Cov"}


def metric_header(metric: str) -> str:
    name, _, k = metric.partition("@")
    return f"{SHORT.get(name, name)}@{k}"


def records_frame(records, split: str = "test") -> pd.DataFrame:
    """One row per completed run: dataset, label, seed and the ``split`` metrics."""
    rows = []
    for record in records:
        if record.get("status", "completed") != "completed":
            continue
        rows.append(
            {"dataset": record["dataset"], "method": record["label"], "seed": record["seed"],
             "run_id": record["run_id"], **record["metrics"][split]}
        )
    return pd.DataFrame(rows)


def rank_marks(values: pd.Series) -> pd.Series:
    """'best' / 'second' / '' per cell of one column (higher is better; ties share a mark)."""
    distinct = sorted(values.dropna().unique(), reverse=True)
    marks = pd.Series("", index=values.index)
    if distinct:
        marks[values == distinct[0]] = "best"
    if len(distinct) > 1:
        marks[values == distinct[1]] = "second"
    return marks


def summarize(frame: pd.DataFrame, metrics=DEFAULT_METRICS) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Mean and std over seeds per method, and the number of runs behind each row."""
    metrics = [m for m in metrics if m in frame.columns]
    grouped = frame.groupby("method", sort=False)[metrics]
    return grouped.mean(), grouped.std(ddof=1), grouped.size()


def _cell(value: float, std: float, mark: str, fmt: str, digits: int) -> str:
    text = f"{value:.{digits}f}"
    if pd.notna(std):
        text += (r" $\pm$ " if fmt == "latex" else " ± ") + f"{std:.{digits}f}"
    if fmt == "latex":
        return {"best": rf"\textbf{{{text}}}", "second": rf"\underline{{{text}}}"}.get(mark, text)
    if fmt == "md":
        return {"best": f"**{text}**", "second": f"<u>{text}</u>"}.get(mark, text)
    return text


LATEX_SPECIALS = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


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
