"""Sweep specs: a base run config plus a search space over dotted config keys.

A spec is a YAML file (see ``sweeps/smoke.yaml`` and the module docstring of ``sweeps.launcher``)::

    name: layers                      # default: the file name
    profile: cpu                      # compute profile of every trial
    tokenizer: rqvae                  # => method: tiger, tokenizer.name: rqvae  (or `method: sasrec`)
    dataset: beauty
    config: [extra.yaml]              # optional config files, relative to the spec
    set:                              # fixed values, dotted keys
      split.max_history: 20
    seeds: [2024, 2025, 2026]         # a dimension over `seed`
    space:                            # searched dimensions, dotted keys
      model.dropout: [0.1, 0.2]                       # a list: grid values (optuna: a categorical choice)
      tokenizer.letter.alpha: {loguniform: [1.0e-3, 1.0e-1]}
      layers:                                          # one dimension that sets several keys together
        keys: [model.encoder_layers, model.decoder_layers]
        values: [3, 4, 5]
      run:                                             # cases: each value sets its own keys
        cases: [{method: pop}, {method: tiger, tokenizer.name: rqvae}]     # (or {name: {key: value}})
    search: grid                      # grid | optuna   (CLI --search)
    num_samples: 1                    # grid: draws per grid point of the distributions; optuna: trials
    metric: valid_ndcg@10             # a valid_ metric; test_ only with allow_test_metric: true
    mode: max
    scheduler: none                   # asha | none   (CLI --scheduler)
    asha: {grace_period: 1, reduction_factor: 3, max_t: 10000}
    resources: {cpu: 1, gpu: 0}       # per trial
    max_failures: 0                   # retries per failing trial

Dimension forms: a list or ``{grid: [...]}`` (enumerated by the grid search, a categorical choice
for Optuna), ``{choice: [...]}`` (sampled), ``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}``,
``{randint: [lo, hi]}`` (``hi`` excluded). Under the grid search every distribution is drawn
``num_samples`` times per grid point with a seeded generator, so re-running a spec gives the same
trials (and skips the finished ones).
"""
from __future__ import annotations

import copy
import itertools
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.config import _check_known_keys, ConfigError, deep_merge, default_layer, get_path, load_yaml_text, parse_assignment, resolve_config, yaml_problem
from bench.config_schema import RunConfig
# PATH_KEYS: where files go, not what runs; left out of a trial's identity, so a trial done under
# another results folder or data path still counts as done
from bench.identity import PATH_KEYS, stable_hash, what_ran
from bench.plugins import METHODS, TOKENIZED_METHOD

DEFAULT_CONNECT_TIMEOUT_S = 30.0  # --connect-timeout: how long joining a cluster (--address) may take

SPEC_DIR = Path(__file__).parent
SEARCHES = ("grid", "optuna")
SCHEDULERS = ("none", "asha")
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")
SPEC_KEYS = {
    "name", "description", "profile", "method", "tokenizer", "dataset", "data_dir", "config", "set",
    "seeds", "space", "search", "num_samples", "metric", "mode", "scheduler", "asha", "resources",
    "max_failures", "search_seed", "results_dir", "allow_test_metric", "initial_points", "default",
    "budgets", "minutes_per_trial",
}
# what a budget (``budgets: {name: {...}}``, chosen with --budget) may change: a reduced grid that fits
BUDGET_KEYS = {"description", "profile", "seeds", "space", "set", "num_samples", "minutes_per_trial", "default"}


