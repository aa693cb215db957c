"""The interface every tokenizer implements, and its save/load format.

A tokenizer is fitted on the item embeddings (and, for LETTER, collaborative-filtering item
embeddings), then gives every item L integer codes. :func:`semantic_ids` appends the collision
level so that each item's tuple is unique.

On disk a fitted tokenizer is a folder: ``tokenizer.json`` (name, parameters, seed, codebook sizes,
fit facts, statistics that need the training data), ``codes.npy`` and ``state.pt`` (tensors such
as hyperplanes or network weights; loaded with ``weights_only=True``).
"""
from __future__ import annotations

import contextlib
import json
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.atomic import atomic_folder
from pydantic import ValidationError

from bench.config import default_layer
from bench.config_schema import RunConfig, Section, describe_errors
from bench.errors import UserError, first_line
from bench.plugins import TOKENIZERS
from tokenizers_zoo.collision import max_group_size, semantic_ids
from tokenizers_zoo.stats import code_stats, collapse_warnings, collapsed_levels, report_collapse

SAVE_FORMAT = 1


class TokenizerError(UserError, ValueError):
    """A tokenizer that cannot be built, fitted or loaded as asked."""


class TrainingDivergedError(UserError, RuntimeError):
    """A learned tokenizer's loss became NaN or infinite."""


class CodebookCollapseError(TokenizerError):
    """A learned codebook uses fewer codes than ``tokenizer.collapse_threshold`` allows (and
    ``tokenizer.allow_collapse`` is false): its semantic IDs would mostly be the collision level."""


def default_params(name: str) -> dict:
    """A tokenizer's default parameters: ``tokenizer.<name>`` of the default config layer (the
    defaults file, or what the tokenizer's registration declares with ``defaults=``)."""
    section = default_layer()["tokenizer"].get(name)
    if not isinstance(section, dict):
        raise TokenizerError(f"no defaults for tokenizer {name!r} (bench/configs/defaults/tokenizer.yaml "
                             "or its registration's defaults=)")
    return dict(section)


def tokenizer_seed(config: RunConfig) -> int:
    """``tokenizer.seed``, else the run's ``seed``."""
    return config.seed if config.tokenizer.seed is None else config.tokenizer.seed


def check_embeddings(array: Any, what: str, n_items: int | None = None, featureless: bool = False) -> np.ndarray:
    """``array`` as float32 ``[n_items, dim]``; ``featureless`` admits ``dim == 0`` (only the item count is read)."""
    array = np.asarray(array)
    if array.ndim != 2 or array.shape[0] == 0 or (array.shape[1] == 0 and not featureless):
        raise TokenizerError(f"{what} must be a non-empty 2-D array [n_items, dim], got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise TokenizerError(f"{what} must be numeric, got {array.dtype}")
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).any(axis=1).sum())
        raise TokenizerError(f"{what} contain NaN or infinite values ({bad} rows)")
    if n_items is not None and len(array) != n_items:
        raise TokenizerError(f"{what} have {len(array)} rows but there are {n_items} items")
    return array


