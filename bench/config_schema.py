"""Types and ranges of every config value, checked once when a config is resolved.

Pydantic models in strict mode (no silent coercion: ``"abc"`` or ``true`` is not an integer, ``5``
is not a list), one per section, with ``extra="forbid"``. The defaults themselves stay in the YAML
files under ``bench/configs``; these models only say what a valid value is. Conventions: ``null``
means "unset" (and each field says what unset does); ``0`` is a value and is accepted only where it
means something (``model.user_buckets: 0`` = no user token, ``train.warmup_steps: 0`` = no warm-up).

Plug-in sections are typed by the plug-ins themselves: each tokenizer class and each method whose
registration lists the ``baseline`` section declares ``Params`` (a :class:`Section`), and
:func:`run_config_model` composes them under ``tokenizer.<name>`` / ``baseline.<name>``, so the one
validation checks every key of a run's config, a plug-in's included.

The checked config is what the code reads: :func:`bench.config.resolve_config` returns the composed
:class:`RunConfig` instance (immutable), and code reads attributes (``config.train.max_steps``). Its
``to_record()`` is the plain form (the values as the layers gave them) that the run record stores and
identities and cache keys hash, so a ``5`` given for a float stays ``5`` there.

Pydantic rather than dataclasses: it checks nested types, ranges and enumerations and reports every
problem with its dotted location, which is what a user needs from one error message.
"""
from __future__ import annotations

import copy

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, create_model, model_validator

from bench.plugins import METHODS, TOKENIZERS

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
CodebookSize = Annotated[int, Field(ge=2)]  # a codebook of one code tells no items apart
Probability = Annotated[float, Field(ge=0, le=1)]
DropoutRate = Annotated[float, Field(ge=0, lt=1)]
Device = Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$")]
# one range for every seed: what numpy's and torch's seeding both accept (numpy: 0 .. 2**32 - 1)
SEED_MAX = 2**32 - 1
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]


# What a key means beyond its value, declared on its field here and read through keys_with_role:
ROLES = {
    "path": "where files go, not what runs: left out of every identity (config hash, trial key)",
    "not_a_setting": "not a setting a table tells configurations apart by (seed, paths, resume)",
    "may_change_on_resume": "a TIGER checkpoint may be resumed under another value (budget, process, "
                            "test-time decoding, where inputs are computed)",
    "at_test": "changes how a trained model is decoded or scored, not how it is trained",
    "test_time_cost": "changes what a finished run's test phase costs (sweep time estimates)",
    "budget": "fixes a method's training budget under a profile: the main and tokenizer tables compare "
              "runs at the profile's current values (RecBole's epochs are not one: an upper bound under "
              "early stopping on validation)",
    "schedule": "scales with the training length (warm-up, evaluation interval): a run given another "
                "training time changes it with the steps and keeps its setting (architecture table)",
}
_UNSET = object()


def role(*names: str, before: Any = _UNSET):
    """Field metadata giving a key its roles (:data:`ROLES`). ``before``: the key was added after
    records were stored, and this value behaves as the code did before it (left out of identities at
    that value, so the older records keep theirs; a checkpoint without it resumes under it)."""
    unknown = set(names) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown key role(s) {sorted(unknown)}; known: {sorted(ROLES)}")
    extra: dict[str, Any] = {"roles": list(names)}
    if before is not _UNSET:
        extra["before"] = before
    return Field(json_schema_extra=extra)


class Section(BaseModel):
    """A config section: strict types, no unknown keys, immutable once checked. Plug-ins subclass it
    for their ``Params``. Values are read as attributes (``config.train.max_steps``); ``section[key]``,
    ``get`` and ``in`` address them by name, for code that takes a key as data (a dotted sweep key, a
    table's parameter column)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def __getitem__(self, key: str) -> Any:
        if key in type(self).model_fields or key in (self.model_extra or {}):
            return getattr(self, key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return key in type(self).model_fields or key in (self.model_extra or {})

    def keys(self) -> list[str]:
        return [*type(self).model_fields, *(self.model_extra or {})]

    def items(self) -> list[tuple[str, Any]]:
        return [(key, self[key]) for key in self.keys()]


def get_path(config: dict | Section, dotted: str, default: Any = None) -> Any:
    """``config["a"]["b"]`` for ``"a.b"`` (a plain config or a typed one); ``default`` where a part is missing."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, (dict, Section)) or part not in node:
            return default
        node = node[part]
    return node