@dataclass
class Dimension:
    """One searched dimension: a name, the config keys it sets, and its values or distribution."""

    name: str
    keys: list[str]
    kind: str  # "grid" or one of DISTRIBUTIONS
    values: list = field(default_factory=list)  # grid / choice values
    bounds: tuple = ()  # (lo, hi) of uniform / loguniform / randint
    cases: dict | None = None  # a `cases` dimension: value (case name) -> {dotted key: value}

    def sample(self, rng: random.Random):
        if self.kind in ("grid", "choice"):
            return rng.choice(self.values)
        lo, hi = self.bounds
        if self.kind == "uniform":
            return rng.uniform(lo, hi)
        if self.kind == "loguniform":
            return math.exp(rng.uniform(math.log(lo), math.log(hi)))
        return rng.randrange(int(lo), int(hi))

    def representative(self):
        """A value used to check a spec without running it."""
        return self.values[0] if self.kind in ("grid", "choice") else self.bounds[0]

    def ray_domain(self, search: str):
        from ray import tune

        if self.kind == "grid":
            return tune.choice(self.values) if search == "optuna" else tune.grid_search(self.values)
        if self.kind == "choice":
            return tune.choice(self.values)
        lo, hi = self.bounds
        return {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}[self.kind](lo, hi)

    def describe(self) -> str:
        keys = f"{self.name} (cases)" if self.cases else self.keys[0] if len(self.keys) == 1 else "+".join(self.keys)
        what = self.values if self.kind == "grid" else f"{self.kind}{list(self.values or self.bounds)}"
        return f"{keys}: {what}"


@dataclass
class SweepSpec:
    name: str
    path: Path | None
    profile: str | None = None
    config_files: list[str] = field(default_factory=list)
    fixed: dict = field(default_factory=dict)  # nested overrides every trial shares
    dimensions: list[Dimension] = field(default_factory=list)
    search: str = "grid"
    num_samples: int | None = None
    metric: str = "valid_ndcg@10"
    mode: str = "max"
    allow_test_metric: bool = False  # diagnostics only: selecting on a test_ metric tunes on test
    initial_points: list = field(default_factory=list)  # optuna: points tried first ({dimension: value})
    default: dict = field(default_factory=dict)  # the reference setting ablation tables compare with
    budgets: dict = field(default_factory=dict)  # name -> a reduced version of the spec (--budget)
    budget: str | None = None  # the budget this spec was loaded with
    minutes_per_trial: float | None = None  # a stated estimate, used by --dry-run without timed runs
    scheduler: str = "none"
    asha: dict = field(default_factory=dict)
    # per trial; gpu "auto": 1 where the cluster has a GPU and the trial's device is not cpu (ray_runner)
    resources: dict = field(default_factory=lambda: {"cpu": 1, "gpu": "auto"})
    max_failures: int = 0
    search_seed: int = 0
    description: str = ""

    # ------------------------------------------------------------------ trial configs
    def base(self) -> dict:
        """What every trial shares, as plain data (it travels to Ray workers in the trial config)."""
        return {
            "profile": self.profile,
            "config_files": list(self.config_files),
            "fixed": copy.deepcopy(self.fixed),
            "dims": {d.name: {"cases": copy.deepcopy(d.cases)} if d.cases else list(d.keys) for d in self.dimensions},
        }

    def grid_points(self, num_samples: int | None = None) -> list[dict]:
        """Every trial of the grid search: the product of the grid dimensions, each point with
        ``num_samples`` seeded draws of the distribution dimensions; duplicates dropped."""
        n = max(1, int(num_samples or self.num_samples or 1))
        seeds = [d for d in self.dimensions if d.keys == ["seed"] and d.kind == "grid"]
        grid = [d for d in self.dimensions if d.kind == "grid" and d not in seeds]
        sampled = [d for d in self.dimensions if d.kind != "grid"]
        if not sampled:
            n = 1  # repeating an identical config gives no new information: use seeds for that
        rng = random.Random(self.search_seed)
        points, seen = [], set()
        for combo in itertools.product(*(d.values for d in grid)):
            for _ in range(n):
                # one draw per configuration, shared by its seeds (so seeds replicate one config)
                drawn = {d.name: d.sample(rng) for d in sampled}
                for seed_combo in itertools.product(*(d.values for d in seeds)):
                    point = {d.name: v for d, v in zip(grid, combo)}
                    point.update(drawn)
                    point.update({d.name: v for d, v in zip(seeds, seed_combo)})
                    key = point_key(point)
                    if key not in seen:
                        seen.add(key)
                        points.append(point)
        return points

    def representative_point(self) -> dict:
        return {d.name: d.representative() for d in self.dimensions}

    def ray_space(self, search: str) -> dict:
        return {d.name: d.ray_domain(search) for d in self.dimensions}


