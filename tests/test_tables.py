import pandas as pd
import pytest

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
    # zeros (an ID-based model on cold users) are not "second best"
    assert rank_marks(pd.Series([0.05, 0.0, 0.0])).tolist() == ["best", "", ""]


def test_latex_escape():
    assert latex_escape("50% & $x_1$") == r"50\% \& \$x\_1\$"


# ---------------------------------------------------------------------- paper tables on a hand-made store
import itertools  # noqa: E402

import numpy as np  # noqa: E402

from bench.metrics import metrics_from_ranks  # noqa: E402
from bench.tables import (  # noqa: E402
    IMPROVEMENT_ROW, build_ablation_table, build_main_table, build_tokenizer_table, paired_pvalue, render,
)

METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
_ids = itertools.count()


def run(label, method, dataset, values=None, seed=1, tokenizer=None, valid=0.0, ranks=None, fingerprint=None,
        **config):
    """A completed record; ``values``: R@5 N@5 R@10 N@10 (else computed from ``ranks``)."""
    test = dict(zip(METRICS, values)) if values is not None else metrics_from_ranks(np.asarray(ranks), (5, 10))
    full_config = {"method": method, "dataset": dataset, "seed": seed, "tokenizer": {"name": tokenizer or "rqvae"},
                   "model": {"encoder_layers": 4}}
    for key, value in config.items():
        node = full_config
        parts = key.split("__")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return {"run_id": f"r{next(_ids):04d}", "label": label, "method": method, "dataset": dataset, "seed": seed,
            "status": "completed", "config": full_config, "metrics": {"test": test, "valid": {"ndcg@10": valid}},
            "dataset_fingerprint": {"sha256": fingerprint or f"fp-{dataset}"},
            "per_user_test_rank": list(ranks) if ranks is not None else None}


def paper_store():
    # validation NDCG@10 ranks the rows as their test metrics do (the reference rows are chosen on it)
    return [
        run("TIGER[letter]", "tiger", "beauty", (0.050, 0.035, 0.070, 0.040), tokenizer="letter", valid=0.041),
        run("SASRec (CE)", "sasrec", "sports", (0.030, 0.020, 0.050, 0.026), valid=0.027),
        run("SASRec (CE)", "sasrec", "beauty", (0.040, 0.025, 0.060, 0.032), valid=0.033),
        run("GRU4Rec (CE)", "gru4rec", "sports", (0.020, 0.010, 0.030, 0.014), valid=0.015),
        run("GRU4Rec (CE)", "gru4rec", "beauty", (0.020, 0.012, 0.030, 0.015), valid=0.016),
        run("TIGER[rqvae]", "tiger", "sports", (0.026, 0.018, 0.040, 0.0225), valid=0.023),
        run("TIGER[rqvae]", "tiger", "beauty", (0.045, 0.032, 0.065, 0.0384), valid=0.039),
        run("TIGER[letter]", "tiger", "sports", (0.028, 0.019, 0.042, 0.023), tokenizer="letter", valid=0.024),
    ]


def md_rows(text):
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| Method") and not line.startswith("|--"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_main_table_layout_marks_and_improvement():
    text = render(build_main_table(paper_store()), "md")
    header = next(line for line in text.splitlines() if line.startswith("| Method"))
    assert [c.strip() for c in header.strip("|").split("|")][1:5] == ["Sports R@5", "Sports N@5", "Sports R@10",
                                                                       "Sports N@10"]
    rows = md_rows(text)
    assert list(rows) == ["GRU4Rec (CE)", "SASRec (CE)", "TIGER[rqvae]", "TIGER[letter]", f"*{IMPROVEMENT_ROW}*"]
    # sports: SASRec best, TIGER[letter] second; beauty: TIGER[letter] best, TIGER[rqvae] second
    assert rows["SASRec (CE)"][:4] == ["**0.0300**", "**0.0200**", "**0.0500**", "**0.0260**"]
    assert rows["TIGER[letter]"][:4] == ["<u>0.0280</u>", "<u>0.0190</u>", "<u>0.0420</u>", "<u>0.0230</u>"]
    assert rows["TIGER[letter]"][4:] == ["**0.0500**", "**0.0350**", "**0.0700**", "**0.0400**"]
    assert rows["TIGER[rqvae]"][4:] == ["<u>0.0450</u>", "<u>0.0320</u>", "<u>0.0650</u>", "<u>0.0384</u>"]
    assert rows["GRU4Rec (CE)"] == ["0.0200", "0.0100", "0.0300", "0.0140", "0.0200", "0.0120", "0.0300", "0.0150"]
    # best generative vs best baseline per column: (0.028 - 0.030) / 0.030, ..., (0.040 - 0.032) / 0.032
    assert rows[f"*{IMPROVEMENT_ROW}*"] == ["-6.7%", "-5.0%", "-16.0%", "-11.5%", "+25.0%", "+40.0%", "+16.7%", "+25.0%"]


