"""Run records as a pandas frame, and which runs a table may show: filters, one profile per dataset,
one code identity per configuration, the best configuration per row (on validation)."""
from __future__ import annotations

import json
import math
from typing import Iterable

import numpy as np
import pandas as pd

from bench.config import flatten, profile_value
from bench.identity import PATH_KEYS, code_identity
from bench.identity import config_identity as _config_identity
from bench.records import record_budget, record_machine, record_max_history
from bench.tables.names import (
    SELECT_METRIC, budget_keys, dataset_name, format_value, is_generative, section_owners, tokenizer_name,
)


def _get(config, dotted: str):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def config_identity(config: dict | None, drop: Iterable[str] = ("seed", *PATH_KEYS)) -> str:
    """A hash of what ran, seeds and paths left out: runs sharing it are seeds of one configuration."""
    if not isinstance(config, dict):
        return ""
    return _config_identity(config, drop)


def param_applies(record: dict, param: str) -> bool:
    """Whether ``param`` means something for this run. Every config holds every section's defaults,
    so a section counts only for the methods whose descriptor lists it (``model.*`` for TIGER,
    ``baseline.*`` for RecBole models), ``tokenizer.<name>.*`` only for runs of that tokenizer and
    ``baseline.<method>.*`` only for that method."""
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    method = record.get("method") or config.get("method")
    parts = param.split(".")
    owners = section_owners(parts[0])
    if owners and method not in owners:
        return False
    if len(parts) > 2:
        from bench.methods import METHODS
        from tokenizers_zoo import TOKENIZERS

        if parts[0] == TOKENIZERS.section and parts[1] in TOKENIZERS:
            return _get(config, f"{TOKENIZERS.section}.name") == parts[1]
        if parts[0] == "baseline" and parts[1] in METHODS:
            return method == parts[1]
    return True


def records_frame(records, split: str = "test", params: Iterable[str] = ()) -> pd.DataFrame:
    """One row per completed run: dataset, label (column ``method``), seed and the ``split`` metrics,
    plus ``method_key``, ``tokenizer``, ``fingerprint``, ``config_key``, ``machine``, validation metrics
    (``valid:<metric>``, for model selection), ``ranks`` (per-user test ranks) and ``param:<key>``."""
    params = list(params)
    rows = []
    for record in records:
        if record.get("status", "completed") != "completed":
            continue
        config = record.get("config") if isinstance(record.get("config"), dict) else {}
        metrics = record.get("metrics", {})
        method_key = record.get("method") or config.get("method") or record.get("label")
        row = {"dataset": record["dataset"], "method": record["label"], "seed": record.get("seed"),
               "run_id": record.get("run_id", ""), **metrics.get(split, {})}
        row["method_key"] = method_key
        row["tokenizer"] = _get(config, "tokenizer.name") if is_generative(method_key) else None
        row["fingerprint"] = (record.get("dataset_fingerprint") or {}).get("sha256")
        row["config_key"] = config_identity(config) if config else f"label:{record['label']}"
        row["profile"] = record.get("profile", config.get("profile"))
        git = record.get("git") or {}
        row["code_key"] = code_identity(record.get("components"), git)
        row["commit"] = git.get("commit")
        row["dirty"] = git.get("dirty")
        row["budget"] = record_budget(record)
        row["machine"] = record_machine(record)
        row["at_profile_budget"] = at_profile_budget(config, method_key, row["profile"], row["budget"])
        row["coldstart"] = bool((config.get("coldstart") or {}).get("enabled", False))
        row["decoding_study"] = bool(_get(config, "decode.sample_temperatures"))
        row["max_history"], row["split_max_history"] = record_max_history(record)
        for name, value in metrics.get("valid", {}).items():
            row[f"valid:{name}"] = value
        ranks = record.get("per_user_test_rank")
        row["ranks"] = np.asarray(ranks, dtype=np.int64) if ranks is not None else None
        for key in params:
            row[f"param:{key}"] = _hashable(_get(config, key)) if param_applies(record, key) else None
        rows.append(row)
    return pd.DataFrame(rows)


def at_profile_budget(config: dict, method_key, profile, budget: dict) -> bool | None:
    """Whether a run got the training budget its profile sets today (the method's ``budget_keys`` at
    the profile's values, and not stopped by the clock); None where the method declares no budget
    keys or the profile no longer exists."""
    keys = budget_keys(method_key)
    if not keys or not config:
        return None
    try:
        today = {key: profile_value(profile, key) for key in keys}
    except KeyError:
        return None
    if budget.get("time_limit_hit"):  # set on every budget, legacy records included (record_budget)
        return False
    return all(_get(config, key) == value for key, value in today.items())