class Tokenizer:
    """Base class. Subclasses set ``name``, ``version`` and ``Params`` and implement ``level_sizes``
    and ``_fit``."""

    name = "base"
    # the types and ranges of tokenizer.<name> (a bench.config_schema.Section): checked here and, through
    # the registry, when a config is resolved; the values themselves are in the defaults
    Params: type[Section] | None = None
    # bump when a change makes fitted tokenizers differ (here: the shared fit/collision/save code);
    # every subclass declares its own ``version`` too, see :meth:`component_versions`
    version = 1
    uses_cf = False  # True where fitting can use CF item embeddings (LETTER); see also needs_cf
    uses_text = True  # False where fitting reads only how many items there are (random IDs): no text embeddings
    # True where a collapsed codebook means the fit failed (learned codebooks: RQ-VAE, LETTER), an error
    # unless allow_collapse; elsewhere (random IDs, LSH: a function of the embeddings) only a warning
    collapse_is_error = False

    def __init__(
        self,
        params: dict | None = None,
        seed: int = 0,
        device: str | None = "cpu",
        collapse_threshold: float | None = None,
        progress: bool | None = None,
        allow_collapse: bool | None = None,
    ):
        """``None``: the value of ``tokenizer.<option>`` in the default config (one source for both)."""
        section = default_layer()["tokenizer"]
        collapse_threshold = section["collapse_threshold"] if collapse_threshold is None else collapse_threshold
        progress = section["progress"] if progress is None else progress
        allow_collapse = section["allow_collapse"] if allow_collapse is None else allow_collapse
        self.params = {**default_params(self.name), **dict(params or {})}  # as given: identity, cache key, file
        self.hp = self.typed_params(self.params)  # the same values, typed: what the code reads
        self.seed = int(seed)
        self.device = device
        self.collapse_threshold = float(collapse_threshold)
        self.allow_collapse = bool(allow_collapse)
        self.progress = bool(progress)
        self._codes: np.ndarray | None = None
        self.extra_stats: dict = {}  # statistics that need the training data (reconstruction, CF alignment)
        self.info: dict = {}  # fit facts: seconds, epochs, final losses, loss history
        self.source: str | None = None  # where it was loaded from, when it was
        self.cache_folder: Path | None = None  # its folder in the tokenizer cache (set by fit_tokenizer)
        self.cf_mask: np.ndarray | None = None  # items whose CF row is a real target (set by fit)
        self._init_state()

    @classmethod
    def typed_params(cls, params: dict | None = None) -> Section:
        """``params`` over this tokenizer's defaults, checked and typed by its ``Params``
        (TokenizerError naming every bad value)."""
        if cls.Params is None:
            raise TypeError(f"tokenizer class {cls.__name__} ({cls.name}) declares no `Params`")
        try:
            return cls.Params.model_validate({**default_params(cls.name), **dict(params or {})})
        except ValidationError as err:
            raise TokenizerError("; ".join(describe_errors(err, f"{cls.name}.", cls.Params))) from None

    @classmethod
    def cf_needed(cls, hp: Section) -> bool:
        """Whether fitting with parameters ``hp`` requires CF item embeddings (LETTER with alpha > 0):
        known from the class and its parameters, so a run's needs are known without building one."""
        return False

    @classmethod
    def from_config(cls, config: RunConfig) -> "Tokenizer":
        """An unfitted tokenizer of this class as a resolved config's ``tokenizer`` section describes it."""
        section = config.tokenizer
        return cls(
            config.plain(f"tokenizer.{cls.name}") or {},  # as given: the cache key hashes these values
            seed=tokenizer_seed(config),
            device=section.device or config.device or "cpu",
            collapse_threshold=section.collapse_threshold,
            progress=section.progress,
            allow_collapse=section.allow_collapse,
        )

    # -- to implement --------------------------------------------------------------------

    def _init_state(self) -> None:
        """Set the fitted state's attributes to "not fitted" (the parameters are checked by ``Params``)."""

    @property
    def level_sizes(self) -> list[int]:
        """Codebook size K of each of the L levels (the collision level excluded)."""
        raise NotImplementedError

    def _fit(self, item_emb: np.ndarray, cf_emb: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def _state(self) -> dict:
        """Tensors to save (torch tensors or numpy arrays)."""
        return {}

    def _load_state(self, state: dict) -> None:
        """Inverse of ``_state``."""

    def encode(self, item_emb: np.ndarray) -> np.ndarray:
        """Codes ``[n, L]`` for (new) embeddings, where the tokenizer can assign them."""
        raise TokenizerError(f"the {self.name} tokenizer cannot encode new embeddings")

    @property
    def needs_cf(self) -> bool:
        """True when fitting requires CF embeddings (:meth:`cf_needed` of this instance's parameters)."""
        return self.cf_needed(self.hp)

    # -- common interface ----------------------------------------------------------------
    @classmethod
    def component_versions(cls) -> dict[str, int]:
        """``{"tokenizer/<name>": version}`` for this class and every tokenizer class it builds on
        (LETTER: letter, rqvae, base), each from the class's own declaration."""
        versions = {}
        for klass in cls.__mro__:
            if issubclass(klass, Tokenizer) and "version" in vars(klass):
                versions[f"tokenizer/{vars(klass).get('name', klass.__name__)}"] = int(vars(klass)["version"])
        if f"tokenizer/{cls.name}" not in versions:
            raise TokenizerError(f"tokenizer class {cls.__name__} ({cls.name}) declares no `version`")
        return versions

    @property
    def levels(self) -> int:
        return len(self.level_sizes)

    @property
    def is_fitted(self) -> bool:
        return self._codes is not None

    def fit(self, item_emb: np.ndarray, cf_emb: np.ndarray | None = None, cf_mask: np.ndarray | None = None) -> "Tokenizer":
        """Fit on ``item_emb`` (and ``cf_emb``); ``cf_mask`` marks the items whose CF row is a real
        target (they occur in a training part): the others carry no collaborative signal."""
        item_emb = check_embeddings(item_emb, "item embeddings", featureless=not self.uses_text)
        if cf_emb is not None:
            cf_emb = check_embeddings(cf_emb, "CF item embeddings", n_items=len(item_emb))
        self.cf_mask = None if cf_mask is None or cf_emb is None else np.asarray(cf_mask, dtype=bool)
        if self.cf_mask is not None and self.cf_mask.shape != (len(item_emb),):
            raise TokenizerError(f"cf_mask must have one entry per item ({len(item_emb)}), got {self.cf_mask.shape}")
        start = time.perf_counter()
        codes = np.asarray(self._fit(item_emb, cf_emb))
        if codes.shape != (len(item_emb), self.levels):
            raise RuntimeError(f"{self.name} produced codes of shape {codes.shape}, expected {(len(item_emb), self.levels)}")
        codes = codes.astype(np.int64)
        sizes = np.asarray(self.level_sizes)
        if len(codes) and ((codes < 0).any() or (codes >= sizes[None, :]).any()):
            raise RuntimeError(f"{self.name} produced codes outside [0, K)")
        self._codes = codes
        self.info["fit_seconds"] = round(time.perf_counter() - start, 3)
        self.source = None
        report_collapse(self.name, collapse_warnings(codes, self.level_sizes, self.collapse_threshold))
        return self

    def extend(self, item_emb: np.ndarray, fitted: np.ndarray) -> "Tokenizer":
        """Codes for every row of ``item_emb``: the rows ``fitted`` (in order) are the items this
        tokenizer was fitted on and keep their codes; the others are encoded by the frozen fit
        (cold start: a new item gets its ID from a tokenizer that never saw it)."""
        codes = self._require_fitted()
        fitted = np.asarray(fitted, dtype=np.int64)
        if len(fitted) != len(codes):
            raise TokenizerError(f"{len(fitted)} fitted rows given, the {self.name} tokenizer has codes for {len(codes)}")
        new = np.setdiff1d(np.arange(len(item_emb)), fitted)
        full = np.empty((len(item_emb), self.levels), dtype=np.int64)
        full[fitted] = codes
        if len(new):
            encoded = np.asarray(self.encode(np.asarray(item_emb)[new]), dtype=np.int64)
            if encoded.shape != (len(new), self.levels):
                raise RuntimeError(f"{self.name}.encode gave shape {encoded.shape}, expected {(len(new), self.levels)}")
            full[new] = encoded
        self._codes = full
        self.info["encoded_new_items"] = int(len(new))
        return self

    def check_collapse(self, where: str = "") -> None:
        """CodebookCollapseError when a learned codebook collapsed (see ``collapse_is_error``) and
        ``allow_collapse`` is off; ``where``: where the fitted tokenizer is (cached), for the message."""
        if not self.collapse_is_error or self.allow_collapse:
            return
        collapsed = collapsed_levels(self._require_fitted(), self.level_sizes, self.collapse_threshold)
        if not collapsed:
            return
        first = collapsed[0]
        others = (f" (and level(s) {', '.join(str(c['level']) for c in collapsed[1:])})" if len(collapsed) > 1 else "")
        kept = f"; the fitted tokenizer is cached in {where}, so a re-run with it allowed does not fit again" if where else ""
        raise CodebookCollapseError(
            f"{self.name} codebook collapsed at level {first['level']}{others}: utilisation "
            f"{first['utilisation']:.1%} ({first['used']} of {first['size']} codes used), below "
            f"tokenizer.collapse_threshold {self.collapse_threshold:g} x the {first['reachable']} reachable codes; "
            f"semantic IDs from it would mostly be the collision level. Change the tokenizer's training "
            f"(e.g. tokenizer.{self.name}.dead_code_reset=true, another lr), or allow it with "
            f"--set tokenizer.allow_collapse=true (or lower tokenizer.collapse_threshold){kept}"
        )

    def _require_fitted(self) -> np.ndarray:
        if self._codes is None:
            raise TokenizerError(f"the {self.name} tokenizer is not fitted yet: call fit() or load()")
        return self._codes

    def codes(self) -> np.ndarray:
        """``[n_items, L]`` int64 codes, before the collision level."""
        codes = self._require_fitted().view()
        codes.flags.writeable = False
        return codes

    def semantic_ids(self) -> np.ndarray:
        """``[n_items, L + 1]``: the codes plus the collision level, unique per item."""
        return semantic_ids(self._require_fitted())

    @property
    def codebook_sizes(self) -> list[int]:
        """K per level, then the collision level's size (the largest group of identical tuples)."""
        return [int(k) for k in self.level_sizes] + [max(1, max_group_size(self._require_fitted()))]

    def stats(self) -> dict:
        codes = self._require_fitted()
        stats = {"tokenizer": self.name}
        stats.update(code_stats(codes, self.level_sizes, self.collapse_threshold))
        stats.update(self.extra_stats)
        # collapse_warning last, so tables end with it
        stats["collapse_warning"] = stats.pop("collapse_warning")
        return stats

    def describe(self) -> dict:
        """Everything that identifies the fitted tokenizer (for run records)."""
        return {"name": self.name, "params": dict(self.params), "seed": self.seed, "codebook_sizes": self.codebook_sizes}

    # -- persistence ---------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted tokenizer to folder ``path`` atomically (replacing an older one)."""
        import torch

        codes = self._require_fitted()
        path = Path(path)
        meta = {
            "format": SAVE_FORMAT,
            "name": self.name,
            "components": type(self).component_versions(),
            "params": self.params,
            "seed": self.seed,
            "collapse_threshold": self.collapse_threshold,
            "level_sizes": [int(k) for k in self.level_sizes],
            "n_items": int(len(codes)),
            "info": self.info,
            "extra_stats": self.extra_stats,
        }
        with atomic_folder(path) as tmp:
            (tmp / "tokenizer.json").write_text(json.dumps(meta, indent=2, default=_json_default))
            np.save(tmp / "codes.npy", codes, allow_pickle=False)
            state = {k: (torch.as_tensor(v) if isinstance(v, np.ndarray) else v) for k, v in self._state().items()}
            torch.save(state, tmp / "state.pt")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        """A fitted tokenizer from a folder written by :meth:`save` (any tokenizer when called on the base)."""
        import torch

        path = Path(path)
        try:
            meta = json.loads((path / "tokenizer.json").read_text())
            codes = np.load(path / "codes.npy", allow_pickle=False)
            state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        except (OSError, ValueError, json.JSONDecodeError, RuntimeError, pickle.UnpicklingError) as err:
            # UnpicklingError: state.pt holds more than tensors and plain data (refused: it could run code)
            raise TokenizerError(f"cannot load a tokenizer from {path}: {first_line(err)}") from None
        if meta.get("format") != SAVE_FORMAT:
            raise TokenizerError(f"{path}: tokenizer format {meta.get('format')!r}, expected {SAVE_FORMAT}")
        klass = TOKENIZERS.get(meta["name"])
        if cls is not Tokenizer and not issubclass(klass, cls):
            raise TokenizerError(f"{path} holds a {meta['name']} tokenizer, not {cls.name}")
        params = {k: v for k, v in meta["params"].items() if k in default_params(meta["name"])}
        tokenizer = klass(params, seed=meta["seed"], device="cpu", collapse_threshold=meta["collapse_threshold"])
        if codes.shape != (meta["n_items"], tokenizer.levels):
            raise TokenizerError(f"{path}: codes.npy has shape {codes.shape}, expected {(meta['n_items'], tokenizer.levels)}")
        tokenizer._load_state(state)
        tokenizer._codes = codes.astype(np.int64)
        tokenizer.info = meta.get("info", {})
        tokenizer.extra_stats = meta.get("extra_stats", {})
        tokenizer.source = str(path)
        return tokenizer

    def __repr__(self) -> str:
        fitted = f"{len(self._codes)} items" if self._codes is not None else "not fitted"
        return f"<{type(self).__name__} {self.name} K={self.level_sizes} seed={self.seed} {fitted}>"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@contextlib.contextmanager
def seeded_torch(seed: int):
    """Torch's global RNG seeded for the block and restored afterwards (CPU determinism)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def progress_bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="epoch", disable=not enabled, file=sys.stderr, dynamic_ncols=True)