def point_overrides(dims: dict, point: dict) -> dict:
    """Nested config overrides for one point: each dimension's value set on each of its keys; the
    value of a `cases` dimension (``{"cases": {name: {dotted key: value}}}``) names the case whose
    keys it sets."""
    overrides: dict = {}
    for name, value in point.items():
        keys = dims.get(name, [name])
        pairs = keys["cases"][value].items() if isinstance(keys, dict) else ((key, value) for key in keys)
        for key, item in pairs:
            overrides = deep_merge(overrides, nest(str(key), item))
    return overrides


def point_of(spec: "SweepSpec", config: dict) -> dict | None:
    """The point of ``spec`` whose trial config is ``config`` (None when it is not one of the spec's):
    how a sweep recognises the trials it already ran, e.g. to tell Optuna their results."""
    point = {}
    for dim in spec.dimensions:
        if dim.cases:
            names = [name for name, case in dim.cases.items()
                     if all(get_path(config, key) == value for key, value in case.items())]
            if len(names) != 1:
                return None
            point[dim.name] = names[0]
        else:
            values = {repr(get_path(config, key)) for key in dim.keys}
            if len(values) != 1:
                return None
            point[dim.name] = get_path(config, dim.keys[0])
    return point


def case_name(case: dict) -> str:
    """A readable name for an unnamed case: ``method=sasrec,baseline.loss=bce``."""
    return ",".join(f"{key}={value}" for key, value in case.items())


def nest(dotted: str, value: Any) -> dict:
    node: Any = value
    for part in reversed(dotted.split(".")):
        node = {part: node}
    return node


def resolve_trial_config(base: dict, point: dict) -> RunConfig:
    """The run config of one trial: profile < config files < fixed values < the point's values."""
    overrides = deep_merge(base["fixed"], point_overrides(base["dims"], point))
    return resolve_config(base["profile"], base["config_files"], (), overrides)


def trial_key(config: RunConfig | dict, components: dict | None = None) -> str:
    """A trial's identity: the resolved config (path keys and ``train.resume_from`` left out) and the versions of
    the code that runs it (``components``; for a resolved config, by default what this code's method
    declares; a stored record's plain config comes with the record's). A record made by another
    component version is a different trial: a sweep runs it again."""
    if isinstance(config, RunConfig):
        if components is None:
            components = METHODS.get(config.method).components(config)
        config = config.to_record()
    elif components is None:
        raise TypeError("the trial key of a stored (plain) config needs the components that ran it")
    return stable_hash({"config": what_ran(config, PATH_KEYS), "components": components}, 10)


def record_trial_key(record: dict) -> str | None:
    """The trial key of a stored record (None for a record without config)."""
    if not isinstance(record.get("config"), dict):
        return None
    return trial_key(record["config"], record.get("components") or {"unknown": "legacy record"})