def test_main_table_latex_booktabs_structure():
    text = render(build_main_table(paper_store()), "latex")
    lines = [line for line in text.splitlines() if not line.startswith("%")]
    assert lines[0] == r"\begin{tabular}{lrrrrrrrr}" and lines[1] == r"\toprule" and lines[-2:] == [r"\bottomrule",
                                                                                                    r"\end{tabular}"]
    assert lines[2] == r" & \multicolumn{4}{c}{Sports} & \multicolumn{4}{c}{Beauty} \\"
    assert lines[3] == r"\cmidrule(lr){2-5} \cmidrule(lr){6-9}"
    assert lines[4] == r"Method & R@5 & N@5 & R@10 & N@10 & R@5 & N@5 & R@10 & N@10 \\"
    body = [line for line in lines[5:-2]]
    assert body[0] == r"\midrule"
    assert body[1] == r"GRU4Rec (CE) & 0.0200 & 0.0100 & 0.0300 & 0.0140 & 0.0200 & 0.0120 & 0.0300 & 0.0150 \\"
    assert body[2].startswith(r"SASRec (CE) & \textbf{0.0300} & \textbf{0.0200} & \textbf{0.0500} & \textbf{0.0260} & ")
    assert body[3] == r"\midrule"  # baselines | generative
    assert body[4] == (r"TIGER[rqvae] & 0.0260 & 0.0180 & 0.0400 & 0.0225 & \underline{0.0450} & "
                       r"\underline{0.0320} & \underline{0.0650} & \underline{0.0384} \\")
    assert body[5] == (r"TIGER[letter] & \underline{0.0280} & \underline{0.0190} & \underline{0.0420} & "
                       r"\underline{0.0230} & \textbf{0.0500} & \textbf{0.0350} & \textbf{0.0700} & \textbf{0.0400} \\")
    assert body[6] == r"\midrule"
    assert body[7] == (r"Improvement over best baseline & -6.7\% & -5.0\% & -16.0\% & -11.5\% & +25.0\% & +40.0\% & "
                       r"+16.7\% & +25.0\% \\")
    for line in body:
        if line.endswith(r"\\"):
            assert line.count("&") == 8  # 1 label + 2 datasets x 4 metrics
    assert text.count(r"\begin{tabular}") == 1 and text.count("{") == text.count("}")


def test_main_table_mean_std_and_config_selection():
    store = paper_store() + [
        run("SASRec (CE)", "sasrec", "beauty", (0.044, 0.027, 0.064, 0.034), seed=2),
        # another SASRec configuration, worse on validation: not shown although better on test
        run("SASRec (CE)", "sasrec", "beauty", (0.090, 0.090, 0.090, 0.090), valid=-1.0, baseline__hidden_size=32),
    ]
    table = build_main_table(store)
    rows = md_rows(render(table, "md"))
    assert rows["SASRec (CE)"][4] == "0.0420 ± 0.0028"
    assert "0.0900" not in " ".join(rows["SASRec (CE)"])
    # the notes name the runs behind the selected configuration, and only for rows that had a choice
    shown = sorted(r["run_id"] for r in store if r["label"] == "SASRec (CE)" and r["dataset"] == "beauty"
                   and r["metrics"]["valid"]["ndcg@10"] != -1.0)
    choice = [n for n in table.notes if n.startswith("SASRec (CE) on Beauty:")]
    assert choice == [f"SASRec (CE) on Beauty: best of 2 configurations by validation NDCG@10; shown: {', '.join(shown)}."]
    assert not any(n.startswith(("SASRec (CE) on Sports", "GRU4Rec")) for n in table.notes)


def test_a_decoding_study_is_left_out_of_the_main_and_tokenizer_tables():
    # the same model re-decoded for TIGER Table 3 (a 50-wide test beam, sampling): even with a better
    # validation score it does not take the row, and the notes name it
    study = run("TIGER[letter]", "tiger", "beauty", (0.9, 0.9, 0.9, 0.9), tokenizer="letter", valid=0.5,
                decode__sample_temperatures=[1.0, 1.5], eval__max_k=50)
    store = paper_store() + [study]
    for table in (build_main_table(store), build_tokenizer_table(store)):
        text = render(table, "md")
        assert "0.9000" not in text
        assert "0.0400" in text  # the standard run's N@10
        assert any(study["run_id"] in note and "decoding study" in note for note in table.notes)
    # without a study the same run competes (and wins on validation)
    del study["config"]["decode"]
    assert "0.9000" in render(build_main_table(store), "md")


