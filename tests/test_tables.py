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
    IMPROVEMENT_ROW, build_ablation_table, build_main_table, build_tokenizer_table, render,
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


def md_columns(text):
    """row label -> {column header: cell} of a Markdown table."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    headers = [c.strip() for c in lines[0].strip().strip("|").split("|")]
    return {cells[0]: dict(zip(headers, cells)) for cells in
            ([c.strip() for c in line.strip().strip("|").split("|")] for line in lines[1:])}


def md_rows(text):
    """row label -> the cells between the label and the n (seeds) column: the metric cells."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| Method") and not line.startswith("|--"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    header = next((line for line in text.splitlines() if line.startswith("| ")), "")
    names = [c.strip() for c in header.strip().strip("|").split("|")]
    end = names.index("n") - 1 if "n" in names else None
    return {label: cells[:end] for label, cells in rows.items()}


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
    # label, 2 datasets x 4 metrics, then n (seeds) and Configs
    assert lines[0] == r"\begin{tabular}{lrrrrrrrrrr}" and lines[1] == r"\toprule" and lines[-2:] == [
        r"\bottomrule", r"\end{tabular}"]
    assert lines[2] == r" & \multicolumn{4}{c}{Sports} & \multicolumn{4}{c}{Beauty} &  &  \\"
    assert lines[3] == r"\cmidrule(lr){2-5} \cmidrule(lr){6-9}"
    assert lines[4] == r"Method & R@5 & N@5 & R@10 & N@10 & R@5 & N@5 & R@10 & N@10 & n & Configs \\"
    body = [line for line in lines[5:-2]]
    assert body[0] == r"\midrule"
    assert body[1] == r"GRU4Rec (CE) & 0.0200 & 0.0100 & 0.0300 & 0.0140 & 0.0200 & 0.0120 & 0.0300 & 0.0150 & 1 & 1 \\"
    assert body[2].startswith(r"SASRec (CE) & \textbf{0.0300} & \textbf{0.0200} & \textbf{0.0500} & \textbf{0.0260} & ")
    assert body[3] == r"\midrule"  # baselines | generative
    assert body[4] == (r"TIGER[rqvae] & 0.0260 & 0.0180 & 0.0400 & 0.0225 & \underline{0.0450} & "
                       r"\underline{0.0320} & \underline{0.0650} & \underline{0.0384} & 1 & 1 \\")
    assert body[5] == (r"TIGER[letter] & \underline{0.0280} & \underline{0.0190} & \underline{0.0420} & "
                       r"\underline{0.0230} & \textbf{0.0500} & \textbf{0.0350} & \textbf{0.0700} & \textbf{0.0400} & 1 & 1 \\")
    assert body[6] == r"\midrule"
    assert body[7] == (r"Improvement over best baseline & -6.7\% & -5.0\% & -16.0\% & -11.5\% & +25.0\% & +40.0\% & "
                       r"+16.7\% & +25.0\% &  &  \\")
    for line in body:
        if line.endswith(r"\\"):
            assert line.count("&") == 10  # 1 label + 2 datasets x 4 metrics + n + Configs
    assert text.count(r"\begin{tabular}") == 1 and text.count("{") == text.count("}")


def test_main_table_mean_std_and_config_selection():
    store = paper_store() + [
        run("SASRec (CE)", "sasrec", "beauty", (0.044, 0.027, 0.064, 0.034), seed=2),
        # another SASRec configuration, worse on validation: not shown although better on test
        run("SASRec (CE)", "sasrec", "beauty", (0.090, 0.090, 0.090, 0.090), valid=-1.0, baseline__hidden_size=32),
    ]
    table = build_main_table(store)
    text = render(table, "md")
    rows = md_rows(text)
    assert rows["SASRec (CE)"][4] == "0.0420 ± 0.0028"
    assert "0.0900" not in " ".join(rows["SASRec (CE)"])
    # every row says how many configurations it was chosen among; the other one is left out, with why
    assert md_columns(text)["SASRec (CE)"]["Configs"] == "Sports: 1; Beauty: 2"
    assert md_columns(text)["SASRec (CE)"]["n"] == "Sports: 1; Beauty: 2"
    assert md_columns(text)["GRU4Rec (CE)"]["Configs"] == "1"
    from bench.tables import select_main

    hidden = store[-1]["run_id"]
    reason = select_main(store).left_out[hidden]
    assert reason.startswith("not the best configuration on validation (NDCG@10 -1.0000 vs") and "best of 2" in reason


def test_a_decoding_study_is_left_out_of_the_main_and_tokenizer_tables():
    # the same model re-decoded for TIGER Table 3 (a 50-wide test beam, sampling): even with a better
    # validation score it does not take the row, and the notes name it
    study = run("TIGER[letter]", "tiger", "beauty", (0.9, 0.9, 0.9, 0.9), tokenizer="letter", valid=0.5,
                decode__sample_temperatures=[1.0, 1.5], eval__max_k=50)
    store = paper_store() + [study]
    from bench.tables import select_main, select_tokenizers

    for table, selection in ((build_main_table(store), select_main(store)),
                             (build_tokenizer_table(store), select_tokenizers(store))):
        text = render(table, "md")
        assert "0.9000" not in text
        assert "0.0400" in text  # the standard run's N@10
        assert selection.left_out[study["run_id"]].startswith("decoding study")
    # without a study the same run competes (and wins on validation)
    del study["config"]["decode"]
    assert "0.9000" in render(build_main_table(store), "md")


def test_the_tokenizer_table_compares_tokenizers_in_one_architecture():
    # a decoder-only run of a tokenizer is another model: not one of the tokenizer's configurations
    # (it would win its "tuned" row on validation here); records without model.arch ran the encoder-decoder
    dec = run("TIGER-dec[letter]", "tiger", "beauty", (0.9, 0.9, 0.9, 0.9), tokenizer="letter", valid=0.5,
              model__arch="decoder_only")
    store = paper_store() + [dec]
    from bench.tables import select_tokenizers

    assert "0.9000" not in render(build_tokenizer_table(store), "md")
    assert select_tokenizers(store).left_out[dec["run_id"]].startswith("another architecture (model.arch=decoder_only")
    dec["config"]["model"]["arch"] = "encoder_decoder"  # = the LETTER run without the key: one configuration
    assert dec["run_id"] in select_tokenizers(store).run_ids


def ranks_with_hits(n_users, hits, rank=1):
    ranks = np.zeros(n_users, dtype=int)
    ranks[:hits] = rank
    return ranks


def seeded(label, method, hits, seeds=(1, 2, 3), n=1000, **kwargs):
    """One run per seed, ``hits[i]`` users with their target at rank 1 in seed i's run."""
    return [run(label, method, "beauty", ranks=ranks_with_hits(n, h), seed=s, valid=h / n, **kwargs)
            for s, h in zip(seeds, hits)]


def test_significance_marker_where_the_answer_is_known():
    # Welch's t over seeds: 300 more hits in every seed is significant, 2 more (within the seed noise) is not;
    # a row on another dataset version (fingerprint) is never compared
    store = (seeded("SASRec (CE)", "sasrec", (100, 104, 96))
             + seeded("TIGER[rqvae]", "tiger", (400, 410, 395))
             + seeded("TIGER[lsh]", "tiger", (102, 95, 109), tokenizer="lsh")
             + seeded("TIGER[letter]", "tiger", (500, 505, 510), tokenizer="letter", fingerprint="other"))
    table = build_main_table(store)
    rows = md_rows(render(table, "md"))
    assert all(cell.endswith("†") for cell in rows["TIGER[rqvae]"])
    assert all("†" not in cell for cell in rows["TIGER[lsh]"])
    assert all("†" not in cell for cell in rows["TIGER[letter]"])
    assert all("†" not in cell for cell in rows["SASRec (CE)"])
    assert rows[f"*{IMPROVEMENT_ROW}*"][0].startswith("+")  # TIGER[letter] (best on validation) vs SASRec
    latex = render(table, "latex")
    assert r"$^{\dagger}$" in latex
    csv = pd.read_csv(__import__("io").StringIO(render(table, "csv")))
    assert {"p_welch", "p_holm", "p_users_wilcoxon", "runs", "n_configs"} <= set(csv.columns)
    rqvae = csv[(csv["method"] == "TIGER[rqvae]") & (csv["metric"] == "recall@10")].iloc[0]
    assert rqvae["p_holm"] >= rqvae["p_welch"] and rqvae["p_holm"] < 0.05 and rqvae["significant"]
    # 4 metrics x 2 rows tested (TIGER[letter]: other data; TIGER[lsh] not better on some): one Holm family
    assert "Holm over the table's" in table.notes[1] and "rows with n < 3 are not tested" in table.notes[1]


def test_significance_marker_on_seed_means():
    n = 400
    store = [run("SASRec (CE)", "sasrec", "beauty", ranks=ranks_with_hits(n, h), seed=s) for s, h in ((1, 40), (2, 42), (3, 38))]
    store += [run("TIGER[rqvae]", "tiger", "beauty", ranks=ranks_with_hits(n, h, rank=3), seed=s)
              for s, h in ((1, 200), (2, 204), (3, 196))]
    rows = md_rows(render(build_main_table(store), "md"))
    assert rows["TIGER[rqvae]"][0] == "**0.5000 ± 0.0100**†"
    # two seeds per row: the same means and spread, but no test and no mark
    rows = md_rows(render(build_main_table([r for r in store if r["seed"] != 3]), "md"))
    assert not rows["TIGER[rqvae]"][0].endswith("†")


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
    # none ran at the profile's default configuration: each tokenizer's one configuration, said so
    assert all(cells[0] == "not the default" for cells in rows.values())
    assert rows["LETTER"][1] == "**0.0500**" and rows["RQ-VAE"][2] == "**0.0320**"


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
    from bench.tables import select_main

    assert select_main(store).left_out[store[2]["run_id"]] == "other profile (smoke; the table shows cpu on Beauty)"
    smoke = build_main_table(store, profile="smoke")
    assert [r.labels[0] for r in smoke.rows] == ["TIGER[letter]"] and smoke.title.endswith("(profile smoke)")


def test_every_row_shows_its_budget():
    store = [
        budgeted("Pop", "pop", (0.01, 0.01, 0.01, 0.01), 0, 0.1),
        budgeted("TIGER[rqvae]", "tiger", (0.03, 0.02, 0.04, 0.02), 2500, 1200, seed=1),
        budgeted("TIGER[rqvae]", "tiger", (0.03, 0.02, 0.04, 0.02), 2300, 1250, seed=2),
    ]
    text = render(build_main_table(store), "md")
    rows = md_columns(text)
    assert rows["Pop"]["Budget"] == "no training"
    assert rows["TIGER[rqvae]"]["Budget"] == "2.3k–2.5k steps · 4.6–5 ep · 20 min–21 min · cpu×1 · max steps"
    assert rows["TIGER[rqvae]"]["n"] == "2"
    latex = render(build_main_table(store), "latex")
    assert r"2.3k--2.5k steps $\cdot$" in latex and latex.splitlines()[-3].count("&") == 7
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
    from bench.tables import select_main

    assert select_main([old] + new).left_out[old["run_id"]].startswith("other code identity (commit aaaaaaa;")
    table = build_main_table(new + [bumped])
    assert table.rows[0].cells[("beauty", "recall@5")].n == 1  # a component version bump is other code too
    assert table.rows[0].code["beauty"] == "bbbbbbb"
    # the reason names the component versions that differ, e.g. a protocol version bump
    reason = select_main(new + [bumped]).left_out[new[0]["run_id"]]
    assert reason.startswith("other code identity (commit bbbbbbb, method/tiger 1 -> 2; the same configuration's")
    dirty = budgeted("TIGER[rqvae]", "tiger", (0.03, 0.02, 0.04, 0.02), 2500, 1200, dirty=True)
    assert any("uncommitted" in note for note in build_main_table([dirty]).notes)


# ---------------------------------------------------------------------- one table per sweep
def sweep_trial(spec, point, hits, n=400, valid=0.0, seed=2024):
    from sweeps.spec import resolve_trial_config

    config = resolve_trial_config(spec.base(), {**point, "seed": seed})
    ranks = ranks_with_hits(n, hits)
    record = run("TIGER[letter]", "tiger", config["dataset"], ranks=ranks, valid=valid, seed=seed)
    record["config"] = config.to_record()
    return record


def test_sweep_table_compares_every_setting_with_the_default(tmp_path):
    from bench.tables.sweep import build_sweep_table
    from sweeps.spec import load_spec

    spec = load_spec("tau")
    assert spec.default == {"train.tau": 1.0} and [d.values for d in spec.dimensions][0] == [0.6, 0.7, 0.8, 0.9, 1.0,
                                                                                             1.1, 1.2]
    seeds = (2024, 2025, 2026)

    def trials(tau, hits, valid=0.0):
        return [sweep_trial(spec, {"train.tau": tau}, h, valid=valid, seed=s) for s, h in zip(seeds, hits)]

    store = (trials(1.2, (100, 104, 97), 0.01) + trials(1.0, (100, 96, 103), 0.02)
             + trials(0.8, (160, 165, 158), 0.05)  # 60 more hits of 400 in every seed: significantly better
             + trials(0.6, (40, 44, 37), 0.03)  # 60 fewer: significantly worse
             + [run("SASRec (CE)", "sasrec", "beauty", (0.9, 0.9, 0.9, 0.9))])  # not a trial of the sweep
    table = build_sweep_table(store, spec)
    assert [r.labels for r in table.rows] == [["0.6"], ["0.8"], ["1 (default)"], ["1.2"]]
    rows = md_rows(render(table, "md").replace("| train.tau", "| Method"))
    assert rows["0.8"][2].endswith("†") and rows["0.6"][2].endswith("‡")
    assert not rows["1.2"][2].endswith(("†", "‡")) and not rows["1 (default)"][2].endswith(("†", "‡"))
    assert "best on validation: 0.8" in table.notes[0]
    assert "Holm over the table's 12 tests" in table.notes[1]  # 3 settings x 4 metrics against the default
    assert r"$^{\ddagger}$" in render(table, "latex")

    # one seed per setting: the same means, no mark
    single = build_sweep_table([r for r in store if r["seed"] == 2024 or r["label"] == "SASRec (CE)"], spec)
    assert not any(c.significant for r in single.rows for c in r.cells.values())

    # the papers' grid (tau 0.6, 0.7, ..., 1.2) shows its own settings; the budget's table does not
    # show a setting off its reduced grid
    budget = load_spec("tau", budget="cpu")
    store.append(sweep_trial(budget, {"train.tau": 0.7}, 100))
    assert "0.7" not in [r.labels[0] for r in build_sweep_table(store, budget).rows]
    assert [r.labels[0] for r in build_sweep_table(store, spec).rows] == ["0.6", "0.7", "0.8", "1 (default)", "1.2"]


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


def test_a_table_whose_runs_trained_on_different_machines_says_so_and_its_csv_names_each_rows_machine():
    # training times in the Budget column compare only within one machine: a sweep finished on
    # another CPU says so, the CSV names each row's machine, and a table of one machine says nothing
    from bench.tables.sweep import build_sweep_table
    from sweeps.spec import load_spec

    spec = load_spec("tau", budget="cpu")
    store = [sweep_trial(spec, {"train.tau": t}, 100) for t in (0.6, 0.8, 1.0)]
    for record in store:
        record["hardware"] = {"cpu_model": "AMD EPYC", "cpu_generation": "family 25, model 1", "device": "cpu"}
    assert not any("one machine" in n for n in build_sweep_table(store, spec).notes)
    store[1]["hardware"] = {"cpu_model": "Intel Xeon", "cpu_generation": "family 6, model 143", "device": "cpu"}
    store.append(sweep_trial(spec, {"train.tau": 1.2}, 100))  # an old record without hardware facts
    table = build_sweep_table(store, spec)
    assert "times compare only within one machine (3 here)" in table.notes[-1]
    csv = pd.read_csv(__import__("io").StringIO(render(table, "csv")))
    machines = dict(zip(csv["train.tau"].astype(str), csv["machine"]))
    assert machines == {"0.6": "AMD EPYC (family 25, model 1)", "0.8": "Intel Xeon (family 6, model 143)",
                        "1 (default)": "AMD EPYC (family 25, model 1)", "1.2": "unrecorded CPU"}
    gpu = run("TIGER[rqvae]", "tiger", "beauty", (0.03, 0.02, 0.04, 0.02))
    gpu["hardware"] = {"cpu_model": "AMD EPYC", "gpu": "NVIDIA H200", "cuda": True, "device": "cuda"}
    gpu["budget"] = {"device": "cuda", "optimizer_steps": 10}
    cpu = run("SASRec (CE)", "sasrec", "beauty", (0.02, 0.01, 0.03, 0.01))
    cpu["hardware"] = {"cpu_model": "AMD EPYC", "device": "cpu"}
    csv = render(build_main_table([gpu, cpu]), "csv")
    assert "NVIDIA H200" in csv and "AMD EPYC (generation not recorded)" in csv


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
    assert "(Beauty: 2 of the grid's 3 trials ran)" in notes[0]

    store.append(sweep_trial(papers, {"tokenizer.letter.codebook_size": 512}, 120))  # off the budget's grid
    names = {p.name for p in render_all(store, tmp_path, plots=False)}
    assert {"sweep-codebook_size-cpu.md", "sweep-codebook_size.md"} <= names
    assert "(Beauty: 3 of the grid's 12 trials ran)" in build_sweep_table(store, papers).notes[0]
    store.append(sweep_trial(budget, {"tokenizer.letter.codebook_size": 128}, 110))
    assert "trials ran" not in build_sweep_table(store, budget).notes[0]


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
    # the CSV names the runs of each row, so a reader can open their records
    csv = pd.read_csv(__import__("io").StringIO(render(table, "csv")))
    runs = dict(zip(csv["configuration"], csv["runs"]))
    assert runs["model.encoder_layers=3"] == "deeper"
    assert runs["–"] == ";".join(sorted(r["run_id"] for r in store[:2]))


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
    from bench.tables import select_ablation

    reason = select_ablation(store, "model.encoder_layers").left_out[store[2]["run_id"]]
    assert reason == "differs from the compared TIGER[rqvae] runs in more than model.encoder_layers"


def test_an_ablation_leaves_out_a_method_with_one_value_of_its_parameter():
    # train.tau applies to every TIGER run: the tokenizers that ran at tau 1 only compare nothing
    store = [
        run("TIGER[letter]", "tiger", "beauty", (0.04, 0.03, 0.06, 0.035), tokenizer="letter", train__tau=0.8),
        run("TIGER[letter]", "tiger", "beauty", (0.05, 0.03, 0.07, 0.04), tokenizer="letter", train__tau=1.0),
        run("TIGER[lsh]", "tiger", "beauty", (0.02, 0.01, 0.03, 0.02), tokenizer="lsh", train__tau=1.0),
    ]
    table = build_ablation_table(store, "train.tau")
    assert [row.labels for row in table.rows] == [["TIGER[letter]", "0.8"], ["TIGER[letter]", "1"]]
    from bench.tables import select_ablation

    reason = select_ablation(store, "train.tau").left_out[store[2]["run_id"]]
    assert reason == "the only value of train.tau run for TIGER[lsh]"


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
    from bench.tables import select_main, select_tokenizers

    for build, select in ((build_main_table, select_main), (build_tokenizer_table, select_tokenizers)):
        table = build([current, clocked, older])
        assert len(table.rows) == 1
        assert list(table.rows[0].runs["beauty"]["run_id"]) == [current["run_id"]]
        left_out = select([current, clocked, older]).left_out
        assert left_out[clocked["run_id"]] == "other budget than profile cpu's today (stopped by the clock)"
        assert left_out[older["run_id"]].startswith(f"other budget than profile cpu's today (not train.max_steps={steps}")
    # no run at today's budget: the method keeps its runs (the budget column says what they got)
    table = build_main_table([clocked, older])
    assert list(table.rows[0].runs["beauty"]["run_id"]) == [older["run_id"]]


def test_a_two_dimensional_sweeps_curve_holds_the_other_dimension_at_its_default():
    # alpha x beta: the alpha curve draws the beta-default trials only, not the best beta per alpha
    from bench.commands.render import curve_slice
    from bench.tables.sweep import select_sweep
    from sweeps.spec import load_spec

    spec = load_spec("letter_alpha_beta", budget="cpu")
    alpha, beta = "tokenizer.letter.alpha", "tokenizer.letter.beta"
    store = [sweep_trial(spec, {alpha: 0.0, beta: 0.0}, 150, valid=0.05),  # the better beta at alpha 0
             sweep_trial(spec, {alpha: 0.0, beta: 0.0001}, 80, valid=0.01),
             sweep_trial(spec, {alpha: 0.02, beta: 0.0001}, 120, valid=0.03)]
    kept, held = curve_slice(select_sweep(store, spec), alpha)
    assert kept == {r["run_id"] for r in store[1:]}
    assert held == f"{beta} = 0.0001"
    tau = load_spec("tau", budget="cpu")
    taus = [sweep_trial(tau, {"train.tau": t}, 100) for t in (0.8, 1.0)]
    kept, held = curve_slice(select_sweep(taus, tau), "train.tau")
    assert kept == {r["run_id"] for r in taus} and held is None  # one swept dimension: every trial


def test_a_one_seed_configuration_does_not_beat_a_three_seed_one_on_validation():
    # the 1-seed configuration is better on validation, but where a configuration has 3 seeds only those
    # compete: one lucky seed against a 3-seed mean is not a fair pick; the tuning count keeps both
    three = [run("SASRec (CE)", "sasrec", "beauty", (0.040, 0.025, 0.060, 0.032 + i / 1000), seed=s, valid=0.030)
             for i, s in enumerate((1, 2, 3))]
    lucky = run("SASRec (CE)", "sasrec", "beauty", (0.090, 0.090, 0.090, 0.090), valid=0.045, baseline__hidden_size=32)
    table = build_main_table(three + [lucky])
    columns = md_columns(render(table, "md"))["SASRec (CE)"]
    assert columns["n"] == "3" and columns["Configs"] == "2"
    assert "0.0900" not in " ".join(columns.values())
    from bench.tables import select_main

    reason = select_main(three + [lucky]).left_out[lucky["run_id"]]
    assert reason.startswith("better on validation (NDCG@10 0.0450 vs 0.0300) but 1 seed(s)")
    # with no 3-seed configuration, the best on validation wins as before
    assert md_columns(render(build_main_table(three[:2] + [lucky]), "md"))["SASRec (CE)"]["n"] == "1"


def test_a_budget_sweep_table_takes_a_settings_runs_at_the_seeds_given_on_the_command_line():
    # `bench sweep tau --budget cpu --seeds 2024,2025,2026`: the budget's spec names one seed, but seeds are
    # replicates of a setting, not settings; the table shows all three and can test them
    from bench.tables.sweep import build_sweep_table
    from sweeps.spec import load_spec

    spec = load_spec("tau", budget="cpu")
    assert [d.values for d in spec.dimensions if d.keys == ["seed"]] in ([[2024]], [])
    store = [sweep_trial(spec, {"train.tau": tau}, hits + s % 3, seed=s)
             for tau, hits in ((1.0, 100), (0.8, 160)) for s in (2024, 2025, 2026)]
    table = build_sweep_table(store, spec)
    assert [row.run_ids("beauty") for row in table.rows] == [
        sorted(r["run_id"] for r in store[3:]), sorted(r["run_id"] for r in store[:3])]
    text = render(table, "md")
    assert "| 3 " in text and "†" in text  # n = 3 per row, and 60 more hits of 400 in every seed is a mark
