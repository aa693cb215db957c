"""Seed-honest tables (issue 30): the training run is the unit of evidence.

A mark needs >= 3 seeds per compared row and Welch's t over per-seed values, Holm-corrected over the
table; every row says its seeds, configurations tried and runs; `bench render` builds from a frozen
selection file, not from today's profiles; sweep and ablation rows share the default's semantic IDs."""
from __future__ import annotations

import io
import json
import math
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from bench.cli import main
from bench.errors import UserError
from bench.records import iter_records
from bench.config import resolve_config
from bench.tables import build_ablation_table, build_main_table, build_table, holm, render, select_ablation
from bench.tables.selected import build_selected

SEEDS_A, SEEDS_B = "1,2,3", "4,5,6"
NO_OP = "decode.batch_size=32"  # users per beam-search batch (smoke: 128): changes no number


def csv_frame(table) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(render(table, "csv")))


# ---------------------------------------------------------------------- six seeds of one smoke config
@pytest.fixture(scope="module")
def smoke_store(tmp_path_factory, one_thread):
    """Six seeds of one smoke configuration of TIGER[random_id] on `synthetic`: seeds 1-3 at the
    profile's defaults, seeds 4-6 with a setting that changes no number (two 'configurations')."""
    store = tmp_path_factory.mktemp("seeds") / "runs"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        common = ["run", "--tokenizer", "random_id", "--dataset", "synthetic", "--profile", "smoke",
                  "--results-dir", str(store)]
        assert main(common + ["--seeds", SEEDS_A]) == 0
        assert main(common + ["--seeds", SEEDS_B, "--set", NO_OP]) == 0
    records = list(iter_records(store))
    assert len(records) == 6
    return store, records


def test_two_groups_of_seeds_of_one_config_are_never_marked_different(smoke_store):
    _, records = smoke_store
    table = build_ablation_table(records, "decode.batch_size")
    assert [row.labels for row in table.rows] == [["TIGER[random_id]", "32"], ["TIGER[random_id]", "128"]]
    assert [sorted(row.reference) for row in table.rows] == [[], ["synthetic"]]  # the smoke profile's value
    assert all(cell.n == 3 for row in table.rows for cell in row.cells.values())
    tested = [cell for row in table.rows for cell in row.cells.values() if cell.p_value is not None]
    assert len(tested) == 4  # R@5 N@5 R@10 N@10 of the 128 row against the default row: one Holm family
    assert not any(cell.significant for cell in tested)
    body = render(table, "md").split("\n\n")[1]
    assert "†" not in body and "‡" not in body
    frame = csv_frame(table)
    assert frame["p_holm"].dropna().min() >= 0.05
    assert "p_users_wilcoxon" in frame.columns  # the per-user test stays, as a secondary column only


def test_the_runs_column_lists_exactly_each_rows_run_ids(smoke_store):
    _, records = smoke_store
    frame = csv_frame(build_ablation_table(records, "decode.batch_size"))
    by_value = {}
    for record in records:
        by_value.setdefault(str(record["config"]["decode"]["batch_size"]), []).append(record["run_id"])
    for label, runs in zip(frame["decode.batch_size"], frame["runs"]):
        assert runs.split(";") == sorted(by_value[str(label)])
    assert set(frame["n_configs"]) == {1}