def ranks_with_hits(n_users, hits, rank=1):
    ranks = np.zeros(n_users, dtype=int)
    ranks[:hits] = rank
    return ranks


def test_significance_marker_where_the_answer_is_known():
    n = 1000
    store = [
        run("SASRec (CE)", "sasrec", "beauty", ranks=ranks_with_hits(n, 100), valid=0.1),
        run("TIGER[rqvae]", "tiger", "beauty", ranks=ranks_with_hits(n, 400), valid=0.4),  # 300 more hits: significant
        run("TIGER[lsh]", "tiger", "beauty", ranks=ranks_with_hits(n, 102), tokenizer="lsh", valid=0.1),  # 2 more: not
        # clearly better, but on another dataset version (fingerprint): never paired
        run("TIGER[letter]", "tiger", "beauty", ranks=ranks_with_hits(n, 500), tokenizer="letter", fingerprint="other",
            valid=0.5),
    ]
    assert paired_pvalue(ranks_with_hits(n, 400) > 0, ranks_with_hits(n, 100) > 0) < 1e-6
    assert paired_pvalue(ranks_with_hits(n, 102) > 0, ranks_with_hits(n, 100) > 0) > 0.05
    table = build_main_table(store)
    rows = md_rows(render(table, "md"))
    assert rows["TIGER[rqvae]"] == ["<u>0.4000</u>†"] * 2 + ["<u>0.4000</u>†"] * 2
    assert all("†" not in cell for cell in rows["TIGER[lsh]"])
    assert all("†" not in cell for cell in rows["TIGER[letter]"])
    assert all("†" not in cell for cell in rows["SASRec (CE)"])
    assert rows[f"*{IMPROVEMENT_ROW}*"][0] == "+400.0%"  # TIGER[letter] 0.5 vs 0.1 (marker: its own test)
    latex = render(table, "latex")
    assert r"\underline{0.4000}$^{\dagger}$" in latex
    csv = render(table, "csv")
    assert "p_value" in csv.splitlines()[0]


def test_significance_marker_on_seed_means():
    n = 400
    store = [run("SASRec (CE)", "sasrec", "beauty", ranks=ranks_with_hits(n, 40), seed=s) for s in (1, 2)]
    store += [run("TIGER[rqvae]", "tiger", "beauty", ranks=ranks_with_hits(n, 200, rank=3), seed=s) for s in (1, 2)]
    rows = md_rows(render(build_main_table(store), "md"))
    assert rows["TIGER[rqvae]"][0] == "**0.5000 ± 0.0000**†"


def test_tokenizer_table_rows_in_paper_order():
    store = [
        run("TIGER[letter]", "tiger", "beauty", (0.05, 0.03, 0.07, 0.04), tokenizer="letter"),
        run("TIGER[rqvae]", "tiger", "beauty", (0.045, 0.032, 0.065, 0.038), tokenizer="rqvae"),
        run("TIGER[random_id]", "tiger", "beauty", (0.03, 0.02, 0.043, 0.025), tokenizer="random_id"),
        run("TIGER[lsh]", "tiger", "beauty", (0.038, 0.025, 0.053, 0.03), tokenizer="lsh"),
        run("SASRec (CE)", "sasrec", "beauty", (0.04, 0.025, 0.06, 0.032)),
    ]
    rows = md_rows(render(build_tokenizer_table(store), "md").replace("| Tokenizer", "| Method"))
    assert list(rows) == ["Random ID", "LSH", "RQ-VAE", "LETTER"]
    assert rows["LETTER"][0] == "**0.0500**" and rows["RQ-VAE"][1] == "**0.0320**"


def test_ablation_table_one_row_per_value():
    store = [
        run("TIGER[rqvae]", "tiger", "beauty", (0.04, 0.03, 0.06, 0.035), model__encoder_layers=3),
        run("TIGER[rqvae]", "tiger", "beauty", (0.05, 0.03, 0.07, 0.04), model__encoder_layers=4),
        run("TIGER[rqvae]", "tiger", "beauty", (0.045, 0.03, 0.065, 0.038), model__encoder_layers=5),
        run("SASRec (CE)", "sasrec", "beauty", (0.9, 0.9, 0.9, 0.9)),  # its config has model.* defaults: ignored
    ]
    table = build_ablation_table(store, "model.encoder_layers")
    assert [row.labels for row in table.rows] == [["TIGER[rqvae]", "3"], ["TIGER[rqvae]", "4"], ["TIGER[rqvae]", "5"]]
    text = render(table, "md")
    lines = [line for line in text.splitlines() if line.startswith("| TIGER")]
    assert "**0.0500**" in lines[1] and "<u>0.0450</u>" in lines[2]
    assert r"\multicolumn{4}{c}{Beauty}" in render(table, "latex")