# ---------------------------------------------------------------------- loading
def _dimension(name: str, raw: Any, where: str) -> Dimension:
    if isinstance(raw, dict) and set(raw) == {"cases"}:
        cases = raw["cases"]
        if isinstance(cases, list) and all(isinstance(c, dict) and c for c in cases):
            cases = {case_name(c): dict(c) for c in cases}
        if not isinstance(cases, dict) or not cases or not all(isinstance(c, dict) and c for c in cases.values()):
            raise ConfigError(f"{where}: dimension {name!r}: cases must be a non-empty list of mappings "
                              "(dotted key: value), or a mapping of case names to such mappings")
        return Dimension(name, [], "grid", values=list(cases), cases={str(k): dict(v) for k, v in cases.items()})
    keys = [name]
    if isinstance(raw, dict) and "keys" in raw:
        keys = raw["keys"]
        if isinstance(keys, str):
            keys = [keys]
        if not keys or not all(isinstance(k, str) and k for k in keys):
            raise ConfigError(f"{where}: dimension {name!r}: `keys` must be a list of dotted config keys")
        raw = {k: v for k, v in raw.items() if k != "keys"}
        if set(raw) == {"values"}:
            raw = raw["values"]
    if isinstance(raw, list):
        kind, payload = "grid", raw
    elif isinstance(raw, dict) and len(raw) == 1:
        kind, payload = next(iter(raw.items()))
        if kind not in ("grid", *DISTRIBUTIONS):
            raise ConfigError(
                f"{where}: dimension {name!r}: unknown form {kind!r}; use a list, or one of "
                f"grid, {', '.join(DISTRIBUTIONS)}"
            )
    else:
        raise ConfigError(
            f"{where}: dimension {name!r} must be a list of values or a mapping like "
            f"{{uniform: [lo, hi]}}, got {raw!r}"
        )
    if not isinstance(payload, list) or not payload:
        raise ConfigError(f"{where}: dimension {name!r}: {kind} needs a non-empty list")
    if kind in ("grid", "choice"):
        return Dimension(name, list(keys), kind, values=list(payload))
    if len(payload) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in payload):
        raise ConfigError(f"{where}: dimension {name!r}: {kind} needs [low, high] numbers, got {payload!r}")
    lo, hi = payload
    if not lo < hi:
        raise ConfigError(f"{where}: dimension {name!r}: {kind} needs low < high, got {payload!r}")
    if kind == "loguniform" and lo <= 0:
        raise ConfigError(f"{where}: dimension {name!r}: loguniform needs a positive lower bound")
    if kind == "randint" and not (float(lo).is_integer() and float(hi).is_integer()):
        raise ConfigError(f"{where}: dimension {name!r}: randint needs integer bounds")
    return Dimension(name, list(keys), kind, bounds=(lo, hi))


def apply_budget(data: dict, budget: str, where: str) -> dict:
    """The spec's data with budget ``budget``'s entries over it: its space values replace the full
    grid's for the dimensions it names, ``set`` is merged, the rest replaced."""
    budgets = data.get("budgets") or {}
    if budget not in budgets:
        known = ", ".join(sorted(budgets)) or "none"
        raise ConfigError(f"{where}: no budget {budget!r} (this spec's budgets: {known})")
    override = budgets[budget]
    if not isinstance(override, dict) or set(override) - BUDGET_KEYS:
        raise ConfigError(f"{where}: budget {budget!r} may set only {', '.join(sorted(BUDGET_KEYS))}")
    merged = dict(data)
    for key, value in override.items():
        if key == "space":
            unknown = set(value) - set(data.get("space") or {})
            if unknown:
                raise ConfigError(f"{where}: budget {budget!r} names dimensions the spec has not: {sorted(unknown)}")
            merged["space"] = {**(data.get("space") or {}), **value}
        elif key == "set":
            merged["set"] = {**(data.get("set") or {}), **value}
        else:
            merged[key] = value
    return merged


