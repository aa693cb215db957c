import pandas as pd

from bench.tables import latex_escape, rank_marks, records_frame, render_table


def record(method, seed, r10, n10, dataset="d", status="completed"):
    return {"dataset": dataset, "label": method, "seed": seed, "run_id": f"{method}{seed}", "status": status,
            "metrics": {"test": {"recall@10": r10, "ndcg@10": n10}}}


def test_best_bold_second_underlined_markdown():
    frame = records_frame([record("A", 1, 0.3, 0.1), record("B", 1, 0.2, 0.3), record("C", 1, 0.1, 0.2)])
    lines = render_table(frame, "md").splitlines()
    row = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[3:5]] for line in lines[2:]}
    assert row["A"] == ["**0.3000**", "0.1000"]
    assert row["B"] == ["<u>0.2000</u>", "**0.3000**"]
    assert row["C"] == ["0.1000", "<u>0.2000</u>"]


def test_latex_marks_and_booktabs():
    frame = records_frame([record("A_1", 1, 0.3, 0.1), record("B", 1, 0.2, 0.3)])
    text = render_table(frame, "latex")
    assert text.splitlines()[1] == r"\toprule" and r"\bottomrule" in text
    assert r"A\_1 & 1 & \textbf{0.3000} & \underline{0.1000} \\" in text


def test_mean_and_std_over_seeds():
    frame = records_frame([record("A", 1, 0.2, 0.1), record("A", 2, 0.4, 0.1)])
    assert "0.3000 ± 0.1414" in render_table(frame, "md")


def test_failed_runs_are_left_out():
    frame = records_frame([record("A", 1, 0.2, 0.1), record("B", 1, 0.9, 0.9, status="failed")])
    assert list(frame["method"]) == ["A"]


def test_rank_marks_ties_share():
    assert rank_marks(pd.Series([1.0, 1.0, 0.5])).tolist() == ["best", "best", "second"]


def test_latex_escape():
    assert latex_escape("50% & $x_1$") == r"50\% \& \$x\_1\$"