def test_write_text_atomic(tmp_path):
    from bench.atomic import atomic_write_text

    path = atomic_write_text(tmp_path / "t" / "main.md", "hello")
    assert path.read_text() == "hello\n" and not list(path.parent.glob(".*"))


def test_cli_kinds_and_output(tmp_path, capsys):
    from bench.cli import main
    from bench.records import write_record

    store = tmp_path / "runs"
    for record in paper_store():
        write_record(record, store)
    out_file = tmp_path / "tables" / "main.tex"
    assert main(["table", "--results-dir", str(store), "--format", "latex", "--output", str(out_file)]) == 0
    assert r"\toprule" in out_file.read_text() and r"\textbf{0.0500}" in out_file.read_text()
    assert main(["table", "--results-dir", str(store), "--kind", "tokenizers"]) == 0
    assert "| RQ-VAE" in capsys.readouterr().out
    assert main(["table", "--results-dir", str(store), "--kind", "ablation"]) == 2
    assert "--param" in capsys.readouterr().err
    assert main(["table", "--results-dir", str(store), "--where", "tokenizer.name=letter", "--dataset", "beauty"]) == 0
    rows = md_rows(capsys.readouterr().out)
    assert "TIGER[letter]" in rows and "TIGER[rqvae]" not in rows
    assert main(["table", "--results-dir", str(store), "--kind", "simple"]) == 0
    assert "beauty (test)" in capsys.readouterr().out


# ---------------------------------------------------------------------- what a table compares
def test_reference_rows_are_chosen_on_validation_not_test():
    store = [
        # better on test, worse on validation: neither the reference baseline nor the compared TIGER row
        run("GRU4Rec (CE)", "gru4rec", "beauty", (0.09, 0.09, 0.09, 0.09), valid=0.01),
        run("SASRec (CE)", "sasrec", "beauty", (0.04, 0.02, 0.05, 0.03), valid=0.05),
        run("TIGER[lsh]", "tiger", "beauty", (0.08, 0.08, 0.08, 0.08), tokenizer="lsh", valid=0.02),
        run("TIGER[rqvae]", "tiger", "beauty", (0.05, 0.03, 0.06, 0.03), valid=0.06),
    ]
    table = build_main_table(store)
    rows = md_rows(render(table, "md"))
    # TIGER[rqvae] (best validation) vs SASRec (CE) (best validation baseline): +25%, +50%, +20%, 0%
    assert rows[f"*{IMPROVEMENT_ROW}*"][:4] == ["+25.0%", "+50.0%", "+20.0%", "+0.0%"]
    assert any("TIGER[rqvae] vs SASRec (CE)" in note for note in table.notes)


def budgeted(label, method, values, steps, seconds, profile="cpu", commit="c1", dirty=False, components=None,
             **kwargs):
    record = run(label, method, "beauty", values, **kwargs)
    record["profile"] = profile
    record["config"]["profile"] = profile
    record["git"] = {"commit": commit, "dirty": dirty}
    record["components"] = components or {f"method/{method}": 1}
    record["budget"] = {"optimizer_steps": steps, "epochs": steps / 500, "train_seconds": seconds, "device": "cpu",
                        "threads": 1, "stop_reason": "max steps" if steps else "no training (closed form)"}
    return record


def test_one_profile_per_dataset_and_the_title_names_it():
    store = [
        budgeted("SASRec (CE)", "sasrec", (0.04, 0.02, 0.05, 0.03), 5000, 1000, valid=0.03),
        budgeted("TIGER[rqvae]", "tiger", (0.03, 0.02, 0.04, 0.02), 2500, 1200, valid=0.02),
        budgeted("TIGER[letter]", "tiger", (0.9, 0.9, 0.9, 0.9), 10, 5, profile="smoke", tokenizer="letter"),
    ]
    table = build_main_table(store)
    assert table.title == "Main results (profile cpu)"
    assert [r.labels[0] for r in table.rows] == ["SASRec (CE)", "TIGER[rqvae]"]
    assert any("left out 1 of profile smoke" in note for note in table.notes)
    smoke = build_main_table(store, profile="smoke")
    assert [r.labels[0] for r in smoke.rows] == ["TIGER[letter]"] and smoke.title.endswith("(profile smoke)")