def profile_budget(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Runs of equal budgets: where a method on a dataset has runs at its profile's current training
    budget, keep those and name the others (an earlier definition of the profile, a clock-stopped
    run, a --set that changed the budget) in a note."""
    if frame.empty or "at_profile_budget" not in frame.columns:
        return frame, []
    keep, notes = [], []
    for _, group in frame.groupby(["dataset", "method"], sort=False, dropna=False):
        at = group["at_profile_budget"].map(lambda v: v is True)
        if not at.any() or at.all():
            keep.append(group)
            continue
        kept, dropped = group[at], group[~at]
        keep.append(kept)
        first = kept.iloc[0]
        keys = budget_keys(first["method_key"])
        setting = ", ".join(f"{key}={profile_value(first['profile'], key)}" for key in keys)
        notes.append(f"{first['method']} on {dataset_name(first['dataset'])}: {len(dropped)} run(s) at another training "
                     f"budget than profile {first['profile']}'s ({setting}, not stopped by the clock) left out: "
                     f"{', '.join(sorted(dropped['run_id']))}.")
    return (pd.concat(keep) if keep else frame.iloc[0:0]), notes


def _hashable(value):
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


# keys that say where a run came from or wrote to, not what it computed
_NOT_A_SETTING = ("seed", "train.resume_from", *PATH_KEYS)


def flat_config(config: dict) -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists as tuples), bookkeeping, seed and path keys left out."""
    return {key: _hashable(value) for key, value in flatten(config, _NOT_A_SETTING).items()}


_AT_TEST = ("decode", "eval")  # config sections that change how a trained model is decoded and scored


def config_differences(records: dict[str, dict], limit: int = 3) -> dict[str, str]:
    """``{config key: one record of it}`` -> what sets each configuration apart: the settings (that
    mean something for its method and that every configuration has) where it differs from the most
    common value among them, e.g. ``model.encoder_layers=3``; empty for a configuration that has
    the common value everywhere, and for all when there is only one configuration."""
    from collections import Counter

    flats = {}
    for key, record in records.items():
        config = record.get("config") if isinstance(record.get("config"), dict) else {}
        flats[key] = {p: v for p, v in flat_config(config).items() if param_applies(record, p)}
    if len(flats) < 2:
        return {key: "" for key in flats}
    shared = set.intersection(*(set(flat) for flat in flats.values()))
    common = {p: Counter(repr(flat[p]) for flat in flats.values()).most_common(1)[0][0] for p in shared}
    out = {}
    for key, flat in flats.items():
        # what shapes the model (tokenizer, model, training) first, how it is decoded and evaluated last
        order = sorted(shared, key=lambda p: (p.split(".")[0] in _AT_TEST, p))
        parts = [f"{p}={format_value(flat[p])}" for p in order if repr(flat[p]) != common[p]]
        more = f" (+{len(parts) - limit} more)" if len(parts) > limit else ""
        out[key] = ", ".join(parts[:limit]) + more
    return out


def filter_records(records, datasets=None, where: dict | None = None) -> list[dict]:
    """Records of these datasets whose config has these values (``where``: dotted key -> value)."""
    kept = []
    for record in records:
        if datasets and record.get("dataset") not in datasets:
            continue
        config = record.get("config") or {}
        if where and not all(_same(_get(config, key), value) for key, value in where.items()):
            continue
        kept.append(record)
    return kept


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a == b or str(a) == str(b)


def select_best_configs(frame: pd.DataFrame, keys: list[str], metric: str = SELECT_METRIC) -> pd.DataFrame:
    """Within each group of ``keys``, only the runs of the configuration with the best mean
    validation ``metric`` (ties: more runs, then the newest)."""
    if frame.empty or "config_key" not in frame.columns:
        return frame
    column = f"valid:{metric}"
    keep = []
    for _, group in frame.groupby(keys, sort=False, dropna=False):
        if group["config_key"].nunique() <= 1:
            keep.append(group)
            continue
        scores = []
        for key, runs in group.groupby("config_key", sort=False):
            score = runs[column].mean() if column in runs.columns else float("nan")
            score = -math.inf if pd.isna(score) else float(score)
            scores.append((score, len(runs), runs["run_id"].max(), key))
        best = max(scores)[3]
        keep.append(group[group["config_key"] == best])
    return pd.concat(keep) if keep else frame.iloc[0:0]


def standard_protocol(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Runs of the standard protocol only, and a note on what was left out: cold-start runs have
    their own table, and so have decoding studies (TIGER Table 3: sampling at test, a 50-wide test
    beam), whose main metrics are the same model decoded otherwise and must not compete with it."""
    if frame.empty:
        return frame, []
    notes = []
    keep = pd.Series(True, index=frame.index)
    if "coldstart" in frame.columns:
        keep &= ~frame["coldstart"].astype(bool)
    if "decoding_study" in frame.columns:
        study = frame["decoding_study"].astype(bool) & keep
        if study.any():
            notes.append(f"Left out: {int(study.sum())} run(s) of a decoding study (sampling at test, TIGER Table 3; "
                         f"see the decoding-diversity table): {', '.join(sorted(frame.loc[study, 'run_id']))}.")
        keep &= ~frame["decoding_study"].astype(bool)
    return frame[keep], notes


def choose_profiles(frame: pd.DataFrame, profile: str | None = None) -> tuple[pd.DataFrame, dict, list[str]]:
    """Only one compute profile per dataset: ``profile`` where given, else the most common profile
    of the dataset's runs (ties: the name first in sort order). Returns the kept runs, dataset ->
    profile, and a note per dataset whose other-profile runs were left out."""
    if frame.empty or "profile" not in frame.columns:
        return frame, {}, []
    keep, chosen, notes = [], {}, []
    for dataset, part in frame.groupby("dataset", sort=False):
        names = part["profile"].fillna("(none)")
        if profile is not None:
            pick = profile
        else:
            counts = names.value_counts()
            pick = sorted(counts[counts == counts.max()].index)[0]
        kept = part[names == pick]
        if kept.empty:
            continue
        chosen[dataset] = pick
        keep.append(kept)
        left = names[names != pick].value_counts()
        if len(left):
            others = ", ".join(f"{n} of profile {name}" for name, n in sorted(left.items()))
            notes.append(f"{dataset_name(dataset)}: left out {others} (this table shows profile {pick}; "
                         "--profile picks another).")
    frame = pd.concat(keep) if keep else frame.iloc[0:0]
    return frame, chosen, notes


def latest_code(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Seeds of one configuration share one code identity: where a configuration was run by
    different code (component versions, commit, dirty flag), keep the runs of the code of its newest
    run and name the others in a note."""
    if frame.empty or "code_key" not in frame.columns:
        return frame, []
    keep, notes = [], []
    for _, group in frame.groupby(["dataset", "method", "config_key"], sort=False, dropna=False):
        if group["code_key"].nunique(dropna=False) <= 1:
            keep.append(group)
            continue
        newest = group.loc[group["run_id"].idxmax(), "code_key"]
        kept, dropped = group[group["code_key"] == newest], group[group["code_key"] != newest]
        keep.append(kept)
        first = kept.iloc[0]
        notes.append(f"{first['method']} on {dataset_name(first['dataset'])}: {len(dropped)} run(s) of the same "
                     f"configuration made by other code left out (not averaged with commit "
                     f"{str(first['commit'])[:7]}): {', '.join(sorted(dropped['run_id']))}.")
    return (pd.concat(keep) if keep else frame.iloc[0:0]), notes


def _protocol_notes(frame: pd.DataFrame) -> list[str]:
    """A note where a row saw another history length than the split's (one protocol otherwise)."""
    if frame.empty or "max_history" not in frame.columns:
        return []
    notes = []
    for (dataset, method), runs in frame.groupby(["dataset", "method"], sort=False):
        seen = {int(v) for v in runs["max_history"].dropna()}
        split = {int(v) for v in runs["split_max_history"].dropna()}
        if seen and split and seen != split:
            notes.append(f"Protocol: {method} on {dataset_name(dataset)} saw up to {'/'.join(map(str, sorted(seen)))} "
                         f"history items; the split's max_history is {'/'.join(map(str, sorted(split)))}.")
    return notes


def selection_notes(frame: pd.DataFrame, chosen: pd.DataFrame, keys: list[str],
                    metric: str = SELECT_METRIC) -> list[str]:
    """One line per group of ``keys`` with several configurations in ``frame``: which runs the
    table shows (``chosen``, what :func:`select_best_configs` kept), so a reader can find their
    configuration."""
    if frame.empty or "config_key" not in frame.columns:
        return []
    shown = {key: sorted(group["run_id"]) for key, group in chosen.groupby(keys, sort=False, dropna=False)}
    notes = []
    for group_key, group in frame.groupby(keys, sort=False, dropna=False):
        n_configs = group["config_key"].nunique()
        if n_configs <= 1:
            continue
        values = dict(zip(keys, group_key))
        name = " ".join(tokenizer_name(v) for k, v in values.items() if k != "dataset")
        where = f" on {dataset_name(values['dataset'])}" if "dataset" in values else ""
        notes.append(f"{name}{where}: best of {n_configs} configurations by validation {metric.upper()}; "
                     f"shown: {', '.join(shown[group_key])}.")
    return notes