def test_editing_a_profile_leaves_bench_render_unchanged(smoke_store, tmp_path, monkeypatch, capsys):
    import bench.config

    store, _ = smoke_store
    out = tmp_path / "results"
    assert main(["render", "--results-dir", str(store), "--out", str(out)]) == 2  # no selection file yet
    err = capsys.readouterr().err
    assert err.startswith("bench: error: --out: no selection file") and len(err.strip().splitlines()) == 1
    assert f"run `bench select --results-dir {store} --out {out}` first" in err
    assert main(["select", "--results-dir", str(store), "--out", str(out)]) == 0
    frozen = json.loads((out / "selection.json").read_text())
    assert main(["render", "--results-dir", str(store), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in sorted((out / "tables").iterdir())}
    assert "tokenizers.md" in before

    # the smoke profile's default decode batch becomes the other group's: its default configuration changes
    profiles = tmp_path / "profiles"
    shutil.copytree(bench.config.PROFILES_DIR, profiles)
    model = profiles / "smoke" / "model.yaml"
    layer = yaml.safe_load(model.read_text())
    layer["decode"]["batch_size"] = int(NO_OP.split("=")[1])
    model.write_text(yaml.safe_dump(layer))
    monkeypatch.setattr(bench.config, "PROFILES_DIR", profiles)
    bench.config._profile_values.cache_clear()
    try:
        assert main(["render", "--results-dir", str(store), "--out", str(out)]) == 0
        after = {p.name: p.read_bytes() for p in sorted((out / "tables").iterdir())}
        assert after == before  # built from the frozen selection: byte for byte the same
        # choosing anew under the edited profile would pick other runs for the tokenizers table
        fresh = tmp_path / "fresh"
        assert main(["select", "--results-dir", str(store), "--out", str(fresh)]) == 0
        chosen = json.loads((fresh / "selection.json").read_text())
        default = [r for r in chosen["tables"]["tokenizers"]["rows"] if r["group"] == "default"]
        frozen_default = [r for r in frozen["tables"]["tokenizers"]["rows"] if r["group"] == "default"]
        assert default[0]["runs"] != frozen_default[0]["runs"]
    finally:
        bench.config._profile_values.cache_clear()


def test_render_names_a_selected_run_that_is_not_in_the_store(smoke_store, tmp_path, capsys):
    store, records = smoke_store
    out = tmp_path / "results"
    assert main(["select", "--results-dir", str(store), "--out", str(out)]) == 0
    partial = tmp_path / "partial"
    partial.mkdir()
    gone = sorted(r["run_id"] for r in records)[0]
    for path in store.glob("*.json"):
        if not path.name.startswith(gone):
            shutil.copy(path, partial / path.name)
    assert main(["render", "--results-dir", str(partial), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error:") and gone in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------- hand-made records
def record(label, method, hits, seed, n=1000, run_id=None, sha=None, profile="cpu", **config):
    """A completed run whose first ``hits`` of ``n`` users have their target at rank 1."""
    from bench.metrics import metrics_from_ranks

    ranks = np.zeros(n, dtype=int)
    ranks[:hits] = 1
    full = {"method": method, "dataset": "beauty", "seed": seed, "profile": profile, "tokenizer": {"name": "letter"},
            "train": {"tau": 1.0}, "model": {"encoder_layers": 2}}
    for key, value in config.items():
        node = full
        *parents, last = key.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return {"run_id": run_id or f"{label}-{hits}-{seed}-{sorted(config.items())}", "label": label, "method": method,
            "dataset": "beauty", "seed": seed, "profile": profile, "status": "completed", "config": full,
            "metrics": {"test": metrics_from_ranks(ranks, (5, 10)), "valid": {"ndcg@10": hits / n}},
            "dataset_fingerprint": {"sha256": "fp"}, "per_user_test_rank": ranks.tolist(),
            "method_info": {"semantic_ids": {"sha": sha}} if sha else {}}


def test_rows_with_fewer_than_three_seeds_get_no_mark_even_when_the_per_user_p_is_tiny():
    for seeds in ((1,), (1, 2)):
        store = [record("SASRec (CE)", "sasrec", 100 + s, s) for s in seeds]
        store += [record("TIGER[rqvae]", "tiger", 400 + s, s) for s in seeds]  # 300 more hits of 1000 users
        table = build_main_table(store)
        cell = table.rows[1].cells[("beauty", "recall@10")]
        assert cell.p_users is not None and cell.p_users < 1e-10  # the per-user test would claim it
        assert cell.p_value is None and not cell.significant  # the harness does not: n < 3
        body, notes = render(table, "md").split("\n\n")[1:3]
        assert "†" not in body and "rows with n < 3 are not tested" in notes
        assert len(table.notes) <= 3
    # three seeds in each row: the same difference is marked
    store = [record("SASRec (CE)", "sasrec", 100 + s, s) for s in (1, 2, 3)]
    store += [record("TIGER[rqvae]", "tiger", 400 + 2 * s, s) for s in (1, 2, 3)]
    assert build_main_table(store).rows[1].cells[("beauty", "recall@10")].significant


def test_holm_against_a_hand_computed_example():
    # sorted: .005 x4 = .02; .01 x3 = .03; .03 x2 = .06; .04 x1 = .04 -> .06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = holm([0.5, math.nan, 0.2])  # NaN: no test, not counted in m
    assert adjusted[0] == pytest.approx(0.5) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.4)
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []
    rejected = [p < 0.05 for p in holm([0.01, 0.04, 0.03, 0.005])]
    assert rejected == [True, False, False, True]


def tau_store(mixed_sha: str):
    """A train.tau ablation of TIGER[letter] at 3 seeds: tau 1.0 (the cpu profile's default) and 0.8;
    the 0.8 run of seed 2 used semantic IDs ``mixed_sha``."""
    store = []
    for seed in (1, 2, 3):
        store.append(record("TIGER[letter]", "tiger", 200 + seed, seed, sha=f"ids-{seed}", train__tau=1.0))
        store.append(record("TIGER[letter]", "tiger", 210 + seed, seed, sha=mixed_sha if seed == 2 else f"ids-{seed}",
                            train__tau=0.8))
    return store


def test_an_ablation_mixing_semantic_ids_leaves_the_run_out_with_its_reason_and_refuses_to_be_built():
    store = tau_store("other-ids")
    mixed = next(r["run_id"] for r in store if r["seed"] == 2 and r["config"]["train"]["tau"] == 0.8)
    selection = select_ablation(store, "train.tau")
    assert selection.left_out[mixed] == "semantic IDs differ from the default's (sha other-ids vs ids-2)"
    assert mixed not in selection.run_ids and len(selection.run_ids) == 5
    table = build_selected(store, selection)
    assert [(row.labels[1], bool(row.reference)) for row in table.rows] == [("0.8", False), ("1", True)]
    assert "the method's default value (TIGER[letter], 1)" in table.notes[1]
    # a selection that mixes them (edited by hand, or made by other code) is refused, naming the run
    mixed_pick = next(p for p in selection.picks if p.labels[1] == "0.8")
    mixed_pick.runs = sorted([*mixed_pick.runs, mixed])
    with pytest.raises(UserError, match=re.escape(mixed)):
        build_selected(store, selection)
    # the same IDs everywhere: nothing is left out
    assert len(select_ablation(tau_store("ids-2"), "train.tau").run_ids) == 6


def test_a_key_that_changes_the_semantic_ids_is_not_held_to_the_defaults_ids():
    store = [record("TIGER[letter]", "tiger", 200 + s, s, sha=f"a-{s}", tokenizer__letter__alpha=0.02)
             for s in (1, 2, 3)]
    store += [record("TIGER[letter]", "tiger", 210 + s, s, sha=f"b-{s}", tokenizer__letter__alpha=0.1)
              for s in (1, 2, 3)]
    selection = select_ablation(store, "tokenizer.letter.alpha")
    assert len(selection.run_ids) == 6 and not any("semantic IDs" in why for why in selection.left_out.values())


def test_a_sweep_mixing_semantic_ids_leaves_the_trial_out():
    from sweeps.spec import load_spec, resolve_trial_config

    from bench.tables.sweep import select_sweep

    spec = load_spec("tau", budget="cpu")
    store = []
    for tau, sha in ((1.0, "default-ids"), (0.8, "default-ids"), (0.6, "other-ids")):
        trial = record("TIGER[letter]", "tiger", 200, 2024, sha=sha, run_id=f"tau-{tau}")
        trial["config"] = resolve_trial_config(spec.base(), {"train.tau": tau, "seed": 2024}).to_record()
        store.append(trial)
    selection = select_sweep(store, spec)
    assert selection.left_out["tau-0.6"] == "semantic IDs differ from the default's (sha other-ids vs default-ids)"
    assert selection.run_ids == {"tau-1.0", "tau-0.8"}


def test_the_tokenizer_table_compares_defaults_and_shows_the_tuned_best_with_its_count():
    from bench.config import resolve_config

    def tiger(tokenizer, hits, seed, **overrides):
        config = resolve_config("cpu", overrides={"method": "tiger", "dataset": "beauty", "seed": seed,
                                                  "tokenizer": {"name": tokenizer}, **overrides})
        made = record(f"TIGER[{tokenizer}]", "tiger", hits, seed, run_id=f"{tokenizer}-{hits}-{seed}")
        made["config"] = config.to_record()
        return made

    store = [tiger("rqvae", 100 + s, s) for s in (1, 2, 3)] + [tiger("lsh", 80 + s, s) for s in (1, 2, 3)]
    store += [tiger("rqvae", 150 + s, s, train={"tau": 0.8}) for s in (1, 2, 3)]
    store += [tiger("rqvae", 90, 1, train={"tau": 1.2}), tiger("rqvae", 200, 1, train={"tau": 0.6})]
    tuned_runs = ["rqvae-151-1", "rqvae-152-2", "rqvae-153-3"]  # tau 0.6 is better, with 1 seed: not picked
    table = build_main_table(store)  # the main table shows the configuration best on validation ...
    assert table.rows[-1].runs["beauty"]["run_id"].tolist() == tuned_runs
    from bench.tables import build_tokenizer_table

    table = build_tokenizer_table(store)  # ... the tokenizer table each tokenizer's default, tuned apart
    labels = [row.labels for row in table.rows]
    assert labels == [["LSH", "default"], ["RQ-VAE", "default"], ["RQ-VAE", "tuned"]]
    tuned = table.rows[2]
    assert tuned.configs["beauty"] == 4 and tuned.run_ids("beauty") == tuned_runs
    text = render(table, "md")
    rqvae = next(line for line in text.splitlines() if line.startswith("| RQ-VAE") and "default" in line)
    assert "± 0.0010" in rqvae and "| 3 " in rqvae  # seed-to-seed std and n = 3
    lsh = next(line for line in text.splitlines() if line.startswith("| LSH"))
    assert "‡" in lsh  # 20 fewer hits of 1000 in every seed than the validation-best default (RQ-VAE)
    single = render(build_tokenizer_table([tiger("lsh", 80, 1)]), "md")
    assert "±" not in single.split("\n\n")[1] and "| 1 " in single  # n = 1: no ±, and n says 1


def test_the_architecture_table_compares_each_variant_with_its_tokenizers_encoder_decoder():
    def tiger(tokenizer, hits, seed, run_id, params=None, **overrides):
        config = resolve_config("cpu", overrides={"method": "tiger", "dataset": "beauty", "seed": seed,
                                                  "tokenizer": {"name": tokenizer, **(params or {})}, **overrides})
        arch = "-dec" if config["model"]["arch"] == "decoder_only" else ""
        made = record(f"TIGER{arch}[{tokenizer}]", "tiger", hits, seed, run_id=run_id)  # labels as runs give them
        made["config"] = config.to_record()
        return made

    dec = {"model": {"arch": "decoder_only"}, "train": {"loss_positions": "all", "max_steps": 1500}}
    longer = {"model": {"arch": "decoder_only"}, "train": {"loss_positions": "all", "max_steps": 3000,
                                                           "warmup_steps": 200, "eval_every": 200}}
    store = [tiger("rqvae", 100 + s, s, f"enc-{s}") for s in (1, 2, 3)]
    store += [tiger("rqvae", 140 + s, s, f"dec-{s}", **dec) for s in (1, 2, 3)]
    store += [tiger("rqvae", 100 + s, s, f"long-{s}", **longer) for s in (1, 2, 3)]  # another training time: its own row
    store += [tiger("rqvae", 200, 1, "enc-tau", train={"tau": 0.8})]  # another setting, one architecture: no row
    store += [tiger("rqvae", 200, 1, "dec-tau", model={"arch": "decoder_only"}, train={"tau": 0.7, "loss_positions": "all"})]
    store += [tiger("lsh", 90, 1, "lsh-enc")]  # one architecture only: no row
    tuned = {"letter": {"alpha": 0.1, "beta": 0}}  # a tokenizer setting compared in both architectures
    store += [tiger("letter", 100 + s, s, f"let-enc-{s}", params=tuned) for s in (1, 2, 3)]
    store += [tiger("letter", 90 + s, s, f"let-dec-{s}", params=tuned, **longer) for s in (1, 2, 3)]
    store += [tiger("letter", 100 + s, s, f"let-default-{s}") for s in (1, 2, 3)]  # the default: encoder-decoder only
    from bench.tables.model import select_architectures

    selection = select_architectures(store)
    assert [(p.labels, p.runs, p.reference) for p in selection.picks] == [
        (["RQ-VAE", "encoder-decoder"], ["enc-1", "enc-2", "enc-3"], True),
        (["RQ-VAE", "decoder-only, loss on all positions, 1.5k steps"], ["dec-1", "dec-2", "dec-3"], False),
        (["RQ-VAE", "decoder-only, loss on all positions, 3k steps"], ["long-1", "long-2", "long-3"], False),
        (["LETTER (alpha=0.1, beta=0)", "encoder-decoder"], ["let-enc-1", "let-enc-2", "let-enc-3"], True),
        (["LETTER (alpha=0.1, beta=0)", "decoder-only, loss on all positions, 3k steps"],
         ["let-dec-1", "let-dec-2", "let-dec-3"], False)]
    assert selection.left_out["enc-tau"].startswith("no other architecture")
    assert selection.left_out["dec-tau"].startswith("no encoder-decoder run at the profile's training budget")
    assert selection.left_out["lsh-enc"].startswith("no other architecture")
    assert selection.left_out["let-default-1"].startswith("no other architecture")
    text = render(build_table("architectures", store), "md")
    line = next(row for row in text.splitlines() if "1.5k steps" in row)
    assert "†" in line  # 40 more hits of 1000 at every seed than the encoder-decoder: Welch over 3 seeds each
    line = next(row for row in text.splitlines() if "LETTER" in row and "3k steps" in row)
    assert "‡" in line  # 10 fewer at every seed than LETTER's own encoder-decoder row, not the default's
    from bench.tables.model import select_ablation

    ablation = select_ablation(store, "train.tau")  # an ablation varies one setting of the default architecture
    assert ablation.left_out["dec-tau"].startswith("another architecture (model.arch=decoder_only")
    assert [["TIGER[rqvae]", "0.8"], ["TIGER[rqvae]", "1"]] == [p.labels for p in ablation.picks if p.labels[0] == "TIGER[rqvae]"]
    assert not any("-dec" in p.labels[0] for p in ablation.picks)