class SyntheticData(Section):
    n_users: Annotated[int, Field(ge=2)]
    n_items: Annotated[int, Field(ge=2)]
    n_categories: PositiveInt
    min_length: Annotated[int, Field(ge=3)]  # leave-one-out needs a training, a valid and a test item
    max_length: Annotated[int, Field(ge=3)]
    p_next: Probability
    p_stay: Probability
    seed: Seed

    @model_validator(mode="after")
    def _lengths(self):
        if self.max_length < self.min_length:
            raise ValueError("max_length must be at least min_length")
        return self


class Data(Section):
    model_config = ConfigDict(extra="allow", strict=True)  # data.<dataset>: options of generated datasets
    synthetic: SyntheticData


class Split(Section):
    max_history: PositiveInt


class Eval(Section):
    ks: Annotated[list[PositiveInt], Field(min_length=1)]
    max_k: Annotated[PositiveInt, role("test_time_cost")]


class ColdStartSection(Section):
    enabled: bool
    fraction: Annotated[float, Field(gt=0, lt=1)]
    seed: Optional[Seed]
    epsilon: Annotated[Probability, role("may_change_on_resume")]
    epsilon_curve: Annotated[list[Probability], role("may_change_on_resume")]


class Embed(Section):
    model: str
    template: str
    batch_size: Annotated[PositiveInt, role("may_change_on_resume")]
    normalize: bool
    device: Annotated[Optional[Device], role("may_change_on_resume")]
    cache: Annotated[bool, role("may_change_on_resume")]
    cache_dir: Annotated[Optional[str], role("may_change_on_resume")]
    progress: Annotated[bool, role("may_change_on_resume")]


class Track(Section):
    tensorboard: bool
    mlflow: Optional[Annotated[str, Field(min_length=1)]]  # a tracking URI; null = off


class Model(Section):
    arch: Annotated[Literal["encoder_decoder", "decoder_only"], role(before="encoder_decoder")]
    encoder_layers: PositiveInt
    decoder_layers: PositiveInt
    d_model: PositiveInt
    num_heads: PositiveInt
    head_dim: PositiveInt
    d_ff: PositiveInt
    dropout: DropoutRate
    activation: Literal["relu", "gelu"]
    relative_buckets: PositiveInt
    relative_max_distance: PositiveInt
    user_buckets: NonNegativeInt  # 0 = no user token


class Train(Section):
    tau: PositiveFloat
    optimizer: Literal["adamw", "adafactor"]
    lr: PositiveFloat
    betas: Annotated[list[Annotated[float, Field(ge=0, lt=1)]], Field(min_length=2, max_length=2)]
    weight_decay: NonNegativeFloat
    schedule: Literal["inverse_sqrt", "cosine", "constant"]
    warmup: Literal["constant", "linear"]
    warmup_steps: Annotated[NonNegativeInt, role("schedule")]  # 0 = no warm-up
    max_steps: Annotated[Optional[PositiveInt], role("may_change_on_resume", "budget")]  # null = no step limit (then max_epochs must be set)
    max_epochs: Annotated[Optional[PositiveInt], role("may_change_on_resume", "budget")]
    batch_size: Annotated[PositiveInt, role("budget")]
    time_limit_min: Annotated[Optional[PositiveFloat], role("may_change_on_resume")]  # null = no time limit
    eval_every: Annotated[Optional[PositiveInt], role("schedule")]  # null = once per epoch
    valid_users: Optional[PositiveInt]  # null = all users
    patience: Optional[PositiveInt]  # null = never stop early
    grad_clip: Optional[PositiveFloat]  # null = no clipping
    amp: Literal["none", "bf16", "fp16"]
    group_by_length: bool
    loss_positions: Annotated[Literal["last", "all"], role(before="last")]
    checkpoint: Annotated[bool, role("may_change_on_resume")]
    resume_from: Annotated[Optional[str], role("may_change_on_resume", "not_a_setting")]
    progress: Annotated[bool, role("may_change_on_resume")]
    # null = torch's default; auto = this process's cores
    num_threads: Annotated[Optional[Union[PositiveInt, Literal["auto"]]], role("may_change_on_resume")]
    seed: Optional[Seed]  # null = the run's seed

    @model_validator(mode="after")
    def _a_budget(self):
        if self.max_steps is None and self.max_epochs is None:
            raise ValueError("set train.max_steps or train.max_epochs (both are null)")
        return self


class Decode(Section):
    beam_size: PositiveInt  # also picks the best weights on validation: a resume must keep it
    batch_size: Annotated[PositiveInt, role("may_change_on_resume")]
    constrained: Annotated[bool, role("may_change_on_resume")]
    report_invalid_rate: Annotated[bool, role("may_change_on_resume")]
    sample_temperatures: Annotated[list[PositiveFloat], role("may_change_on_resume", "test_time_cost")]
    sample_count: Annotated[PositiveInt, role("may_change_on_resume", "test_time_cost")]
    category_depth: Annotated[PositiveInt, role("may_change_on_resume")]


