"""Tokenizer zoo: unique deterministic IDs, the collision level, statistics, the RQ-VAE and LETTER losses."""
from __future__ import annotations

import argparse
import itertools
import math
import sys

import numpy as np
import pytest
import torch

import tokenizers_zoo
from bench.config import ConfigError, profile_names, resolve_config
from tokenizers_zoo import (
    TOKENIZERS,
    Tokenizer,
    TokenizerError,
    TrainingDivergedError,
    build_tokenizer,
    collision_suffix,
    fit_tokenizer,
    semantic_ids,
)
from tokenizers_zoo.stats import code_stats, collapse_warnings, entropy_bits, gini, stats_table

SMALL = {
    "random_id": {"levels": 3, "codebook_size": 16},
    "lsh": {"levels": 3, "bits": 4},
    "rqvae": {"levels": 3, "codebook_size": 16, "code_dim": 8, "hidden": [32, 16], "epochs": 6, "batch_size": 128,
              "optimizer": "adamw", "lr": 1e-3},
    "letter": {"levels": 3, "codebook_size": 16, "code_dim": 8, "hidden": [32, 16], "epochs": 6, "batch_size": 128,
               "alpha": 0.1, "beta": 0.01, "n_clusters": 4, "cluster_n_init": 2},
    "rqkmeans": {"levels": 3, "codebook_size": 16, "max_iter": 50},
}


pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(n=600, dim=64, k=12, spread=1.0, scale=2.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * scale
    labels = rng.integers(0, k, n)
    return (centres[labels] + rng.normal(size=(n, dim)) * spread).astype(np.float32), labels


@pytest.fixture(scope="module")
def data():
    x, labels = blobs(n=400)
    cf = np.random.default_rng(1).normal(size=(400, 8)).astype(np.float32)
    return x, cf


def fit(name, x, cf=None, seed=0, **params):
    return TOKENIZERS.get(name)({**SMALL[name], **params}, seed=seed).fit(x, cf)


# ----------------------------------------------------------------------------- registry, config


def test_registry_has_the_built_in_tokenizers():
    assert {"letter", "lsh", "random_id", "rqvae"} <= set(TOKENIZERS.names())  # plug-ins may add more
    for name in TOKENIZERS:
        assert issubclass(TOKENIZERS.get(name), Tokenizer) and TOKENIZERS.get(name).name == name


@pytest.mark.parametrize("profile", profile_names())
def test_every_profile_builds_every_tokenizer(profile):
    for name in TOKENIZERS:
        config = resolve_config(profile, overrides={"tokenizer": {"name": name}})
        tokenizer = build_tokenizer(config)
        assert tokenizer.seed == config["seed"] and tokenizer.level_sizes
    paper = resolve_config("paper")["tokenizer"]
    assert paper["rqvae"]["optimizer"] == "adagrad" and paper["rqvae"]["lr"] == 0.4 and not paper["rqvae"]["dead_code_reset"]
    assert paper["letter"]["levels"] == 4 and paper["letter"]["alpha"] == 0.02 and not paper["letter"]["dead_code_reset"]


def test_unknown_parameters_are_rejected():
    with pytest.raises(TokenizerError, match=r"rqvae.epoch: unknown config key \(known: levels, codebook_size"):
        TOKENIZERS.get("rqvae")({"epoch": 3})
    with pytest.raises(ConfigError):
        resolve_config("smoke", assignments=["tokenizer.rqvae.epoch=3"])
    with pytest.raises(TokenizerError, match="n_clusters"):
        TOKENIZERS.get("letter")({"codebook_size": 8, "n_clusters": 10})


# ----------------------------------------------------------------------------- collision level


def brute_force_suffix(codes):
    seen: dict[tuple, int] = {}
    out = []
    for row in map(tuple, codes):
        out.append(seen.get(row, 0))
        seen[row] = seen.get(row, 0) + 1
    return np.array(out)


def test_collision_suffix_matches_brute_force():
    assert collision_suffix(np.array([[1, 2], [1, 2], [0, 0], [1, 2], [0, 0], [3, 1]])).tolist() == [0, 1, 0, 2, 1, 0]
    rng = np.random.default_rng(0)
    for n, levels, k in [(1, 1, 2), (50, 1, 3), (300, 2, 4), (500, 3, 3)]:
        codes = rng.integers(0, k, size=(n, levels))
        np.testing.assert_array_equal(collision_suffix(codes), brute_force_suffix(codes))
        ids = semantic_ids(codes)
        assert ids.shape == (n, levels + 1)
        np.testing.assert_array_equal(ids[:, :levels], codes)
        assert len(np.unique(ids, axis=0)) == n


def test_stats_against_hand_computed_values():
    codes = np.array([[0, 0], [0, 1], [0, 1], [1, 1], [2, 0], [0, 0]])
    stats = code_stats(codes, [4, 2], collapse_threshold=0.1)
    assert stats["codes_used"] == [3, 2]
    assert stats["utilisation"] == [0.75, 1.0]
    assert stats["unique_tuples"] == 4
    assert stats["collision_rate"] == pytest.approx(4 / 6)  # items 0,5 share (0,0); items 1,2 share (0,1)
    assert stats["max_collision_group"] == 2
    assert stats["codebook_sizes"] == [4, 2, 2]
    # first-level distribution 4/6, 1/6, 1/6, 0
    entropy = -(2 / 3 * math.log2(2 / 3) + 2 * (1 / 6) * math.log2(1 / 6))
    assert stats["first_level_entropy"] == pytest.approx(entropy)
    assert stats["first_level_entropy_norm"] == pytest.approx(entropy / 2)
    assert stats["first_level_gini"] == pytest.approx(0.5)  # counts (0, 1, 1, 4): mean |xi - xj| / (2 mean) = 0.5
    assert stats["first_level_counts"] == [4, 1, 1, 0]
    assert "first_level_counts" not in stats_table(stats)
    assert stats["collapse_warning"] == []
    assert gini(np.array([5, 5, 5])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 9])) == pytest.approx(2 / 3)
    assert entropy_bits(np.array([1, 1, 1, 1])) == pytest.approx(2.0)