def test_every_row_shows_its_budget():
    store = [
        budgeted("Pop", "pop", (0.01, 0.01, 0.01, 0.01), 0, 0.1),
        budgeted("TIGER[rqvae]", "tiger", (0.03, 0.02, 0.04, 0.02), 2500, 1200, seed=1),
        budgeted("TIGER[rqvae]", "tiger", (0.03, 0.02, 0.04, 0.02), 2300, 1250, seed=2),
    ]
    text = render(build_main_table(store), "md")
    rows = md_rows(text)
    assert rows["Pop"][-1] == "no training"
    assert rows["TIGER[rqvae]"][-1] == "2.3k–2.5k steps · 4.6–5 ep · 20 min–21 min · cpu×1 · max steps"
    latex = render(build_main_table(store), "latex")
    assert r"2.3k--2.5k steps $\cdot$" in latex and latex.splitlines()[-3].count("&") == 5
    assert "budget" in render(build_main_table(store), "csv").splitlines()[0]


def test_seeds_of_one_configuration_are_averaged_only_within_one_code_identity():
    old = budgeted("TIGER[rqvae]", "tiger", (0.01, 0.01, 0.01, 0.01), 2500, 1200, commit="aaaaaaa", seed=1)
    new = [budgeted("TIGER[rqvae]", "tiger", (0.03, 0.02, 0.04, 0.02), 2500, 1200, commit="bbbbbbb", seed=s)
           for s in (2, 3)]
    bumped = budgeted("TIGER[rqvae]", "tiger", (0.05, 0.05, 0.05, 0.05), 2500, 1200, commit="bbbbbbb", seed=4,
                      components={"method/tiger": 2})
    table = build_main_table([old] + new)
    cell = table.rows[0].cells[("beauty", "recall@5")]
    assert cell.n == 2 and cell.mean == pytest.approx(0.03)  # not 3 runs: the old commit is left out
    assert any(old["run_id"] in note and "other code" in note for note in table.notes)
    table = build_main_table(new + [bumped])
    assert table.rows[0].cells[("beauty", "recall@5")].n == 1  # a component version bump is other code too
    assert table.rows[0].code["beauty"] == "bbbbbbb"
    dirty = budgeted("TIGER[rqvae]", "tiger", (0.03, 0.02, 0.04, 0.02), 2500, 1200, dirty=True)
    assert any("uncommitted" in note for note in build_main_table([dirty]).notes)


# ---------------------------------------------------------------------- one table per sweep
def sweep_trial(spec, point, hits, n=400, valid=0.0, seed=2024):
    from sweeps.spec import resolve_trial_config

    config = resolve_trial_config(spec.base(), {**point, "seed": seed})
    ranks = ranks_with_hits(n, hits)
    record = run("TIGER[letter]", "tiger", config["dataset"], ranks=ranks, valid=valid, seed=seed)
    record["config"] = config
    return record


def test_sweep_table_compares_every_setting_with_the_default(tmp_path):
    from bench.tables.sweep import build_sweep_table
    from sweeps.spec import load_spec

    spec = load_spec("tau", budget="cpu")
    assert spec.default == {"train.tau": 1.0} and [d.values for d in spec.dimensions][0] == [0.6, 0.8, 1.0, 1.2]
    store = [
        sweep_trial(spec, {"train.tau": 1.2}, 100, valid=0.01),
        sweep_trial(spec, {"train.tau": 1.0}, 100, valid=0.02),
        sweep_trial(spec, {"train.tau": 0.8}, 160, valid=0.05),  # 60 more hits of 400: significantly better
        sweep_trial(spec, {"train.tau": 0.6}, 40, valid=0.03),  # 60 fewer: significantly worse
        run("SASRec (CE)", "sasrec", "beauty", (0.9, 0.9, 0.9, 0.9)),  # not a trial of the sweep
    ]
    table = build_sweep_table(store, spec)
    assert [r.labels for r in table.rows] == [["0.6"], ["0.8"], ["1 (default)"], ["1.2"]]
    rows = md_rows(render(table, "md").replace("| train.tau", "| Method"))
    assert rows["0.8"][2].endswith("†") and rows["0.6"][2].endswith("‡")
    assert not rows["1.2"][2].endswith(("†", "‡")) and not rows["1 (default)"][2].endswith(("†", "‡"))
    assert any("Best setting by validation NDCG@10 on Beauty: 0.8" in n for n in table.notes)
    assert r"$^{\ddagger}$" in render(table, "latex")

    # the papers' grid (tau 0.6, 0.7, ..., 1.2) shows its own settings; the budget's table does not
    # show a setting off its reduced grid
    store.append(sweep_trial(load_spec("tau"), {"train.tau": 0.7}, 100))
    full = build_sweep_table(store, load_spec("tau"))
    assert [r.labels[0] for r in full.rows] == ["0.6", "0.7", "0.8", "1 (default)", "1.2"]
    assert "0.7" not in [r.labels[0] for r in build_sweep_table(store, spec).rows]


