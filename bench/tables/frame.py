"""Run records as a pandas frame, and which runs a table may show: filters, one profile per dataset,
one code identity per configuration, the best configuration per row (on validation).

Each selection step returns the runs it keeps and, per run it leaves out, one short reason (what
`bench select` writes into the selection file)."""
from __future__ import annotations

import json
import math
from typing import Iterable

import numpy as np
import pandas as pd

from bench.config import flatten, profile_value
from bench.config_schema import keys_with_role
from bench.identity import PATH_KEYS, code_identity
from bench.identity import config_identity as _config_identity
from bench.records import record_budget, record_machine, record_max_history
from bench.tables.names import (
    SELECT_METRIC, budget_keys, dataset_name, format_value, is_generative, section_owners,
)
from bench.tables.significance import MIN_SEEDS, competing
from bench.plugins import METHODS, TOKENIZERS


def _get(config, dotted: str):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def config_identity(config: dict | None, drop: Iterable[str] = ("seed", *PATH_KEYS)) -> str:
    """A hash of what ran, seeds and paths left out: runs sharing it are seeds of one configuration
    ("" for a record without a config)."""
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
        if parts[0] == TOKENIZERS.section and parts[1] in TOKENIZERS:
            return _get(config, f"{TOKENIZERS.section}.name") == parts[1]
        if parts[0] == "baseline" and parts[1] in METHODS:
            return method == parts[1]
    return True


def records_frame(records, split: str = "test", params: Iterable[str] = (), profile_budget: bool = False) -> pd.DataFrame:
    """One row per completed run: dataset, label (column ``method``), seed and the ``split`` metrics,
    plus ``method_key``, ``tokenizer``, ``fingerprint``, ``config_key``, ``machine``, ``sid_sha`` (the
    semantic IDs' sha), validation metrics (``valid:<metric>``, for model selection), ``ranks``
    (per-user test ranks) and ``param:<key>``. Reads the records only; ``profile_budget`` adds
    ``at_profile_budget``, which reads today's profile files (for selecting runs, never for building
    a table from a selection)."""
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
        row["components"] = record.get("components") or {}
        row["commit"] = git.get("commit")
        row["dirty"] = git.get("dirty")
        row["budget"] = record_budget(record)
        row["machine"] = record_machine(record)
        if profile_budget:
            row["at_profile_budget"] = at_profile_budget(config, method_key, row["profile"], row["budget"])
        row["sid_sha"] = semantic_ids_sha(record)
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


def semantic_ids_sha(record: dict) -> str | None:
    """The sha of the semantic IDs a generative run used (``method_info.semantic_ids.sha``); None
    for a method without them."""
    ids = (record.get("method_info") or {}).get("semantic_ids")
    sha = ids.get("sha") if isinstance(ids, dict) else None
    return sha if isinstance(sha, str) and sha else None


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