def test_collapse_is_detected_and_reported_loudly(capsys):
    codes = np.stack([np.arange(100) % 50, np.zeros(100, dtype=int)], axis=1)
    messages = collapse_warnings(codes, [64, 64], threshold=0.1)
    assert len(messages) == 1 and "level 2: 1 of 64 codes used" in messages[0]
    # LSH of (almost) identical embeddings without centring: every item in one bucket
    x = np.ones((100, 16), dtype=np.float32) + np.random.default_rng(0).normal(scale=1e-6, size=(100, 16)).astype(np.float32)
    tokenizer = TOKENIZERS.get("lsh")({"levels": 2, "bits": 8, "center": False}, seed=0).fit(x)
    assert len(tokenizer.stats()["collapse_warning"]) == 2
    assert "codebook collapse at level 1" in capsys.readouterr().err
    assert len(np.unique(tokenizer.semantic_ids(), axis=0)) == 100  # still unique thanks to the collision level


# ----------------------------------------------------------------------------- every tokenizer


@pytest.mark.parametrize("name", ["random_id", "lsh", "rqvae", "letter", "rqkmeans"])
def test_unique_deterministic_ids(name, data):
    x, cf = data
    first = fit(name, x, cf, seed=11)
    again = fit(name, x, cf, seed=11)
    other = fit(name, x, cf, seed=12)
    np.testing.assert_array_equal(first.codes(), again.codes())
    assert not np.array_equal(first.codes(), other.codes())
    ids = first.semantic_ids()
    assert ids.shape == (len(x), first.levels + 1) and ids.dtype == np.int64
    assert len(np.unique(ids, axis=0)) == len(x)
    sizes = first.codebook_sizes
    assert sizes[:-1] == first.level_sizes and sizes[-1] == ids[:, -1].max() + 1
    assert (ids[:, :-1] < np.array(first.level_sizes)).all() and (ids >= 0).all()
    stats = first.stats()
    assert stats["tokenizer"] == name and len(stats["utilisation"]) == first.levels
    if name in ("rqvae", "letter", "rqkmeans"):
        assert stats["reconstruction_mse"] > 0
    if name == "letter":
        assert {"cf_alignment", "cf_top1_in_batch"} <= set(stats)