def parse_spec(data: Any, path: Path | None = None, name: str | None = None, budget: str | None = None) -> SweepSpec:
    where = str(path) if path else "sweep spec"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a sweep spec must be a mapping")
    if budget:
        data = apply_budget(data, budget, where)
    unknown = set(data) - SPEC_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown spec entries {sorted(unknown)}; valid: {', '.join(sorted(SPEC_KEYS))}")
    fixed: dict = {}
    if data.get("method"):
        fixed["method"] = data["method"]
    if data.get("tokenizer"):
        if data.get("method") not in (None, TOKENIZED_METHOD):
            raise ConfigError(f"{where}: `tokenizer` runs the generative model (method {TOKENIZED_METHOD}), "
                              f"not {data['method']!r}")
        fixed["method"] = TOKENIZED_METHOD
        fixed["tokenizer"] = {"name": data["tokenizer"]}
    if data.get("dataset"):
        fixed["dataset"] = data["dataset"]
    if data.get("data_dir"):
        fixed["data_dir"] = str(data["data_dir"])
    if data.get("results_dir"):
        fixed["results_dir"] = str(data["results_dir"])
    sets = data.get("set") or {}
    if isinstance(sets, list):  # ["key=value", ...] like --set

        for text in sets:
            fixed = deep_merge(fixed, parse_assignment(str(text)))
    elif isinstance(sets, dict):
        for key, value in sets.items():
            fixed = deep_merge(fixed, nest(str(key), value))
    else:
        raise ConfigError(f"{where}: `set` must map dotted keys to values")

    space = data.get("space") or {}
    if not isinstance(space, dict):
        raise ConfigError(f"{where}: `space` must map dotted keys to values or distributions")
    dimensions = [_dimension(str(k), v, where) for k, v in space.items()]
    if data.get("seeds") is not None:
        seeds = data["seeds"]
        if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
            raise ConfigError(f"{where}: `seeds` must be a non-empty list of integers")
        if any("seed" in d.keys for d in dimensions):
            raise ConfigError(f"{where}: give the seeds either in `seeds` or in `space`, not both")
        dimensions.append(Dimension("seed", ["seed"], "grid", values=list(seeds)))
    names = [d.name for d in dimensions]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: dimension names must be unique: {names}")

    base_dir = path.parent if path else Path.cwd()
    config_files = data.get("config") or []
    if isinstance(config_files, str):
        config_files = [config_files]
    config_files = [str((base_dir / f).resolve()) for f in config_files]

    spec = SweepSpec(
        name=str(data.get("name") or name or (path.stem if path else "sweep")),
        path=path,
        profile=data.get("profile"),
        config_files=config_files,
        fixed=fixed,
        dimensions=dimensions,
        search=str(data.get("search", "grid")),
        num_samples=data.get("num_samples"),
        metric=str(data.get("metric", "valid_ndcg@10")),
        allow_test_metric=bool(data.get("allow_test_metric", False)),
        initial_points=_initial_points(data.get("initial_points"), dimensions, where),
        default=_default_point(data.get("default"), dimensions, where),
        budgets=dict(data.get("budgets") or {}),
        budget=budget,
        minutes_per_trial=float(data["minutes_per_trial"]) if data.get("minutes_per_trial") is not None else None,
        mode=str(data.get("mode", "max")),
        scheduler=str(data.get("scheduler", "none")),
        asha=dict(data.get("asha") or {}),
        resources=_resources(data.get("resources"), where),
        max_failures=int(data.get("max_failures", 0)),
        search_seed=int(data.get("search_seed", 0)),
        description=str(data.get("description", "")),
    )
    check_choices(spec, where)
    check_config_keys(spec, where)
    return spec


