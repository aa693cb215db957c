"""Trusted results: versioned caches, run identity in records, the record schema, one protocol, the
curated store. Each test changes one thing that a result depends on and checks it is noticed."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.config import resolve_config
from bench.identity import artifact_key, code_identity, stable_hash
from bench.records import PUBLISHED_STORE, iter_records, read_record, schema_errors, upgrade_record, write_record

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------- keys
def test_stable_hash_ignores_key_order_and_sees_every_value():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1, "b": [1, 2]}) != stable_hash({"a": 1, "b": [2, 1]})
    base = artifact_key("k", {"x": 1}, {"c": 1}, ("numpy",), inputs="data")
    assert base != artifact_key("k", {"x": 1}, {"c": 2}, ("numpy",), inputs="data")  # component version
    assert base != artifact_key("k", {"x": 1}, {"c": 1}, ("numpy", "torch"), inputs="data")  # package
    assert base != artifact_key("k", {"x": 1}, {"c": 1}, ("numpy",), inputs="other")  # input data
    assert code_identity({"m": 1}, {"commit": "a", "dirty": False}) != code_identity({"m": 1}, {"commit": "a", "dirty": True})


def _lsh_config(cache_dir):
    return resolve_config(overrides={"seed": 0, "tokenizer": {"name": "lsh", "cache": True, "cache_dir": str(cache_dir),
                                                              "lsh": {"levels": 2, "bits": 3}}})


def test_a_tokenizer_cache_from_another_component_version_is_refitted(tmp_path, monkeypatch):
    import tokenizers_zoo
    from tokenizers_zoo.lsh import LSHTokenizer

    emb = np.random.default_rng(0).normal(size=(64, 16)).astype(np.float32)
    config = _lsh_config(tmp_path)
    first = tokenizers_zoo.fit_tokenizer(config, emb)
    assert first.source is None  # fitted
    again = tokenizers_zoo.fit_tokenizer(config, emb)
    assert again.source is not None  # the same code: reused from the cache
    monkeypatch.setattr(LSHTokenizer, "version", LSHTokenizer.version + 1)
    bumped = tokenizers_zoo.fit_tokenizer(config, emb)
    assert bumped.source is None, "a tokenizer cached by an older version of its code was reused"
    assert len([p for p in tmp_path.iterdir() if p.suffix != ".lock"]) == 2  # both versions' fits side by side, neither overwritten
    saved = json.loads((Path(tokenizers_zoo.cache_path(config, emb)) / "tokenizer.json").read_text())
    assert saved["components"]["tokenizer/lsh"] == LSHTokenizer.version


def test_the_shared_tokenizer_code_version_is_part_of_every_tokenizer_key(tmp_path, monkeypatch):
    import tokenizers_zoo
    from tokenizers_zoo.base import Tokenizer
    from tokenizers_zoo.letter import LetterTokenizer

    assert set(LetterTokenizer.component_versions()) == {"tokenizer/letter", "tokenizer/rqvae", "tokenizer/base"}
    emb = np.random.default_rng(0).normal(size=(32, 8)).astype(np.float32)
    before = tokenizers_zoo.cache_path(_lsh_config(tmp_path), emb)
    monkeypatch.setattr(Tokenizer, "version", Tokenizer.version + 1)
    assert tokenizers_zoo.cache_path(_lsh_config(tmp_path), emb) != before


def test_embedding_and_cf_keys_carry_their_versions(monkeypatch):
    import baselines.cf_embed as cf_embed
    import bench.embed as embed
    from bench.data import load_dataset
    from bench.split import LeaveOneOutSplit

    dataset = load_dataset("synthetic")
    config = resolve_config("smoke", overrides={"dataset": "synthetic"})
    key = embed.embedding_spec(dataset, config)["key"]
    monkeypatch.setattr(embed, "EMBEDDER_VERSION", embed.EMBEDDER_VERSION + 1)
    assert embed.embedding_spec(dataset, config)["key"] != key
    split = LeaveOneOutSplit(dataset)
    cf_key = cf_embed.cache_key(split, config)
    monkeypatch.setattr(cf_embed, "CF_EMBED_VERSION", cf_embed.CF_EMBED_VERSION + 1)
    assert cf_embed.cache_key(split, config) != cf_key


def test_recbole_export_key_carries_its_version_and_stale_files_are_never_read(monkeypatch):
    import baselines.recbole_data as recbole_data
    from bench.data import load_dataset
    from bench.split import LeaveOneOutSplit

    split = LeaveOneOutSplit(load_dataset("synthetic", None, {"n_users": 60, "n_items": 40}))
    first = recbole_data.prepare(split.dataset.sequences, split.n_items, max_seq_len=20, split=split)
    (first.folder / "prepared.pkl").write_bytes(b"not a pickle")  # what the old cache kept there
    rebuilt = recbole_data.prepare(split.dataset.sequences, split.n_items, max_seq_len=20, split=split)
    assert not rebuilt.cache_hit and rebuilt.key == first.key and not (rebuilt.folder / "prepared.pkl").exists()
    monkeypatch.setattr(recbole_data, "RECBOLE_DATA_VERSION", recbole_data.RECBOLE_DATA_VERSION + 1)
    bumped = recbole_data.prepare(split.dataset.sequences, split.n_items, max_seq_len=20, split=split)
    assert not bumped.cache_hit and bumped.key != first.key


# ---------------------------------------------------------------------- sweeps
def test_a_sweep_reruns_a_trial_whose_record_came_from_another_component_version(tmp_path, monkeypatch):
    from baselines.simple import MostPopular
    from sweeps.launcher import completed_index
    from sweeps.spec import load_spec, resolve_trial_config, trial_key

    spec = load_spec(REPO / "sweeps" / "smoke.yaml")
    point = next(p for p in spec.grid_points() if p.get("method") == "pop")
    config = resolve_trial_config(spec.base(), point)
    record = {"run_id": "old", "status": "completed", "config": config.to_record(),
              "components": MostPopular.components(config), "metrics": {"valid": {}, "test": {}}}
    write_record(record, tmp_path)
    assert trial_key(config) in completed_index(str(tmp_path))  # same code: skipped
    monkeypatch.setattr(MostPopular, "version", MostPopular.version + 1)
    assert trial_key(config) not in completed_index(str(tmp_path))  # the only record is from older code: rerun
    legacy = dict(record, run_id="legacy")
    legacy.pop("components")
    write_record(legacy, tmp_path / "legacy")
    monkeypatch.setattr(MostPopular, "version", MostPopular.version - 1)
    assert trial_key(config) not in completed_index(str(tmp_path / "legacy"))  # no versions: never reused


def test_sweeps_refuse_a_test_selection_metric(tmp_path, capsys):
    args = ["sweep", str(REPO / "sweeps" / "smoke.yaml"), "--results-dir", str(tmp_path), "--dry-run"]
    assert main(args + ["--metric", "test_ndcg@10"]) == 2
    assert "not a validation metric" in capsys.readouterr().err
    assert main(args + ["--metric", "test_ndcg@10", "--allow-test-metric"]) == 0
    assert "tunes on the test set" in capsys.readouterr().out


# ---------------------------------------------------------------------- git identity
def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_untracked_package_files_make_the_code_dirty_readme_edits_do_not(tmp_path):
    from bench.provenance import git_commit

    repo = tmp_path / "repo"
    (repo / "bench").mkdir(parents=True)
    (repo / "bench" / "a.py").write_text("x = 1\n")
    (repo / "README.md").write_text("hi\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    assert git_commit(repo)["dirty"] is False
    (repo / "README.md").write_text("edited\n")
    assert git_commit(repo)["dirty"] is False
    (repo / "bench" / "new_module.py").write_text("y = 2\n")
    facts = git_commit(repo)
    assert facts["dirty"] is True and facts["untracked_files"] == 1 and facts["modified_files"] == 0


# ---------------------------------------------------------------------- records and schema
def test_every_published_record_follows_the_schema():
    records = list(iter_records(REPO / PUBLISHED_STORE))
    assert records, "the curated store is empty"
    for record in records:
        assert schema_errors(record) == [], record["_path"]


def test_a_fresh_record_follows_the_schema_and_carries_identity_and_budget(tmp_path):
    from bench.runner import run

    config = resolve_config("smoke", overrides={"dataset": "synthetic", "method": "pop",
                                                "results_dir": str(tmp_path), "work_dir": str(tmp_path / "w")})
    record = run(config)
    assert schema_errors(record) == []
    stored = read_record(record["_path"])
    assert stored["schema_version"] == 1 and stored["profile"] == "smoke"
    assert stored["components"] == {"method/pop": 1}
    assert stored["budget"]["optimizer_steps"] == 0 and stored["budget"]["stop_reason"].startswith("no training")
    assert set(stored["git"]) == {"commit", "dirty", "modified_files", "untracked_files"}
    assert {"cpu_model", "cpu_generation", "cpu_flags"} <= set(stored["hardware"])


def test_a_record_names_the_code_at_the_start_and_says_when_the_checkout_changed_during_the_run(tmp_path, monkeypatch):
    import bench.runner

    states = iter([{"commit": "aaa", "dirty": False, "modified_files": 0, "untracked_files": 0},
                   {"commit": "bbb", "dirty": False, "modified_files": 0, "untracked_files": 0}])
    monkeypatch.setattr(bench.runner, "git_commit", lambda: next(states))
    config = resolve_config("smoke", overrides={"dataset": "synthetic", "method": "pop",
                                                "results_dir": str(tmp_path), "work_dir": str(tmp_path / "w")})
    stored = read_record(bench.runner.run(config)["_path"])
    assert stored["git"]["commit"] == "aaa"  # what ran, not what was checked out when it finished
    assert stored["git"]["changed_during_run"] == {"commit": "bbb", "dirty": False}
    assert schema_errors(stored) == []


def test_the_cpu_generation_and_its_speed_flags_come_from_cpuinfo():
    from bench.device import parse_cpuinfo, speed_flags

    text = ("processor\t: 0\nmodel name\t: AMD EPYC\ncpu family\t: 25\nmodel\t\t: 17\n"
            "flags\t\t: fpu avx2 avx512f avx512_bf16\n\nprocessor\t: 1\nmodel name\t: other\n")
    info = parse_cpuinfo(text)
    assert info["model name"] == "AMD EPYC" and info["cpu family"] == "25" and info["model"] == "17"
    assert speed_flags(info) == ["avx2", "avx512f", "avx512_bf16"]


def test_a_schema_violation_is_reported():
    bad = {"schema_version": 1, "run_id": "x", "status": "completed"}
    errors = schema_errors(bad)
    assert any("budget" in e for e in errors) and any("components" in e for e in errors)


def test_legacy_records_are_upgraded_with_a_migration_note():
    legacy = {
        "run_id": "old", "label": "TIGER[rqvae]", "method": "tiger", "dataset": "beauty", "seed": 1,
        "config_hash": "h", "started_at": "t0", "finished_at": "t1", "status": "completed",
        "config": {"method": "tiger", "dataset": "beauty", "seed": 1, "profile": "cpu", "split": {"max_history": 20},
                   "eval": {"ks": [5]}, "train": {"num_threads": 1}},
        "git": {"commit": "abc", "dirty": False}, "dataset_fingerprint": {"sha256": "f"},
        "protocol": {"split": "loo", "ranking": "full", "ks": [5], "ranked_list_length": 20},
        "metrics": {"valid": {"ndcg@10": 0.1}, "test": {"ndcg@10": 0.1}}, "per_user_test_rank": [0, 1],
        "method_info": {"training": {"steps": 2500, "epochs": 5.1, "train_seconds": 1200.0, "stop_reason": "time limit"}},
        "timings_s": {"fit": 1300.0}, "hardware": {"device": "cpu", "torch_threads": 2},
        "versions": {"python": "3.11", "torch": "2", "numpy": "2"},
    }
    upgraded = upgrade_record(legacy)
    assert schema_errors(upgraded) == []
    assert upgraded["migrated"]["from_schema"] == 0 and upgraded["components"] is None
    assert upgraded["budget"]["optimizer_steps"] == 2500 and upgraded["budget"]["threads"] == 1
    assert upgraded["budget"]["time_limit_hit"] is True and upgraded["protocol"]["max_history"] == 20
    assert upgraded["git"]["untracked_files"] is None  # unknown, not invented
    assert upgrade_record(upgraded) is upgraded and "migrated" not in legacy


# ---------------------------------------------------------------------- one protocol
@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper", "gpu"])
def test_every_method_sees_the_splits_history_length_in_every_profile(profile):
    from bench.methods import RunContext
    from bench.plugins import METHODS

    lengths = {}
    for overrides in ({"method": "sasrec"}, {"method": "bert4rec"}, {"method": "gru4rec"},
                      {"method": "tiger", "tokenizer": {"name": "rqvae"}}):
        config = resolve_config(profile, overrides=overrides)
        method = METHODS.get(config["method"])(config, RunContext(work_dir=Path("unused")))
        lengths[config["method"]] = method.max_history()
    assert set(lengths.values()) == {resolve_config(profile)["split"]["max_history"]}, lengths
    deviating = resolve_config(profile, assignments=["baseline.max_seq_len=50"], overrides={"method": "sasrec"})
    assert deviating["baseline"]["max_seq_len"] == 50  # a deliberate deviation stays what it was set to


def test_recbole_sees_exactly_the_harness_histories_under_the_paper_profile():
    from baselines.recbole_data import prepare
    from bench.data import load_dataset
    from bench.split import LeaveOneOutSplit

    config = resolve_config("paper", overrides={"method": "sasrec", "dataset": "ml-100k"})
    split = LeaveOneOutSplit(load_dataset("ml-100k"), max_history=int(config["split"]["max_history"]))
    data = prepare(split.dataset.sequences, split.n_items, max_seq_len=int(config["baseline"]["max_seq_len"]),
                   split=split)
    for part, stage in ((1, "valid"), (2, "test")):
        users, _ = data.targets(part)
        batch = split.eval_batch(stage)
        for user, history in zip(users, data.histories(part)):
            expected = batch.items[user][batch.items[user] >= 0]
            np.testing.assert_array_equal(history, expected)


# ---------------------------------------------------------------------- the curated store
def _completed(tmp_path, profile="cpu") -> dict:
    from bench.runner import run

    config = resolve_config(profile, overrides={"dataset": "synthetic", "method": "pop",
                                                "results_dir": str(tmp_path / "runs"), "work_dir": str(tmp_path / "w")})
    return run(config)


def test_publish_copies_checked_records_and_refuses_smoke_and_failed(tmp_path, capsys):
    record = _completed(tmp_path, "cpu")
    smoke = _completed(tmp_path, "smoke")
    target = tmp_path / "published"
    common = ["publish", "--from", str(tmp_path / "runs"), "--to", str(target)]
    assert main(common + [record["run_id"]]) == 0
    assert (target / f"{record['run_id']}.json").is_file()
    assert main(common + [record["run_id"]]) == 0 and "already published" in capsys.readouterr().out
    assert main(common + [smoke["run_id"]]) == 2 and "smoke" in capsys.readouterr().err
    failed = dict(record, run_id="failed-run", status="failed", error="boom")
    write_record(failed, tmp_path / "runs")
    assert main(common + ["failed-run"]) == 2
    assert main(common + ["no-such-run"]) == 2
    assert sorted(p.name for p in target.iterdir()) == [f"{record['run_id']}.json"]


def test_runs_write_to_the_scratch_store_and_render_reads_the_curated_one():
    from bench.cli import build_parser

    assert resolve_config(None)["results_dir"] == "results/runs"
    ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", "results/runs/x.json"])
    assert ignored.returncode == 0, "the scratch store must be git-ignored"
    args = build_parser().parse_args(["render"])
    assert args.results_dir == PUBLISHED_STORE
    assert build_parser().parse_args(["select"]).results_dir == PUBLISHED_STORE  # it chooses the runs render shows
    tracked = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", "results/selection.json"])
    assert tracked.returncode == 1, "the selection file is committed with the tables it makes"


def test_render_reproduces_the_committed_tables_byte_for_byte(tmp_path):
    # the committed tables are what `bench render` builds from the curated store and the committed
    # selection file (results/selection.json, written by `bench select`), and nothing else
    from bench.commands.render import render_all
    from bench.tables.selection import read_selection

    records = [r for r in iter_records(REPO / PUBLISHED_STORE) if r.get("status") == "completed"]
    selection = read_selection(REPO / "results" / "selection.json")
    written = render_all(records, tmp_path, plots=False, selection=selection)
    tables = [p for p in written if p.parent.name == "tables"]
    assert tables
    for path in tables:
        committed = REPO / "results" / "tables" / path.name
        assert committed.read_bytes() == path.read_bytes(), f"{committed} is not what bench render makes"
    committed = {p.name for p in (REPO / "results" / "tables").iterdir()}
    assert committed == {p.name for p in tables}, "a committed table that the selection file does not name"


def test_the_committed_selection_names_every_published_run_once_per_table():
    # every published run is either in a table's rows or left out of it with a reason
    from bench.tables.selection import read_selection

    published = {r["run_id"] for r in iter_records(REPO / PUBLISHED_STORE) if r.get("status") == "completed"}
    for name, selection in read_selection(REPO / "results" / "selection.json").items():
        assert selection.run_ids | set(selection.left_out) == published, name
        assert not selection.run_ids & set(selection.left_out), name
        assert all(why for why in selection.left_out.values()), name


def test_whole_floats_and_ints_are_one_setting():
    """A sweep's YAML grid writes beta 0.0 where `--set tokenizer.letter.beta=0` writes 0: seeds of
    the one configuration must group (they did not: two rows of alpha 0.1 x beta 0 in the tables)."""
    from bench.identity import config_identity

    grid = {"seed": 1, "tokenizer": {"letter": {"alpha": 0.1, "beta": 0.0}}, "train": {"tau": 1.0}}
    cli = {"seed": 2, "tokenizer": {"letter": {"alpha": 0.1, "beta": 0}}, "train": {"tau": 1}}
    assert config_identity(grid) == config_identity(cli)
    assert config_identity(grid) != config_identity({**cli, "train": {"tau": 1.2}})
    assert config_identity({"x": True}) != config_identity({"x": 1.5})


def test_registering_a_tokenizer_changes_no_stored_runs_identity():
    """A new plug-in adds its section to every resolved config; a run that does not use it keeps its
    identity (else every sweep would run its finished trials again and tables would split rows)."""
    from bench.config import resolve_config
    from bench.identity import config_identity
    from bench.plugins import TOKENIZERS

    before = resolve_config("smoke", overrides={"method": "tiger", "tokenizer": {"name": "lsh"}})
    TOKENIZERS.register("later", "tokenizers_zoo.lsh:LSHTokenizer", defaults={"levels": 2, "bits": 3, "center": True})
    try:
        after = resolve_config("smoke", overrides={"method": "tiger", "tokenizer": {"name": "lsh"}})
    finally:
        TOKENIZERS.unregister("later")
    assert "later" in after["tokenizer"] and "later" not in before["tokenizer"]
    assert config_identity(after.to_record()) == config_identity(before.to_record())
    other = resolve_config("smoke", assignments=["tokenizer.rqvae.epochs=7"], overrides={"method": "tiger", "tokenizer": {"name": "lsh"}})
    assert config_identity(other.to_record()) == config_identity(before.to_record())  # lsh does not read tokenizer.rqvae


def test_a_runs_identity_holds_only_the_sections_its_method_reads():
    """A RecBole baseline re-run after the profile's TIGER schedule changed is the same configuration
    (the 'Configs' count of its table row must not grow); a change in its own section is another; a
    LETTER run keeps the baseline section, which trains its CF embeddings."""
    from bench.identity import config_identity

    def ident(method, assignments=(), **overrides):
        return config_identity(resolve_config("smoke", assignments=list(assignments),
                                              overrides={"method": method, **overrides}).to_record())

    sasrec = ident("sasrec")
    assert ident("sasrec", ["train.max_steps=77", "model.encoder_layers=3", "decode.beam_size=7",
                            "tokenizer.rqvae.epochs=7", "baseline.semantic_knn.history=9"]) == sasrec
    assert ident("sasrec", ["baseline.learning_rate=0.0005"]) != sasrec
    assert ident("semantic_knn", ["baseline.semantic_knn.history=9"]) != ident("semantic_knn")
    assert ident("pop", ["baseline.learning_rate=0.0005", "train.max_steps=77"]) == ident("pop")
    rqvae = {"tokenizer": {"name": "rqvae"}}
    assert ident("tiger", ["baseline.learning_rate=0.0005"], **rqvae) == ident("tiger", **rqvae)
    assert ident("tiger", ["train.max_steps=77"], **rqvae) != ident("tiger", **rqvae)
    letter = {"tokenizer": {"name": "letter"}}
    assert ident("tiger", ["baseline.learning_rate=0.0005"], **letter) != ident("tiger", **letter)
    assert ident("tiger", ["baseline.cf_embed.epochs=3"], **letter) != ident("tiger", **letter)
    # a record made before the cold-start section existed is the standard protocol
    record = resolve_config("smoke", overrides={"method": "sasrec"}).to_record()
    assert config_identity({k: v for k, v in record.items() if k != "coldstart"}) == sasrec
    assert ident("sasrec", ["coldstart.enabled=true"]) != sasrec