def profile_budget(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Runs of equal budgets: where a method on a dataset has runs at its profile's current training
    budget (column ``at_profile_budget``), keep those and give the others (an earlier definition of
    the profile, a clock-stopped run, a --set that changed the budget) a reason."""
    if frame.empty or "at_profile_budget" not in frame.columns:
        return frame, {}
    keep, reasons = [], {}
    for _, group in frame.groupby(["dataset", "method"], sort=False, dropna=False):
        at = group["at_profile_budget"].map(lambda v: v is True)
        if not at.any() or at.all():
            keep.append(group)
            continue
        kept, dropped = group[at], group[~at]
        keep.append(kept)
        first = kept.iloc[0]
        setting = ", ".join(f"{key}={profile_value(first['profile'], key)}" for key in budget_keys(first["method_key"]))
        for run, stopped in zip(dropped["run_id"], dropped["budget"]):
            why = "stopped by the clock" if (stopped or {}).get("time_limit_hit") else f"not {setting}"
            reasons[run] = f"other budget than profile {first['profile']}'s today ({why})"
    return (pd.concat(keep) if keep else frame.iloc[0:0]), reasons


def _hashable(value):
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


# keys that say where a run came from or wrote to, not what it computed
_NOT_A_SETTING = keys_with_role("not_a_setting")


def flat_config(config: dict) -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists as tuples), bookkeeping, seed and path keys left out."""
    return {key: _hashable(value) for key, value in flatten(config, _NOT_A_SETTING).items()}


_AT_TEST = keys_with_role("at_test")  # sections that change how a trained model is decoded and scored


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


def best_configs(frame: pd.DataFrame, keys: list[str], metric: str = SELECT_METRIC
                 ) -> tuple[pd.DataFrame, dict[str, str], dict[tuple, int]]:
    """Within each group of ``keys``, only the runs of the configuration with the best mean
    validation ``metric`` (ties: more runs, then the newest). Where some configurations of a group
    have ``MIN_SEEDS`` seeds, only those compete: a one-seed validation score against a 3-seed mean
    would pick seed luck. Returns the kept runs, a reason per run left out, and per group (the tuple
    of its ``keys`` values) how many configurations it had (all of them: the tuning effort)."""
    if frame.empty or "config_key" not in frame.columns:
        return frame, {}, {}
    column = f"valid:{metric}"
    keep, reasons, counts = [], {}, {}
    for group_key, group in frame.groupby(keys, sort=False, dropna=False):
        group_key = group_key if isinstance(group_key, tuple) else (group_key,)
        counts[group_key] = int(group["config_key"].nunique())
        if counts[group_key] <= 1:
            keep.append(group)
            continue
        scores, seeds = [], {}
        for key, runs in group.groupby("config_key", sort=False):
            score = runs[column].mean() if column in runs.columns else float("nan")
            score = -math.inf if pd.isna(score) else float(score)
            scores.append((score, len(runs), runs["run_id"].max(), key))
            seeds[key] = int(runs["seed"].nunique()) if "seed" in runs.columns else len(runs)
        best = max(competing(scores, lambda entry: seeds[entry[3]]))
        keep.append(group[group["config_key"] == best[3]])
        for score, _, _, key in scores:
            if key != best[3] and seeds[key] < MIN_SEEDS <= seeds[best[3]] and score > best[0]:
                for run in group.loc[group["config_key"] == key, "run_id"]:
                    reasons[run] = (f"better on validation ({metric.upper()} {_score(score)} vs {_score(best[0])}) "
                                    f"but {seeds[key]} seed(s), where configurations with {MIN_SEEDS} compete; "
                                    f"best of {counts[group_key]}")
            elif key != best[3]:
                for run in group.loc[group["config_key"] == key, "run_id"]:
                    reasons[run] = (f"not the best configuration on validation ({metric.upper()} {_score(score)} vs "
                                    f"{_score(best[0])}; best of {counts[group_key]})")
    return (pd.concat(keep) if keep else frame.iloc[0:0]), reasons, counts


def _score(value: float) -> str:
    return "none" if math.isinf(value) else f"{value:.4f}"


def select_best_configs(frame: pd.DataFrame, keys: list[str], metric: str = SELECT_METRIC) -> pd.DataFrame:
    """Within each group of ``keys``, only the runs of the configuration with the best mean
    validation ``metric`` (:func:`best_configs` without its reasons)."""
    return best_configs(frame, keys, metric)[0]


COLD_START = "cold-start protocol (the coldstart table)"
DECODING_STUDY = "decoding study: sampling or a wider beam at test (the decoding tables)"


def standard_protocol(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Runs of the standard protocol only, and a reason per run left out: cold-start runs have their
    own table, and so have decoding studies (TIGER Table 3: sampling at test, a 50-wide test beam),
    whose main metrics are the same model decoded otherwise and must not compete with it."""
    if frame.empty:
        return frame, {}
    reasons = {}
    keep = pd.Series(True, index=frame.index)
    if "coldstart" in frame.columns:
        cold = frame["coldstart"].astype(bool)
        reasons.update(dict.fromkeys(frame.loc[cold, "run_id"], COLD_START))
        keep &= ~cold
    if "decoding_study" in frame.columns:
        study = frame["decoding_study"].astype(bool) & keep
        reasons.update(dict.fromkeys(frame.loc[study, "run_id"], DECODING_STUDY))
        keep &= ~study
    return frame[keep], reasons


def choose_profiles(frame: pd.DataFrame, profile: str | None = None) -> tuple[pd.DataFrame, dict, dict[str, str]]:
    """Only one compute profile per dataset: ``profile`` where given, else the most common profile
    of the dataset's runs (ties: the name first in sort order). Returns the kept runs, dataset ->
    profile, and a reason per run of another profile."""
    if frame.empty or "profile" not in frame.columns:
        return frame, {}, {}
    keep, chosen, reasons = [], {}, {}
    for dataset, part in frame.groupby("dataset", sort=False):
        names = part["profile"].fillna("(none)")
        if profile is not None:
            pick = profile
        else:
            counts = names.value_counts()
            pick = sorted(counts[counts == counts.max()].index)[0]
        for run, name in zip(part.loc[names != pick, "run_id"], names[names != pick]):
            reasons[run] = f"other profile ({name}; the table shows {pick} on {dataset_name(dataset)})"
        kept = part[names == pick]
        if kept.empty:
            continue
        chosen[dataset] = pick
        keep.append(kept)
    frame = pd.concat(keep) if keep else frame.iloc[0:0]
    return frame, chosen, reasons


def latest_code(frame: pd.DataFrame, prefer=None) -> tuple[pd.DataFrame, dict[str, str]]:
    """Seeds of one configuration share one code identity: where a configuration was run by
    different code (component versions, commit, dirty flag), keep the runs of one code identity and
    give the others a reason. Which: the newest, unless ``prefer`` (runs of one code identity, the
    whole frame -> a score) scores another higher, e.g. the code whose runs share the semantic IDs of
    a sweep's other rows (ties under ``prefer``: more runs, then the newest)."""
    if frame.empty or "code_key" not in frame.columns:
        return frame, {}
    keep, reasons = [], {}
    for _, group in frame.groupby(["dataset", "method", "config_key"], sort=False, dropna=False):
        if group["code_key"].nunique(dropna=False) <= 1:
            keep.append(group)
            continue
        by_code = dict(list(group.groupby("code_key", dropna=False)))
        newest_run = {code: runs["run_id"].max() for code, runs in by_code.items()}
        # under ``prefer``: its score, then more runs, then the newest; else the newest
        rank = {code: (prefer(runs, frame), len(runs)) if prefer else (0, 0) for code, runs in by_code.items()}
        chosen = max(newest_run, key=lambda code: (*rank[code], newest_run[code]))
        newest = max(newest_run, key=newest_run.get)
        kept, dropped = group[group["code_key"] == chosen], group[group["code_key"] != chosen]
        keep.append(kept)
        shown = _short_commit(kept.iloc[0]["commit"])
        why = ("that share the other rows' semantic IDs" if chosen != newest else "newest")
        kept_components = kept.iloc[0].get("components")
        for _, run in dropped.iterrows():
            changed = component_changes(run.get("components"), kept_components)
            reasons[run["run_id"]] = (f"other code identity (commit {_short_commit(run['commit'])}{changed}; the "
                                      f"same configuration's {why} runs, commit {shown}, are shown)")
    return (pd.concat(keep) if keep else frame.iloc[0:0]), reasons


def component_changes(old: dict, new: dict) -> str:
    """``, protocol/coldstart 2 -> 3``: the component versions that differ between two runs' code;
    empty where they agree."""
    changes = [f"{name} {old.get(name, '-')} -> {new.get(name, '-')}" for name in sorted(set(old) | set(new))
               if old.get(name) != new.get(name)]
    return (", " + ", ".join(changes)) if changes else ""


def shared_semantic_ids(runs: pd.DataFrame, frame: pd.DataFrame) -> int:
    """How many runs of ``frame``'s other configurations use the semantic IDs one of ``runs`` uses at
    the same seed (a ``latest_code`` preference for tables whose rows must share their IDs)."""
    if "sid_sha" not in frame.columns:
        return 0
    pairs = {(seed, sha) for seed, sha in zip(runs["seed"], runs["sid_sha"]) if isinstance(sha, str)}
    others = frame[frame["config_key"] != runs["config_key"].iloc[0]]
    return sum((seed, sha) in pairs for seed, sha in zip(others["seed"], others["sid_sha"]))


def _short_commit(commit) -> str:
    return str(commit)[:7] if isinstance(commit, str) else "unknown"


def protocol_differences(frame: pd.DataFrame) -> list[str]:
    """Rows that saw another history length than the split's (one protocol otherwise), e.g.
    ``SASRec (CE) on Beauty: 50 vs 20``."""
    if frame.empty or "max_history" not in frame.columns:
        return []
    out = []
    for (dataset, method), runs in frame.groupby(["dataset", "method"], sort=False):
        seen = {int(v) for v in runs["max_history"].dropna()}
        split = {int(v) for v in runs["split_max_history"].dropna()}
        if seen and split and seen != split:
            out.append(f"{method} on {dataset_name(dataset)}: {'/'.join(map(str, sorted(seen)))} vs "
                       f"{'/'.join(map(str, sorted(split)))}")
    return out
