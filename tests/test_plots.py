"""Figures: hyper-parameter curves and code-assignment histograms, and `bench render`."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from bench.cli import main
from bench.plots import (
    PlotError, counts_from_codes, curve_frame, plot_code_distribution, plot_param_curves, record_code_counts,
)
from bench.records import write_record

PNG = b"\x89PNG\r\n\x1a\n"
_ids = itertools.count()


def run(dataset, tokenizer, seed, ndcg, alpha=0.02, counts=None, label=None, method="tiger"):
    config = {"method": method, "dataset": dataset, "seed": seed,
              "tokenizer": {"name": tokenizer, "letter": {"alpha": alpha}}}
    info = {"tokenizer": {"first_level_counts": counts}} if counts is not None else {}
    return {"run_id": f"p{next(_ids):04d}", "label": label or f"TIGER[{tokenizer}]", "method": method,
            "dataset": dataset, "seed": seed, "status": "completed", "config": config,
            "metrics": {"test": {"recall@10": 2 * ndcg, "ndcg@10": ndcg}, "valid": {"ndcg@10": ndcg}},
            "method_info": info}


def alpha_store():
    store = []
    for dataset, offset in (("beauty", 0.0), ("sports", -0.01)):
        for alpha, base in ((1e-3, 0.030), (1e-2, 0.036), (2e-2, 0.040), (1e-1, 0.033)):
            for seed, noise in ((1, -0.001), (2, 0.001)):
                store.append(run(dataset, "letter", seed, base + offset + noise, alpha=alpha))
    store.append(run("beauty", "rqvae", 1, 0.9))  # alpha means nothing for RQ-VAE: left out
    store.append(run("beauty", "rqvae", 1, 0.9, label="SASRec (CE)", method="sasrec"))
    return store


def is_png(path):
    data = path.read_bytes()
    return len(data) > 1000 and data.startswith(PNG)


def test_curve_frame_means_and_scope():
    data = curve_frame(alpha_store(), "tokenizer.letter.alpha", ["ndcg@10"])
    assert set(data["method"]) == {"TIGER[letter]"}
    point = data[(data["dataset"] == "beauty") & (data["value"] == 2e-2)].iloc[0]
    assert point["mean"] == pytest.approx(0.040) and point["std"] == pytest.approx(np.std([0.039, 0.041], ddof=1))
    assert point["n"] == 2 and len(data) == 8


def test_param_curve_png_and_pdf(tmp_path):
    png = plot_param_curves(alpha_store(), "tokenizer.letter.alpha", tmp_path / "alpha.png")
    assert is_png(png)
    pdf = plot_param_curves(alpha_store(), "tokenizer.letter.alpha", tmp_path / "alpha.pdf", metrics=["ndcg@10"])
    assert pdf.read_bytes().startswith(b"%PDF")
    with pytest.raises(PlotError):
        plot_param_curves(alpha_store(), "model.no_such_key", tmp_path / "none.png")


def _display_x(axis):
    """Display x of each ticked value, relative to the panel's left edge, and the panel's width,
    once ``axis`` is applied to a fresh panel."""
    from matplotlib.figure import Figure

    ax = Figure(figsize=(4, 3), dpi=100).subplots()
    ax.plot(list(axis.positions.values()), [0.0] * len(axis.positions), marker="o")
    axis.apply(ax)
    left, right = ax.transAxes.transform([(0, 0), (1, 0)])[:, 0]
    return {v: ax.transData.transform((axis.positions[v], 0))[0] - left for v in axis.ticks}, right - left


def test_curve_axis_keeps_zero_apart_from_a_log_spaced_grid():
    """alpha in {0, 1e-3, 0.02, 0.1} on a linear axis put 0 and 1e-3 on one pixel; every grid value
    now gets its own tick, in order, and a fair share of the panel."""
    from bench.plots import curve_axis

    axis = curve_axis([0.02, 0.0, 0.1, 0.001])
    assert axis.scale == "symlog" and axis.ticks == [0.0, 0.001, 0.02, 0.1]
    x, width = _display_x(axis)
    gaps = np.diff([x[v] for v in axis.ticks])
    assert (gaps > 0).all() and gaps.min() > 0.1 * width
    assert 0 < x[0.0] and x[0.1] < width  # every point inside the panel, not on its edge
    assert curve_axis([0.001, 0.01, 0.1]).scale == "log"
    beta = curve_axis([0.0, 0.0001, 0.001])  # one decade beside 0: linear put 0 and 1e-4 at one end
    x, width = _display_x(beta)
    assert beta.scale == "symlog" and np.diff([x[v] for v in beta.ticks]).min() > 0.3 * width
    assert curve_axis([0.0, 0.1, 0.2, 0.3]).scale == "linear"  # 0 beside an evenly spaced grid
    assert curve_axis([64, 128, 256]).scale == "linear" and curve_axis([64, 128, 256]).ticks == [64, 128, 256]
    assert curve_axis([0.6, 0.8, 1.0, 1.2]).ticks is None  # matplotlib's own ticks for a linear float grid
    assert curve_axis([0.0001]).ticks == [0.0001]  # one run so far: its value, not crowded default ticks
    assert curve_axis(["b", "a"]).positions == {"a": 0.0, "b": 1.0}


def test_code_distribution_from_records_and_arrays(tmp_path):
    rng = np.random.default_rng(0)
    skewed = np.bincount(rng.zipf(1.6, 2000) % 256, minlength=256)
    record = run("beauty", "rqvae", 1, 0.04, counts=skewed.tolist())
    assert record_code_counts(record).tolist() == skewed.tolist()
    codes = np.stack([rng.integers(0, 256, 2000), rng.integers(0, 256, 2000)], axis=1)
    even = counts_from_codes(codes, level=0, codebook_size=256)
    assert even.sum() == 2000 and len(even) == 256
    path = plot_code_distribution({"RQ-VAE": skewed, "LETTER": even}, tmp_path / "codes.png")
    assert is_png(path)
    assert is_png(plot_code_distribution({"LETTER": even}, tmp_path / "one.png"))


def test_plot_cli(tmp_path, capsys):
    store = tmp_path / "runs"
    for record in alpha_store():
        write_record(record, store)
    out = tmp_path / "fig" / "alpha.png"
    assert main(["plot", "curve", "--param", "tokenizer.letter.alpha", "--results-dir", str(store),
                 "--output", str(out), "--dataset", "beauty"]) == 0
    assert is_png(out)
    assert main(["plot", "curve", "--param", "model.nope", "--results-dir", str(store), "--output", str(out)]) == 2
    assert "model.nope" in capsys.readouterr().err
    codes = tmp_path / "codes.npy"
    np.save(codes, np.random.default_rng(1).integers(0, 64, size=(500, 3)))
    out = tmp_path / "fig" / "codes.png"
    assert main(["plot", "codes", "--codes", f"{codes}=LSH", "--codebook-size", "64", "--output", str(out)]) == 0
    assert is_png(out)
    assert main(["plot", "codes", "--results-dir", str(store), "--output", str(out)]) == 2
    assert "carries code counts" in capsys.readouterr().err


def test_render_writes_tables_and_plots(tmp_path, capsys):
    store = tmp_path / "runs"
    for record in alpha_store() + [run("beauty", "rqvae", 3, 0.041, counts=[50, 30, 0, 20])]:
        write_record(record, store)
    assert main(["select", "--results-dir", str(store), "--out", str(tmp_path / "results")]) == 0
    assert main(["render", "--results-dir", str(store), "--out", str(tmp_path / "results")]) == 0
    tables = tmp_path / "results" / "tables"
    plots = tmp_path / "results" / "plots"
    for name in ("main", "tokenizers", "ablation-tokenizer.letter.alpha"):
        for suffix in ("md", "tex", "csv"):
            assert (tables / f"{name}.{suffix}").stat().st_size > 0
    assert r"\toprule" in (tables / "main.tex").read_text()
    assert "| LETTER" in (tables / "tokenizers.md").read_text()
    assert is_png(plots / "curve-tokenizer.letter.alpha.png")
    assert (plots / "curve-tokenizer.letter.alpha.pdf").read_bytes().startswith(b"%PDF")
    assert is_png(plots / "codes-beauty.png")
    assert not (plots / "codes-sports.png").exists()
    assert "wrote" in capsys.readouterr().out


def test_render_lists_files_it_did_not_write_and_prune_deletes_them(tmp_path, capsys):
    store, results = tmp_path / "runs", tmp_path / "results"
    for record in alpha_store():
        write_record(record, store)
    stale = results / "tables" / "sweep-gone.md"
    stale.parent.mkdir(parents=True)
    stale.write_text("| a table whose runs left the store |")
    assert main(["select", "--results-dir", str(store), "--out", str(results)]) == 0
    assert main(["render", "--results-dir", str(store), "--out", str(results)]) == 0
    out = capsys.readouterr().out
    assert f"not written by this render (stale? --prune deletes it): {stale}" in out and stale.exists()
    assert "main.md" not in out.split("not written by this render")[-1]
    assert main(["render", "--results-dir", str(store), "--out", str(results), "--prune", "--dataset", "beauty"]) == 2
    assert stale.exists()
    assert main(["render", "--results-dir", str(store), "--out", str(results), "--prune"]) == 0
    assert f"deleted {stale}" in capsys.readouterr().out and not stale.exists()
    assert (results / "tables" / "main.md").exists()


def test_the_code_plot_shows_each_tokenizers_codes_once_from_a_default_architecture_run():
    from bench.plots import code_counts_from_store

    older = run("beauty", "letter", 1, 0.03, counts=[5, 3, 2])
    dec = run("beauty", "letter", 1, 0.03, counts=[9, 1, 0], label="TIGER-dec[letter]")  # newer, same tokenizer
    dec["config"]["model"] = {"arch": "decoder_only"}
    lsh = run("beauty", "lsh", 1, 0.02, counts=[4, 4, 2])
    series = code_counts_from_store([older, dec, lsh])
    assert list(series) == ["LETTER (Beauty)", "LSH (Beauty)"]  # one series per tokenizer, not per model label
    assert series["LETTER (Beauty)"].tolist() == [5, 3, 2]  # the encoder-decoder run's, though the other is newer
    newer = run("beauty", "letter", 2, 0.03, counts=[6, 2, 2])
    assert code_counts_from_store([older, dec, newer])["LETTER (Beauty)"].tolist() == [6, 2, 2]
    assert code_counts_from_store([dec])["LETTER (Beauty)"].tolist() == [9, 1, 0]  # none in the default: the other
    cold = run("beauty", "letter", 3, 0.03, counts=[7, 3, 0])  # newest, but fitted without the unseen items
    cold["config"]["coldstart"] = {"enabled": True}
    assert code_counts_from_store([older, cold])["LETTER (Beauty)"].tolist() == [5, 3, 2]


def test_the_code_plot_shows_the_tokenizer_tables_default_fit_though_a_newer_run_landed():
    from bench.plots import code_counts_from_store

    default = run("beauty", "letter", 1, 0.03, counts=[5, 3, 2])
    tuned = run("beauty", "letter", 2, 0.04, counts=[6, 2, 2])  # newer: another fit, another setting
    assert code_counts_from_store([default, tuned])["LETTER (Beauty)"].tolist() == [6, 2, 2]
    series = code_counts_from_store([default, tuned], prefer={default["run_id"]})
    assert series["LETTER (Beauty)"].tolist() == [5, 3, 2]