class TokenizerSection(Section):
    """The shared keys; :func:`run_config_model` adds ``tokenizer.<name>`` typed by each registered
    tokenizer's ``Params``."""

    name: str
    seed: Optional[Seed]
    device: Annotated[Optional[Device], role("may_change_on_resume")]
    cache: Annotated[bool, role("may_change_on_resume")]
    cache_dir: Annotated[Optional[str], role("may_change_on_resume")]
    collapse_threshold: Annotated[Probability, role("may_change_on_resume")]
    allow_collapse: Annotated[bool, role("may_change_on_resume", before=False)]
    progress: Annotated[bool, role("may_change_on_resume")]


class BaselineTraining(Section):
    loss: Literal["ce", "bce", "bpr"]
    hidden_size: PositiveInt
    max_seq_len: Optional[PositiveInt]  # null = split.max_history
    epochs: PositiveInt
    patience: PositiveInt  # RecBole's stopping_step
    eval_step: PositiveInt
    train_batch_size: PositiveInt
    eval_batch_size: PositiveInt
    learning_rate: PositiveFloat
    weight_decay: NonNegativeFloat
    valid_metric: str
    tolerance: PositiveFloat
    cache_dataset: bool
    verbose: bool
    recbole: dict[str, Any]


def _partial(model: type[Section], name: str) -> type[Section]:
    """``model`` with every field optional: a section that overrides some of another's values (each
    value, where given, checked as in ``model``: the field's constraints are kept)."""
    fields = {key: (Optional[Annotated[(field.annotation, *field.metadata)]] if field.metadata
                    else Optional[field.annotation], None)
              for key, field in model.model_fields.items()}
    return create_model(name, __base__=Section, **fields)


# LETTER's collaborative signal is the item table of this method (DESIGN.md); baseline.cf_embed.<it>
# overrides some of its baseline.<it> values
CF_MODEL = "sasrec"


class CFEmbedSection(_partial(BaselineTraining, "_CFTraining")):
    """The CF model's training; :func:`run_config_model` adds ``cf_embed.<CF_MODEL>`` (its ``Params``,
    every key optional)."""


class Baseline(BaselineTraining):
    """The training shared by the RecBole models; :func:`run_config_model` adds ``baseline.<name>``
    typed by the ``Params`` of each method whose registration lists the ``baseline`` section."""

    cf_embed: CFEmbedSection


class RunConfig(Section):
    """A run's resolved config: what :func:`bench.config.resolve_config` returns and the code reads.
    :meth:`to_record` is the plain form the record stores and identities hash (the values as the
    layers gave them, ``_layers`` included)."""

    _record: dict = PrivateAttr(default_factory=dict)
    method: str
    dataset: str
    data_dir: Annotated[Optional[str], role("path", "not_a_setting", "may_change_on_resume")]
    seed: Annotated[Seed, role("not_a_setting")]
    profile: Annotated[Optional[str], role("may_change_on_resume")]
    device: Annotated[Device, role("may_change_on_resume")]
    results_dir: Annotated[str, role("path", "not_a_setting", "may_change_on_resume")]
    # null = work/ beside results_dir (resolved before validation)
    work_dir: Annotated[Optional[str], role("path", "not_a_setting", "may_change_on_resume")]
    data: Data
    split: Split
    eval: Annotated[Eval, role("may_change_on_resume", "at_test")]
    # where progress is logged: like the paths, not what runs
    track: Annotated[Track, role("path", "not_a_setting", "may_change_on_resume")]
    coldstart: ColdStartSection
    embed: Embed
    model: Model
    train: Train
    decode: Annotated[Decode, role("at_test")]
    tokenizer: TokenizerSection
    baseline: Baseline


    @classmethod
    def from_record(cls, config: dict) -> "RunConfig":
        """The typed config of a resolved plain ``config`` (ConfigError-free input: resolve_config's)."""
        typed = cls.model_validate({k: v for k, v in config.items() if not str(k).startswith("_")})
        typed._record = copy.deepcopy(config)
        return typed

    def to_record(self) -> dict:
        """The resolved config as plain data (a copy): the run record's ``config``, hashed by identities."""
        return copy.deepcopy(self._record)

    def plain(self, dotted: str) -> Any:
        """The value at ``dotted`` as the layers gave it (a copy; None where absent): what goes into
        a cache key or a file, where ``5`` and the typed ``5.0`` must stay one value as they were."""
        return copy.deepcopy(get_path(self._record, dotted))

    @property
    def layers(self) -> list[str]:
        """Where the values came from: defaults, profile, files, --set (in order)."""
        return list(self._record.get("_layers", []))