@pytest.mark.parametrize("name", ["random_id", "lsh", "rqvae", "letter", "rqkmeans"])
def test_save_load_round_trip(name, data, tmp_path):
    x, cf = data
    tokenizer = fit(name, x, cf, seed=3)
    tokenizer.save(tmp_path / "tok")
    tokenizer.save(tmp_path / "tok")  # replacing an existing folder works
    loaded = Tokenizer.load(tmp_path / "tok")
    assert type(loaded) is type(tokenizer) and loaded.params == tokenizer.params and loaded.seed == 3
    np.testing.assert_array_equal(loaded.codes(), tokenizer.codes())
    assert loaded.stats() == tokenizer.stats()
    assert loaded.codebook_sizes == tokenizer.codebook_sizes
    if name != "random_id":
        np.testing.assert_array_equal(loaded.encode(x), tokenizer.codes())
    assert TOKENIZERS.get(name).load(tmp_path / "tok").source == str(tmp_path / "tok")
    if name != "lsh":
        with pytest.raises(TokenizerError):
            TOKENIZERS.get("lsh").load(tmp_path / "tok")


def test_fit_tokenizer_caches_by_config_and_embeddings(tmp_path, data, monkeypatch):
    x, _ = data
    sets = [f"tokenizer.cache_dir={tmp_path}", "tokenizer.lsh.bits=4"]
    config = resolve_config("smoke", assignments=sets, overrides={"tokenizer": {"name": "lsh"}})
    first = fit_tokenizer(config, x)
    assert first.source is None and len(cache_entries(tmp_path)) == 1

    def boom(self, *args):
        raise AssertionError("fitted again instead of loading from the cache")

    monkeypatch.setattr(TOKENIZERS.get("lsh"), "_fit", boom)
    second = fit_tokenizer(config, x)
    assert second.source is not None
    np.testing.assert_array_equal(second.codes(), first.codes())
    monkeypatch.undo()
    assert fit_tokenizer(config, x, refit=True).source is None  # fitted again, replacing the entry
    assert len(cache_entries(tmp_path)) == 1
    fit_tokenizer(resolve_config("smoke", assignments=[*sets, "seed=5"], overrides={"tokenizer": {"name": "lsh"}}), x)
    fit_tokenizer(config, x[:, ::-1].copy())
    assert len(cache_entries(tmp_path)) == 3  # other seed, other embeddings: other entries
    fit_tokenizer(config, x, cache=False)
    assert len(cache_entries(tmp_path)) == 3


# ----------------------------------------------------------------------------- the algorithms


def purity(codes, labels):
    total = 0
    for code in np.unique(codes):
        total += np.bincount(labels[codes == code]).max()
    return total / len(labels)


@pytest.mark.parametrize("seed", [0, 1])
def test_rqvae_first_level_separates_known_clusters(seed):
    # the cpu profile's recipe (AdamW + dead-code reset); without the reset Adam-type steps collapse
    # the codebooks here too (purity 0.4-0.7 with 3-6 codes in use)
    x, labels = blobs(n=800, dim=48, k=8, spread=0.3, scale=3.0, seed=4)
    params = {"levels": 2, "codebook_size": 16, "code_dim": 8, "hidden": [64, 32], "epochs": 40, "batch_size": 256,
              "optimizer": "adamw", "lr": 1e-3, "dead_code_reset": True}
    tokenizer = TOKENIZERS.get("rqvae")(params, seed=seed).fit(x)
    first = tokenizer.codes()[:, 0]
    assert purity(first, labels) >= 0.95
    assert len(np.unique(first)) >= 8  # every cluster has at least one code of its own
    assert tokenizer.info["dead_codes_reset"] > 0


@pytest.mark.parametrize("until, expected", [(None, [2, 4, 6, 8]), (5, [2, 4]), (1, [])])
def test_dead_code_reset_schedule(until, expected):
    # checks every 2 epochs, never after the last (10th) epoch, and none after `dead_code_until`
    params = {"dead_code_reset": True, "dead_code_every": 2, "dead_code_until": until}
    tokenizer = TOKENIZERS.get("rqvae")(params, seed=0)
    assert [epoch + 1 for epoch in range(10) if tokenizer._reset_due(epoch, 10)] == expected