def test_a_resumed_trial_is_its_sweeps_trial_and_a_seed_of_its_configuration():
    # a trial cut off mid-training and resumed from its checkpoint (train.resume_from set) ran the
    # same setting: it is in its sweep's table, and averaged with the other seeds of its configuration
    from bench.tables.sweep import build_sweep_table
    from sweeps.spec import load_spec, record_trial_key

    spec = load_spec("tau", budget="cpu")
    plain = sweep_trial(spec, {"train.tau": 1.2}, 100, seed=2025)
    resumed = sweep_trial(spec, {"train.tau": 1.2}, 120, seed=2024)
    resumed["config"]["train"]["resume_from"] = "results/work/some-run"
    table = build_sweep_table([sweep_trial(spec, {"train.tau": 1.0}, 100), resumed], spec)
    assert [r.labels for r in table.rows] == [["1 (default)"], ["1.2"]]
    main = build_main_table([plain, resumed])
    assert main.rows[0].cells[("beauty", "recall@10")].n == 2
    twin = sweep_trial(spec, {"train.tau": 1.2}, 120, seed=2024)
    twin["components"] = resumed["components"] = {"tiger": "1"}
    assert record_trial_key(twin) == record_trial_key(resumed)


def test_a_table_whose_runs_trained_on_different_machines_names_the_rows_of_each():
    # training times in the Budget column compare only within one machine: a sweep finished on
    # another CPU says which rows ran where, and a table of one machine says nothing
    from bench.tables.sweep import build_sweep_table
    from sweeps.spec import load_spec

    spec = load_spec("tau", budget="cpu")
    store = [sweep_trial(spec, {"train.tau": t}, 100) for t in (0.6, 0.8, 1.0)]
    for record in store:
        record["hardware"] = {"cpu_model": "AMD EPYC", "cpu_generation": "family 25, model 1", "device": "cpu"}
    assert not any("more than one machine" in n for n in build_sweep_table(store, spec).notes)
    store[1]["hardware"] = {"cpu_model": "Intel Xeon", "cpu_generation": "family 6, model 143", "device": "cpu"}
    store.append(sweep_trial(spec, {"train.tau": 1.2}, 100))  # an old record without hardware facts
    notes = [n for n in build_sweep_table(store, spec).notes if "more than one machine" in n]
    assert notes == ["Runs on more than one machine (training times compare only within one): "
                     "AMD EPYC (family 25, model 1): 0.6 / 1 (default); Intel Xeon (family 6, model 143): 0.8; "
                     "unrecorded CPU: 1.2."]
    gpu = run("TIGER[rqvae]", "tiger", "beauty", (0.03, 0.02, 0.04, 0.02))
    gpu["hardware"] = {"cpu_model": "AMD EPYC", "gpu": "NVIDIA H200", "cuda": True, "device": "cuda"}
    gpu["budget"] = {"device": "cuda", "optimizer_steps": 10}
    cpu = run("SASRec (CE)", "sasrec", "beauty", (0.02, 0.01, 0.03, 0.01))
    cpu["hardware"] = {"cpu_model": "AMD EPYC", "device": "cpu"}
    assert any("AMD EPYC (generation not recorded): SASRec (CE); NVIDIA H200: TIGER[rqvae]." in n
               for n in build_main_table([gpu, cpu]).notes)


def test_render_writes_a_table_per_sweep(tmp_path):
    from bench.commands.render import render_all
    from sweeps.spec import load_spec

    spec = load_spec("tau", budget="cpu")
    store = [sweep_trial(spec, {"train.tau": t}, 100 + int(t * 10)) for t in (0.6, 1.0)]
    written = render_all(store, tmp_path)
    names = {p.name for p in written}
    assert {"sweep-tau-cpu.md", "sweep-tau-cpu.tex", "sweep-tau-cpu.csv"} <= names
    assert "sweep-tau-cpu-train.tau.png" in names