_COMPOSED: dict[tuple, type[RunConfig]] = {}


def plugin_params() -> tuple[dict[str, type[Section]], dict[str, type[Section]]]:
    """(tokenizer name -> its ``Params``, method name -> its ``Params``) of every registered plug-in
    that has a section: each tokenizer, and each method whose registration lists ``baseline``. Loads
    those classes through the registries (at check time, never at import)."""
    tokenizers = {name: TOKENIZERS.get(name).Params for name in TOKENIZERS}
    methods = {name: METHODS.get(name).Params for name in METHODS
               if "baseline" in METHODS.info(name).extras.get("sections", ())}
    for kind, params in (("tokenizer", tokenizers), ("method", methods)):
        for name, model in params.items():
            if not (isinstance(model, type) and issubclass(model, Section)):
                raise TypeError(f"{kind} {name!r} declares no `Params` (a bench.config_schema.Section subclass)")
    return tokenizers, methods


def run_config_model() -> type[RunConfig]:
    """:class:`RunConfig` with every plug-in's own section typed by the plug-in's ``Params``, so a
    tokenizer's or a baseline's keys are checked like the core ones (composed once per registry state)."""
    tokenizers, methods = plugin_params()
    key = (tuple(tokenizers.items()), tuple(methods.items()))
    if key not in _COMPOSED:
        tokenizer = create_model("TokenizerSection", __base__=TokenizerSection,
                                 **{name: (model, ...) for name, model in tokenizers.items()})
        cf_fields = ({CF_MODEL: (Optional[_partial(methods[CF_MODEL], f"_CF{CF_MODEL}")], None)}
                     if CF_MODEL in methods else {})
        cf_embed = create_model("CFEmbedSection", __base__=CFEmbedSection, **cf_fields)
        baseline = create_model("Baseline", __base__=Baseline, cf_embed=(cf_embed, ...),
                                **{name: (model, ...) for name, model in methods.items()})
        _COMPOSED[key] = create_model("RunConfig", __base__=RunConfig, tokenizer=(tokenizer, ...),
                                      baseline=(baseline, ...))
    return _COMPOSED[key]


def keys_with_role(name: str, model: type[BaseModel] | None = None, prefix: str = "") -> tuple[str, ...]:
    """The dotted config keys (or whole sections) the schema gives role ``name``, in schema order."""
    if name not in ROLES:
        raise ValueError(f"unknown key role {name!r}; known: {sorted(ROLES)}")
    keys: list[str] = []
    for key, extra in _fields(model or RunConfig, prefix):
        # a section with the role stands for its keys
        if name in extra.get("roles", ()) and not any(key.startswith(f"{found}.") for found in keys):
            keys.append(key)
    return tuple(keys)


def _fields(model: type[BaseModel], prefix: str = ""):
    """(dotted key, its schema extra) of every field of ``model``, sections recursed into."""
    for key, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        yield prefix + key, extra
        if isinstance(field.annotation, type) and issubclass(field.annotation, Section):
            yield from _fields(field.annotation, f"{prefix}{key}.")


def keys_added_later() -> dict[str, Any]:
    """Dotted key -> the value that behaves as before the key existed (``role(before=...)``)."""
    return {key: extra["before"] for key, extra in _fields(RunConfig) if "before" in extra}


def method_budget_keys(method: str) -> tuple[str, ...]:
    """The keys with role ``budget`` in the config sections ``method``'s registration says it reads
    (none for an unregistered name)."""
    if method not in METHODS:
        return ()
    sections = METHODS.info(method).extras.get("sections", ())
    return tuple(key for key in keys_with_role("budget") if key.split(".")[0] in sections)


def describe_errors(err: ValidationError, prefix: str = "", model: type[BaseModel] | None = None) -> list[str]:
    """One line per problem in ``err``, each with its dotted location (under ``prefix``); an unknown
    top-level key of ``model`` lists the known ones."""
    lines = []
    for error in err.errors(include_url=False):
        line = _describe(error, prefix)
        if model is not None and error["type"] == "extra_forbidden" and len(error["loc"]) == 1:
            line += f" (known: {', '.join(model.model_fields)})"
        lines.append(line)
    return lines


def _describe(error: dict, prefix: str = "") -> str:
    where = prefix + ".".join(str(part) for part in error["loc"]) or "config"
    value = error.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown config key"
    if error["type"] in ("model_type", "dict_type"):
        message = "must be a section (a mapping of keys), not a single value"
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return f"{where}: {message}{shown}"