def test_dead_code_until_must_be_positive():
    with pytest.raises(TokenizerError, match="dead_code_until"):
        TOKENIZERS.get("rqvae")({"dead_code_until": 0}, seed=0)


def test_collaborative_loss_alone_raises_alignment():
    x, _ = blobs(n=600, seed=0)
    cf = np.random.default_rng(7).normal(size=(600, 16)).astype(np.float32)
    params = {"levels": 2, "codebook_size": 32, "code_dim": 16, "hidden": [64, 32], "epochs": 30, "batch_size": 128,
              "beta": 0.0}
    without = TOKENIZERS.get("letter")({**params, "alpha": 0.0}, seed=0).fit(x, cf).stats()
    with_cf = TOKENIZERS.get("letter")({**params, "alpha": 1.0}, seed=0).fit(x, cf).stats()
    assert abs(without["cf_alignment"]) < 0.05
    assert with_cf["cf_alignment"] > without["cf_alignment"] + 0.05


def test_diversity_loss_alone_raises_first_level_utilisation():
    # LETTER/LC-Rec's uniform codebook init (no k-means) is the collapse-prone setting the loss targets
    x, _ = blobs(n=600, seed=0)
    params = {"levels": 2, "codebook_size": 32, "code_dim": 16, "hidden": [64, 32], "epochs": 60, "batch_size": 128,
              "alpha": 0.0, "n_clusters": 8, "kmeans_init": False}
    without = TOKENIZERS.get("letter")({**params, "beta": 0.0}, seed=2).fit(x).stats()
    with_div = TOKENIZERS.get("letter")({**params, "beta": 0.1}, seed=2).fit(x).stats()
    assert with_div["codes_used"][0] > without["codes_used"][0]
    assert with_div["first_level_entropy"] > without["first_level_entropy"]


def test_equal_size_clusters_are_equal():
    from tokenizers_zoo.letter import equal_size_clusters

    points = np.random.default_rng(0).normal(size=(256, 8))
    sizes = np.bincount(equal_size_clusters(points, 10, seed=0, n_init=1))
    assert sizes.sum() == 256 and sizes.min() == 25 and sizes.max() == 26


def test_diversity_positive_is_another_code_of_the_same_group(data):
    x, _ = data
    tokenizer = fit("letter", x, None, seed=0, alpha=0.0, epochs=1)
    tokenizer._recluster()
    group = tokenizer._groups[0]
    codes = torch.arange(16).repeat(50)
    # re-derive the sampled positives the way diversity_loss does, many times
    for _ in range(3):
        cluster = group["labels"][codes]
        size = group["sizes"][cluster]
        own = group["position"][codes]
        draw = (torch.rand(len(codes), generator=tokenizer._generator) * (size - 1).float()).long()
        draw = torch.minimum(draw, size - 2)
        draw = draw + (draw >= own).long()
        positive = group["members"][cluster, draw]
        assert (positive != codes).all()
        assert (group["labels"][positive] == cluster).all()
    assert torch.isfinite(tokenizer.diversity_loss(codes, 0))


# ----------------------------------------------------------------------------- guard rails


def test_letter_with_alpha_needs_cf_embeddings(data):
    x, _ = data
    with pytest.raises(TokenizerError, match="alpha=0"):
        fit("letter", x, None)


def test_nan_loss_stops_training_with_a_clear_error(data):
    x, _ = data
    with pytest.raises(TrainingDivergedError, match=r"became (nan|inf).*lr"):
        fit("rqvae", x, optimizer="sgd", lr=1e30, epochs=3)


def test_bad_embeddings_are_rejected(data):
    x, _ = data
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(TokenizerError, match="NaN"):
        fit("lsh", bad)
    with pytest.raises(TokenizerError, match="rows"):
        fit("letter", x, np.zeros((5, 8), dtype=np.float32))


# ----------------------------------------------------------------------------- bench tokenize