def test_a_sweep_table_says_how_much_of_its_grid_ran_and_is_not_repeated_for_the_papers_grid(tmp_path):
    from bench.commands.render import render_all
    from bench.tables.sweep import build_sweep_table
    from sweeps.spec import load_spec

    budget, papers = load_spec("codebook_size", budget="cpu"), load_spec("codebook_size")
    assert papers.profile == budget.profile  # both grids take the same cpu runs
    store = [sweep_trial(budget, {"tokenizer.letter.codebook_size": n}, 100 + n // 8) for n in (64, 256)]
    names = {p.name for p in render_all(store, tmp_path, plots=False)}
    # the papers' grid holds only the budget's two runs: one table, not the same rows twice
    assert "sweep-codebook_size-cpu.md" in names and "sweep-codebook_size.md" not in names
    # nor again as the per-parameter ablation table, which would show them without the default's marks
    assert "ablation-tokenizer.letter.codebook_size.md" not in names
    notes = build_sweep_table(store, budget).notes
    assert "Beauty: 2 of the grid's 3 trials (settings x seeds) are in the store; the rest have not run." in notes

    store.append(sweep_trial(papers, {"tokenizer.letter.codebook_size": 512}, 120))  # off the budget's grid
    names = {p.name for p in render_all(store, tmp_path, plots=False)}
    assert {"sweep-codebook_size-cpu.md", "sweep-codebook_size.md"} <= names
    assert "Beauty: 3 of the grid's 12 trials (settings x seeds) are in the store; the rest have not run." in \
        build_sweep_table(store, papers).notes
    store.append(sweep_trial(budget, {"tokenizer.letter.codebook_size": 128}, 110))
    assert not any("have not run" in n for n in build_sweep_table(store, budget).notes)


def test_decoding_tables_from_the_records_studies():
    from bench.tables.decoding import build_decoding_table

    def study(seed, entropy):
        record = run("TIGER[rqvae]", "tiger", "beauty", (0.1, 0.1, 0.1, 0.1), seed=seed)
        record["method_info"] = {
            "diversity": {"beam": {"entropy@10": entropy}, "T=1.5": {"entropy@10": entropy + 1, "recall@10": 0.05}},
            "invalid_id_rate": {"test (unconstrained beam search)": {"invalid_id_rate@10": 0.02 * seed}},
        }
        return record

    store = [study(1, 1.0), study(2, 2.0), run("SASRec (CE)", "sasrec", "beauty", (0.2, 0.2, 0.2, 0.2))]
    table = build_decoding_table(store, "diversity")
    assert [r.labels for r in table.rows] == [["TIGER[rqvae]", "beam"], ["TIGER[rqvae]", "T=1.5"]]
    assert table.rows[1].cells[("beauty", "entropy@10")].mean == 2.5  # mean over the two seeds
    # the beam row's recall is the run's test recall (0.1 in both runs), beside the sampled rows'
    assert table.rows[0].cells[("beauty", "recall@10")].mean == pytest.approx(0.1)
    invalid = build_decoding_table(store, "invalid")
    assert invalid.rows[0].cells[("beauty", "invalid_id_rate@10")].mean == pytest.approx(0.03)
    assert "Decoding" in render(table, "md")
    from bench.metrics import ENTROPY_UNIT

    assert f"Entropy ({ENTROPY_UNIT})" in table.notes[0]

    # two configurations of one method: a column says what sets each apart from the common setting
    deeper = study(3, 3.0)
    deeper["config"]["model"]["encoder_layers"] = 3
    deeper["run_id"] = "deeper"
    table = build_decoding_table(store + [deeper], "diversity")
    assert table.label_columns == ["Method", "Configuration", "Decoding"]
    assert {tuple(r.labels[:2]) for r in table.rows} == {("TIGER[rqvae]", "–"), ("TIGER[rqvae]", "model.encoder_layers=3")}
    # the notes name the runs of each block, so a reader can open their records
    runs = next(n for n in table.notes if n.startswith("Runs: "))
    assert "TIGER[rqvae] (model.encoder_layers=3): deeper" in runs
    assert f"TIGER[rqvae]: {', '.join(sorted(r['run_id'] for r in store[:2]))}" in runs


def test_config_differences_name_what_shapes_the_model_before_how_it_is_decoded():
    from bench.tables.frame import config_differences

    default = dict(decode__beam_size=20, eval__max_k=20, eval__ks=[10], train__tau=1.0)
    base = run("TIGER[letter]", "tiger", "beauty", (0.1, 0.1, 0.1, 0.1), tokenizer="letter", **default)
    other = run("TIGER[letter]", "tiger", "beauty", (0.1, 0.1, 0.1, 0.1), tokenizer="letter",
                decode__beam_size=50, eval__max_k=50, eval__ks=[10, 50], train__tau=0.8)
    third = run("TIGER[letter]", "tiger", "beauty", (0.1, 0.1, 0.1, 0.1), tokenizer="letter", **default)
    text = config_differences({"a": base, "b": other, "c": third})["b"]
    assert text.startswith("train.tau=0.8, ") and text.endswith("(+1 more)")


def test_config_differences_name_the_settings_that_set_a_configuration_apart():
    from bench.tables.frame import config_differences

    def rec(**config):
        return {"method": "tiger", "config": {"method": "tiger", "seed": 1, "results_dir": "x", **config}}

    base = {"model": {"encoder_layers": 2, "d_model": 64}, "train": {"lr": 0.005}, "baseline": {"epochs": 5}}
    records = {"a": rec(**base), "b": rec(**base, extra=1),
               "c": rec(**{**base, "model": {"encoder_layers": 3, "d_model": 128}, "train": {"lr": 0.01}})}
    records["c"]["config"]["seed"] = 7  # seeds and paths never set a configuration apart
    out = config_differences(records, limit=2)
    # `extra` is missing from two configs, baseline.* means nothing to TIGER: neither is named
    assert out == {"a": "", "b": "", "c": "model.d_model=128, model.encoder_layers=3 (+1 more)"}
    assert config_differences({"a": rec(**base)}) == {"a": ""}


def test_an_ablation_compares_only_runs_that_differ_in_its_parameter_alone():
    store = [
        run("TIGER[rqvae]", "tiger", "beauty", (0.04, 0.03, 0.06, 0.035), model__encoder_layers=3),
        run("TIGER[rqvae]", "tiger", "beauty", (0.05, 0.03, 0.07, 0.04), model__encoder_layers=4),
        # a third value, but with another change too (learning rate): not part of the comparison
        run("TIGER[rqvae]", "tiger", "beauty", (0.09, 0.09, 0.09, 0.09), model__encoder_layers=5, train__lr=0.1),
    ]
    table = build_ablation_table(store, "model.encoder_layers")
    assert [row.labels for row in table.rows] == [["TIGER[rqvae]", "3"], ["TIGER[rqvae]", "4"]]
    assert any("differ in model.encoder_layers alone" in note for note in table.notes)


def test_main_and_tokenizer_tables_compare_runs_at_the_profiles_current_budget():
    """A clock-stopped run or one under an earlier profile definition is not at the budget the
    profile sets today: where a method has a run at that budget, only those are shown, even when
    another run scores higher on validation; the left-out runs are named."""
    from bench.config import profile_value

    steps = profile_value("cpu", "train.max_steps")
    budget = dict(train__max_steps=steps, train__max_epochs=profile_value("cpu", "train.max_epochs"),
                  train__batch_size=profile_value("cpu", "train.batch_size"))
    current = run("TIGER[lsh]", "tiger", "beauty", (0.01, 0.005, 0.02, 0.008), tokenizer="lsh", valid=0.01,
                  profile="cpu", **budget)
    current["profile"] = "cpu"
    current["budget"] = {"optimizer_steps": steps, "stop_reason": "max steps", "time_limit_hit": False}
    clocked = run("TIGER[lsh]", "tiger", "beauty", (0.03, 0.015, 0.05, 0.02), tokenizer="lsh", valid=0.03,
                  profile="cpu", **budget)
    clocked["profile"] = "cpu"
    clocked["budget"] = {"optimizer_steps": steps // 2, "stop_reason": "time limit", "time_limit_hit": True}
    older = run("TIGER[lsh]", "tiger", "beauty", (0.04, 0.02, 0.06, 0.03), tokenizer="lsh", valid=0.04,
                profile="cpu", **dict(budget, train__max_steps=steps // 3))
    older["profile"] = "cpu"
    older["budget"] = {"optimizer_steps": steps // 3, "stop_reason": "max steps", "time_limit_hit": False}
    for build in (build_main_table, build_tokenizer_table):
        table = build([current, clocked, older])
        assert len(table.rows) == 1
        assert list(table.rows[0].runs["beauty"]["run_id"]) == [current["run_id"]]
        note = next(n for n in table.notes if "another training budget" in n)
        assert clocked["run_id"] in note and older["run_id"] in note and f"train.max_steps={steps}" in note
    # no run at today's budget: the method keeps its runs (the budget column says what they got)
    table = build_main_table([clocked, older])
    assert list(table.rows[0].runs["beauty"]["run_id"]) == [older["run_id"]]


def test_a_two_dimensional_sweeps_curve_holds_the_other_dimension_at_its_default():
    # alpha x beta: the alpha curve draws the beta-default trials only, not the best beta per alpha
    from bench.commands.render import curve_slice
    from bench.tables.sweep import sweep_records
    from sweeps.spec import load_spec

    spec = load_spec("letter_alpha_beta", budget="cpu")
    alpha, beta = "tokenizer.letter.alpha", "tokenizer.letter.beta"
    store = [sweep_trial(spec, {alpha: 0.0, beta: 0.0}, 150, valid=0.05),  # the better beta at alpha 0
             sweep_trial(spec, {alpha: 0.0, beta: 0.0001}, 80, valid=0.01),
             sweep_trial(spec, {alpha: 0.02, beta: 0.0001}, 120, valid=0.03)]
    found = sweep_records(store, spec)
    kept, held = curve_slice(spec, alpha, found)
    assert sorted(r["run_id"] for r in kept) == sorted(r["run_id"] for r in store[1:])
    assert held == f"{beta} = 0.0001"
    kept, held = curve_slice(load_spec("tau", budget="cpu"), "train.tau", [(r, {}) for r in store])
    assert len(kept) == 3 and held is None  # one swept dimension: every trial