def _resources(raw: Any, where: str) -> dict:
    """Per-trial Ray resources: ``cpu`` (default 1), ``gpu`` (a number, or ``auto``: the default) and
    custom Ray resources (numbers)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: `resources` must map resource names to amounts, e.g. {{cpu: 1, gpu: auto}}")
    resources = {"cpu": 1, "gpu": "auto", **raw}
    for name, amount in resources.items():
        if name == "gpu" and amount == "auto":
            continue
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0 or not math.isfinite(amount):
            allowed = "a number >= 0 or auto" if name == "gpu" else "a number >= 0"
            raise ConfigError(f"{where}: resources.{name} must be {allowed}, got {amount!r}")
    return resources


def check_config_keys(spec: SweepSpec, where: str) -> None:
    """ConfigError naming ``where`` (the spec file) for a key of the spec's ``set``, ``space`` or cases
    that no config declares, before the trials are resolved (where it would read as the command line's)."""
    defaults = default_layer()
    _check_known_keys(defaults, spec.fixed, "", f"{where}: set")
    for dim in spec.dimensions:
        if dim.cases:
            for case, values in dim.cases.items():
                for key, value in values.items():
                    _check_known_keys(defaults, nest(str(key), value), "",
                                      f"{where}: space {dim.name!r}, case {case!r}")
            continue
        source = f"{where}: space" if dim.keys == [dim.name] else f"{where}: space {dim.name!r}"
        for value in (dim.values if dim.kind in ("grid", "choice") else dim.bounds[:1]):
            for key in dim.keys:
                _check_known_keys(defaults, nest(key, value), "", source)


def _initial_points(raw: Any, dimensions: list[Dimension], where: str) -> list[dict]:
    """Optuna's first trials: each a value for every searched dimension (a choice among its values)."""
    if raw is None:
        return []
    names = {d.name: d for d in dimensions}
    if not isinstance(raw, list) or not all(isinstance(p, dict) for p in raw):
        raise ConfigError(f"{where}: initial_points must be a list of mappings (dimension: value)")
    for point in raw:
        if set(point) != set(names):
            raise ConfigError(f"{where}: an initial point must give every dimension ({', '.join(sorted(names))}), "
                              f"got {sorted(point)}")
        for name, value in point.items():
            dim = names[name]
            if dim.kind in ("grid", "choice") and value not in dim.values:
                raise ConfigError(f"{where}: initial point {name}={value!r} is not one of {dim.values}")
            if dim.kind not in ("grid", "choice") and not dim.bounds[0] <= value <= dim.bounds[1]:
                raise ConfigError(f"{where}: initial point {name}={value!r} is outside {list(dim.bounds)}")
    return [dict(p) for p in raw]


def _default_point(raw: Any, dimensions: list[Dimension], where: str) -> dict:
    """The reference setting: a value for each searched dimension but the seed."""
    if raw is None:
        return {}
    names = {d.name: d for d in dimensions if d.keys != ["seed"]}
    if not isinstance(raw, dict) or set(raw) != set(names):
        raise ConfigError(f"{where}: default must give a value for every dimension ({', '.join(sorted(names))})")
    for name, value in raw.items():
        dim = names[name]
        if dim.kind in ("grid", "choice") and value not in dim.values:
            raise ConfigError(f"{where}: default {name}={value!r} is not one of {dim.values}")
    return dict(raw)


def check_choices(spec: SweepSpec, where: str = "sweep spec") -> None:
    if spec.search not in SEARCHES:
        raise ConfigError(f"{where}: search must be one of {', '.join(SEARCHES)}, got {spec.search!r}")
    if spec.scheduler not in SCHEDULERS:
        raise ConfigError(f"{where}: scheduler must be one of {', '.join(SCHEDULERS)}, got {spec.scheduler!r}")
    if spec.mode not in ("max", "min"):
        raise ConfigError(f"{where}: mode must be max or min, got {spec.mode!r}")
    if spec.num_samples is not None and int(spec.num_samples) < 1:
        raise ConfigError(f"{where}: num_samples must be at least 1")
    if spec.max_failures < 0:
        raise ConfigError(f"{where}: max_failures must be 0 or more")


def check_metric(spec: SweepSpec, where: str = "sweep spec") -> None:
    """Sweeps select on validation metrics; a test_ metric only with ``allow_test_metric``."""
    if not spec.metric.startswith("valid_") and not spec.allow_test_metric:
        raise ConfigError(
            f"{where}: metric {spec.metric!r} is not a validation metric; sweeps select on valid_ metrics "
            "(e.g. valid_ndcg@10). Selecting on test tunes on the test set: for diagnostics only, set "
            "allow_test_metric: true in the spec (or --allow-test-metric), and every record says so"
        )


def point_key(point: dict) -> str:
    """One trial's setting (its seed included) as a hashable key, whatever the order of its entries."""
    return repr(sorted(point.items()))


def load_spec(path: str | Path, budget: str | None = None) -> SweepSpec:
    """A spec from a YAML file (with its budget ``budget`` applied); a bare name (``smoke``) is
    looked up among the shipped specs."""
    candidate = Path(path)
    if not candidate.is_file():
        shipped = SPEC_DIR / f"{candidate.name}.yaml"
        if candidate.suffix == "" and shipped.is_file():
            candidate = shipped
        else:
            known = ", ".join(sorted(p.stem for p in SPEC_DIR.glob("*.yaml")))
            raise ConfigError(f"sweep spec {str(path)!r} not found (shipped specs: {known})")
    try:
        data = load_yaml_text(candidate.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{candidate}: not valid YAML: {yaml_problem(err)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{candidate}: not a YAML text file (not UTF-8 text)") from None
    return parse_spec(data, candidate.resolve(), budget=budget)


def shipped_specs() -> list[Path]:
    return sorted(SPEC_DIR.glob("*.yaml"))