@pytest.fixture
def cli(monkeypatch, tmp_path):
    """``bench tokenize`` on the synthetic dataset with a fake text encoder and caches under tmp_path."""
    import bench.embed as embed
    from bench.commands import tokenize

    class Fake:
        def encode(self, texts, batch_size=32, show_progress_bar=False, convert_to_numpy=True, normalize_embeddings=True):
            rng = np.random.default_rng(len(texts))
            words = sorted({t.split("; ")[-1] for t in texts})
            centres = rng.normal(size=(len(words), 16))
            return np.stack([centres[words.index(t.split("; ")[-1])] + rng.normal(scale=0.1, size=16) for t in texts]).astype(np.float32)

    monkeypatch.setattr(embed, "load_model", lambda name, device="cpu": Fake())
    parser = argparse.ArgumentParser(prog="bench")
    tokenize.add_parser(parser.add_subparsers(dest="command"))
    base = ["tokenize", "--dataset", "synthetic", "--profile", "smoke",
            "--set", f"embed.cache_dir={tmp_path / 'emb'}", "--set", f"tokenizer.cache_dir={tmp_path / 'tok'}",
            "--set", "tokenizer.progress=false", "--set", "embed.progress=false"]

    def run(*extra):
        from bench.cli import dispatch

        return dispatch(parser.parse_args([*base, *extra]))

    return run


def test_tokenize_command_prints_statistics(cli, capsys):
    assert cli("--tokenizer", "rqvae", "--set", "tokenizer.rqvae.epochs=2") == 0
    out = capsys.readouterr().out
    assert "rqvae on synthetic" in out and "fitted in" in out
    assert "utilisation" in out and "first_level_entropy" in out and "reconstruction_mse" in out
    assert cli("--tokenizer", "rqvae", "--set", "tokenizer.rqvae.epochs=2") == 0
    assert "loaded from" in capsys.readouterr().out
    assert cli("--tokenizer", "random_id", "--json") == 0
    assert '"collision_rate"' in capsys.readouterr().out


def test_random_ids_need_no_text_encoder(cli, capsys, monkeypatch):
    """Random IDs read the item count only: fitting them loads no text encoder (none may be installed
    or downloadable) and says so, while a text-based tokenizer does load it."""
    import bench.embed as embed

    def unavailable(name, device="cpu"):
        raise AssertionError("the text encoder was loaded")

    monkeypatch.setattr(embed, "load_model", unavailable)
    assert cli("--tokenizer", "random_id") == 0
    assert "no text embeddings" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="text encoder was loaded"):
        cli("--tokenizer", "lsh")


def test_tokenize_command_errors(cli, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "baselines.cf_embed", None)  # not importable
    assert cli("--tokenizer", "letter") == 2
    err = capsys.readouterr().err
    assert "baselines.cf_embed" in err and "tokenizer.letter.alpha=0" in err
    assert cli("--tokenizer", "letter", "--set", "tokenizer.letter.alpha=0", "--set", "tokenizer.letter.epochs=1") == 0
    capsys.readouterr()
    assert cli("--tokenizer", "nope") == 2
    assert "unknown tokenizer 'nope'" in capsys.readouterr().err
    assert cli("--tokenizer", "lsh", "--set", "tokenizer.lsh.bitz=3") == 2
    assert "unknown config key" in capsys.readouterr().err


def test_collision_suffix_on_repeated_exhaustive_tuples():
    codes = np.array(list(itertools.product(range(2), repeat=2)) * 2)
    assert collision_suffix(codes).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert tokenizers_zoo.semantic_ids(codes).shape == (8, 3)


def test_letter_ignores_the_cf_rows_of_items_without_a_cf_target(data):
    """Items in no training part carry no collaborative signal: changing their CF rows changes nothing;
    changing a real target's row does."""
    x, cf = data
    mask = np.ones(len(x), dtype=bool)
    mask[::5] = False
    other = cf.copy()
    other[~mask] = np.random.default_rng(9).normal(scale=10, size=(int((~mask).sum()), cf.shape[1]))
    first = TOKENIZERS.get("letter")(dict(SMALL["letter"]), seed=0).fit(x, cf, mask)
    again = TOKENIZERS.get("letter")(dict(SMALL["letter"]), seed=0).fit(x, other, mask)
    np.testing.assert_array_equal(first.codes(), again.codes())
    moved = cf.copy()
    moved[mask] = np.random.default_rng(10).normal(size=(int(mask.sum()), cf.shape[1]))
    changed = TOKENIZERS.get("letter")(dict(SMALL["letter"]), seed=0).fit(x, moved, mask)
    assert not np.array_equal(first.codes(), changed.codes())


def cache_entries(folder):
    """The cache's entries, without the lock files of bench.atomic.cache_lock."""
    return [p for p in folder.iterdir() if not p.name.endswith(".lock")]


def test_concurrent_fits_of_one_tokenizer_fit_once(tmp_path, data, monkeypatch):
    """Two trials that need the same fit at the same time (a sweep's first two trials): one fits, the
    other waits for the cache lock and loads that fit instead of fitting again."""
    import threading
    import time

    x, _ = data
    config = resolve_config("smoke", assignments=[f"tokenizer.cache_dir={tmp_path}", "tokenizer.lsh.bits=4"],
                            overrides={"tokenizer": {"name": "lsh"}})
    lsh = TOKENIZERS.get("lsh")
    original, fits = lsh._fit, []

    def slow_fit(self, *args, **kwargs):
        fits.append(threading.get_ident())
        time.sleep(0.5)  # long enough for the second caller to reach the lock
        return original(self, *args, **kwargs)

    monkeypatch.setattr(lsh, "_fit", slow_fit)
    results = [None, None]

    def work(i):
        results[i] = fit_tokenizer(config, x)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fits) == 1, "both callers fitted the same tokenizer"
    assert sorted(r.source is None for r in results) == [False, True]  # one fitted, one loaded
    np.testing.assert_array_equal(results[0].codes(), results[1].codes())
    assert len(cache_entries(tmp_path)) == 1


# ----------------------------------------------------------------------------- RQ-KMeans


def _clustered(n=600, dim=16, seed=0):
    """Items in a few tight clusters of very unequal size: plain k-means gives the big ones many
    items per code, balanced k-means may not."""
    rng = np.random.default_rng(seed)
    sizes = [300, 150, 80, 40, 20, 10]
    centres = rng.normal(scale=5.0, size=(len(sizes), dim))
    return np.concatenate([c + rng.normal(scale=0.3, size=(s, dim)) for c, s in zip(centres, sizes)]).astype(np.float32)


def test_rqkmeans_balanced_spreads_items_evenly_over_the_codes():
    x = _clustered()
    plain = fit("rqkmeans", x, None, seed=0, codebook_size=16)
    balanced = fit("rqkmeans", x, None, seed=0, codebook_size=16, balanced=True)
    per_code = lambda t: [np.bincount(t.codes()[:, level], minlength=16).max() for level in range(t.levels)]
    assert max(per_code(balanced)) == int(np.ceil(len(x) / 16))  # floor(n/K) .. ceil(n/K) at every level
    assert per_code(balanced)[0] < per_code(plain)[0]


def test_rqkmeans_levels_cluster_the_residuals():
    """Each level is k-means on what the levels above left: the reconstruction error falls with depth,
    and a frozen fit encodes an item by the nearest centroid level by level."""
    x = _clustered(seed=1)
    errors = [fit("rqkmeans", x, None, seed=0, levels=levels).stats()["reconstruction_mse"] for levels in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2] > 0
    tokenizer = fit("rqkmeans", x, None, seed=0)
    moved = x[:5] + 0.01
    residual, expected = moved.astype(np.float64), []
    for centres in tokenizer.centroids.astype(np.float64):
        nearest = ((residual[:, None] - centres[None]) ** 2).sum(axis=2).argmin(axis=1)
        expected.append(nearest)
        residual = residual - centres[nearest]
    np.testing.assert_array_equal(tokenizer.encode(moved), np.stack(expected, axis=1))


def test_rqkmeans_refuses_fewer_items_than_codes():
    with pytest.raises(TokenizerError, match="at least codebook_size"):
        fit("rqkmeans", np.ones((8, 4), dtype=np.float32), None, seed=0, codebook_size=16)
    with pytest.raises(TokenizerError, match="rqkmeans.balanced: Input should be a valid boolean"):
        TOKENIZERS.get("rqkmeans")({"balanced": "yes"})
