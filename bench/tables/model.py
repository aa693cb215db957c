"""The table model (cells, rows, tables); choosing the runs of the main, tokenizer and ablation
tables (a :class:`~bench.tables.selection.TableSelection`); and building a table from a selection."""
from __future__ import annotations

import copy
import math
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from bench.errors import UserError
from bench.tables.budget import _count, budget_text
from bench.tables.frame import _hashable, _same, best_configs, choose_profiles, config_identity, latest_code, profile_budget, protocol_differences, records_frame, standard_protocol
from bench.tables.names import (
    IMPROVEMENT_ROW, MAIN_METRICS, SELECT_METRIC, SIGNIFICANCE_MARK, WORSE_MARK, dataset_name, format_value,
    is_generative, method_order, order_datasets, tokenizer_name, value_order,
)
from bench.plugins import TOKENIZERS
from bench.tables.selection import Pick, TableSelection, keys_keep_item_ids, left_out_reasons
from bench.tables.significance import MIN_SEEDS, best_on_validation, compare_rows, competing
from bench.config import default_layer, flatten, get_path, profile_value, resolve_config
from bench.config_schema import keys_with_role
from bench.identity import ADDED_LATER, config_identity, one_number_form, PATH_KEYS

ARCH_KEY = "model.arch"  # the generative model's architecture (recommenders.architectures)

NOT_IN_TABLE = "not a run this table compares"


def rank_marks(values: pd.Series) -> pd.Series:
    """'best' / 'second' / '' per cell of one column (higher is better; ties share a mark; a score
    of 0, e.g. an ID-based model on cold-start users, is never marked)."""
    distinct = [v for v in sorted(values.dropna().unique(), reverse=True) if v != 0]
    marks = pd.Series("", index=values.index)
    if distinct:
        marks[values == distinct[0]] = "best"
    if len(distinct) > 1:
        marks[values == distinct[1]] = "second"
    return marks


@dataclass
class Cell:
    mean: float
    std: float = float("nan")
    n: int = 1
    mark: str = ""  # best | second | ""
    p_value: float | None = None  # Welch's t over seeds against the reference row (raw)
    significant: bool = False  # Holm-adjusted p < alpha
    worse: bool = False  # significant, and worse than the reference
    p_holm: float | None = None
    p_users: float | None = None  # secondary: paired per-user test (test users only; never a mark)


@dataclass
class Row:
    labels: list[str]
    group: str  # baseline | generative | default | tuned | ablation
    cells: dict = field(default_factory=dict)  # (dataset, metric) -> Cell
    runs: dict = field(default_factory=dict)  # dataset -> DataFrame of the runs behind the row
    valid: dict = field(default_factory=dict)  # dataset -> mean validation SELECT_METRIC (for selection)
    budget: dict = field(default_factory=dict)  # dataset -> compact budget text
    code: dict = field(default_factory=dict)  # dataset -> short commit of the runs (+dirty)
    configs: dict = field(default_factory=dict)  # dataset -> configurations the row's choice chose among
    reference: set = field(default_factory=set)  # datasets on which this row is what marks compare with

    def _per_dataset(self, values: dict, datasets: list[str]) -> str:
        texts = {d: str(values[d]) for d in datasets if d in values and str(values[d])}
        if len(set(texts.values())) <= 1:
            return next(iter(texts.values()), "")
        return "; ".join(f"{dataset_name(d)}: {t}" for d, t in texts.items())

    def budget_cell(self, datasets: list[str]) -> str:
        return self._per_dataset(self.budget, datasets)

    def seeds_cell(self, datasets: list[str]) -> str:
        """The seeds (training runs) behind the row: ``3``, or per dataset where they differ."""
        return self._per_dataset({d: len(runs) for d, runs in self.runs.items()}, datasets)

    def configs_cell(self, datasets: list[str]) -> str:
        return self._per_dataset(self.configs, datasets)

    def run_ids(self, dataset: str) -> list[str]:
        runs = self.runs.get(dataset)
        return sorted(runs["run_id"]) if runs is not None else []

    def machines(self, dataset: str) -> str:
        runs = self.runs.get(dataset)
        if runs is None or "machine" not in runs.columns:
            return ""
        return " / ".join(sorted(set(runs["machine"].dropna())))


@dataclass
class Table:
    title: str
    label_columns: list[str]
    datasets: list[str]
    metrics: list[str]
    rows: list[Row]
    summary_rows: list[tuple[str, dict]] = field(default_factory=list)  # (label, (d, m) -> (percent, significant))
    notes: list[str] = field(default_factory=list)
    empty_message: str = "(no completed runs)"
    profiles: dict = field(default_factory=dict)  # dataset -> the compute profile shown
    users_test: str = "wilcoxon"  # the secondary per-user test of the CSV's p_users_<test> column

    @property
    def columns(self) -> list[tuple[str, str]]:
        return [(d, m) for d in self.datasets for m in self.metrics]

    @property
    def show_budget(self) -> bool:
        return any(row.budget_cell(self.datasets) for row in self.rows)

    @property
    def run_ids(self) -> set[str]:
        """The runs the table's rows show."""
        return {run for row in self.rows for runs in row.runs.values() for run in runs["run_id"]}


# ---------------------------------------------------------------------- rows and cells
def fill_row(row: Row, dataset: str, part: pd.DataFrame, metrics) -> None:
    """Cells (mean, sample std, n over the runs), validation score, budget and commit of ``row`` on
    ``dataset`` from its runs ``part``."""
    row.runs[dataset] = part
    select = f"valid:{SELECT_METRIC}"
    if select in part.columns and part[select].notna().any():
        row.valid[dataset] = float(part[select].dropna().astype(float).mean())
    if "budget" in part.columns:
        row.budget[dataset] = budget_text(part["budget"])
    if "commit" in part.columns:
        row.code[dataset] = "/".join(sorted({
            (str(c)[:7] if isinstance(c, str) else "unknown") + ("+dirty" if d else "")
            for c, d in zip(part["commit"], part["dirty"])}))
    for metric in metrics:
        if metric not in part.columns:
            continue
        values = part[metric].dropna().astype(float)
        if values.empty:
            continue
        std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
        row.cells[(dataset, metric)] = Cell(float(values.mean()), std, int(len(values)))


def rows_from_picks(frame: pd.DataFrame, picks: list[Pick], metrics) -> list[Row]:
    """One row per distinct label tuple of ``picks`` (in their order), each dataset's cells from
    exactly the runs its pick names."""
    rows: dict[tuple, Row] = {}
    for pick in picks:
        row = rows.setdefault(tuple(pick.labels), Row(labels=list(pick.labels), group=pick.group))
        fill_row(row, pick.dataset, frame[frame["run_id"].isin(pick.runs)], metrics)
        row.configs[pick.dataset] = pick.configs
        if pick.reference:
            row.reference.add(pick.dataset)
    return list(rows.values())


def _mark_best(rows: list[Row], columns) -> None:
    for column in columns:
        present = [(i, r.cells[column].mean) for i, r in enumerate(rows) if column in r.cells]
        if not present:
            continue
        marks = rank_marks(pd.Series([v for _, v in present]))
        for (i, _), mark in zip(present, marks):
            rows[i].cells[column].mark = mark


def _profile_title(title: str, profiles: dict) -> str:
    names = sorted(set(profiles.values()))
    if not names:
        return title
    if len(names) == 1:
        return f"{title} (profile {names[0]})"
    return f"{title} (profiles: " + ", ".join(f"{dataset_name(d)} {p}" for d, p in profiles.items()) + ")"


# ---------------------------------------------------------------------- choosing runs
def _prepare(records, params=(), profile: str | None = None, equal_budgets: bool = True
             ) -> tuple[pd.DataFrame, dict, dict[str, str]]:
    """The runs a table may use, and a reason per run it may not: the standard protocol, one profile
    per dataset, one code identity per configuration, and (``equal_budgets``) the profile's current
    training budget where a method has runs at it (this reads today's profile files: selection time
    only)."""
    frame = records_frame(list(records), params=params, profile_budget=True)
    frame, protocol = standard_protocol(frame)
    frame, profiles, other_profile = choose_profiles(frame, profile)
    frame, other_code = latest_code(frame)
    frame, other_budget = profile_budget(frame) if equal_budgets else (frame, {})
    return frame, profiles, {**protocol, **other_profile, **other_code, **other_budget}


def _run_ids(records) -> dict[str, str]:
    """Every run id of ``records``, with 'failed run' for the runs that did not complete."""
    return {r.get("run_id"): ("failed run" if r.get("status", "completed") != "completed" else "")
            for r in records if r.get("run_id")}


def _finish_selection(selection: TableSelection, records, reasons: dict[str, str], fallback: str = NOT_IN_TABLE
                      ) -> TableSelection:
    ids = _run_ids(records)
    reasons = {**{run: why for run, why in ids.items() if why}, **reasons}
    selection.left_out = left_out_reasons(ids, selection.run_ids, reasons, fallback)
    selection.profiles = {d: p for d, p in selection.profiles.items() if d in {pick.dataset for pick in selection.picks}}
    return selection


def frame_picks(frame: pd.DataFrame, row_keys: list[str], label_fn, group_fn, configs=None) -> list[tuple[pd.Series, Pick]]:
    """(first run, pick) per (row, dataset) of ``frame``: ``label_fn(key, first)`` labels the row,
    ``group_fn(first)`` its group, ``configs(key, dataset)`` the configurations it was chosen among."""
    out = []
    for key, runs in frame.groupby(row_keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        for dataset in order_datasets(runs["dataset"]):
            part = runs[runs["dataset"] == dataset]
            first = part.iloc[0]
            out.append((first, Pick(labels=label_fn(key, first), dataset=dataset, runs=sorted(part["run_id"]),
                                    configs=int(configs(key, dataset)) if configs else 1, group=group_fn(first))))
    return out


def _valid_score(frame: pd.DataFrame, pick: Pick) -> float:
    column = f"valid:{SELECT_METRIC}"
    if column not in frame.columns:
        return -math.inf
    values = frame.loc[frame["run_id"].isin(pick.runs), column].dropna().astype(float)
    return float(values.mean()) if len(values) else -math.inf


def best_pick(frame: pd.DataFrame, picks: list[Pick]) -> Pick | None:
    """The pick with the best mean validation NDCG@10 (ties: more runs, then the first), among the
    picks with ``MIN_SEEDS`` runs where there are (as :func:`best_on_validation`); None when none has
    a validation value. Never looks at test metrics."""
    scored = [(_valid_score(frame, p), len(p.runs), -i, p) for i, p in enumerate(picks)]
    scored = [s for s in scored if not math.isinf(s[0])]
    return max(competing(scored, lambda s: s[1]), key=lambda s: s[:3])[3] if scored else None


def _group(first) -> str:
    return "generative" if is_generative(first["method_key"]) else "baseline"


def select_main(records, profile: str | None = None, name: str = "main") -> TableSelection:
    """TIGER Table 1's runs: per (dataset, method label) the configuration best on validation; the
    reference row per dataset is the baseline best on validation, and the improvement row compares
    the generative row best on validation with it."""
    records = list(records)
    frame, profiles, reasons = _prepare(records, profile=profile)
    selection = TableSelection(name, "main", "Main results", ["Method"], profiles=profiles)
    if frame.empty:
        return _finish_selection(selection, records, reasons)
    frame, why, counts = best_configs(frame, ["dataset", "method"])
    reasons.update(why)
    picked = frame_picks(frame, ["method"], lambda k, f: [k[0]], _group, lambda k, d: counts[(d, k[0])])
    order = order_datasets(frame["dataset"])
    picked.sort(key=lambda t: (method_order(t[0]["method_key"], t[0]["tokenizer"], t[1].labels[0]),
                               order.index(t[1].dataset)))
    selection.picks = [pick for _, pick in picked]
    improvement = {}
    for dataset in order_datasets(frame["dataset"]):
        base = best_pick(frame, [p for p in selection.picks if p.dataset == dataset and p.group == "baseline"])
        gen = best_pick(frame, [p for p in selection.picks if p.dataset == dataset and p.group == "generative"])
        if base is not None:
            base.reference = True
            if gen is not None:
                improvement[dataset] = {"generative": gen.labels[0], "baseline": base.labels[0]}
    selection.facts = {"improvement": improvement}
    return _finish_selection(selection, records, reasons)


def default_config_key(profile: str | None, method_key: str, dataset: str, tokenizer: str) -> str | None:
    """The configuration identity of the profile's defaults for a generative method with this
    tokenizer on this dataset (what ``bench run --tokenizer T --dataset D --profile P`` resolves
    today; the sweep tables find a spec's trials the same way); None where it cannot be resolved."""
    config = _default_config(profile, method_key, dataset, tokenizer)
    return None if config is None else config_identity(config)


def select_tokenizers(records, profile: str | None = None, name: str = "tokenizers") -> TableSelection:
    """TIGER Table 2's runs: each tokenizer at the profile's default configuration (rows 'default';
    the reference row per dataset is the one best on validation), and where several configurations
    ran, or none at the default, the one best on validation among them (rows 'tuned', with how many
    were tried; never tested: chosen among several, they do not compare like with like)."""
    records = list(records)
    frame, profiles, reasons = _prepare(records, params=[ARCH_KEY], profile=profile)
    selection = TableSelection(name, "tokenizers", "Item tokenizers of the generative model", ["Tokenizer", "Setting"],
                               profiles=profiles, empty_message="(no completed runs of the generative model)")
    if frame.empty:
        return _finish_selection(selection, records, reasons)
    generative = frame["method_key"].map(is_generative).astype(bool)
    reasons.update(dict.fromkeys(frame.loc[~generative, "run_id"], "not the generative model (see the main table)"))
    gen, why = default_architecture(frame[generative].copy(), "the tokenizer table compares tokenizers in")
    reasons.update(why)
    gen["tokenizer"] = gen["tokenizer"].fillna("?")
    defaults, tuned = [], []
    for (dataset, tokenizer), group in gen.groupby(["dataset", "tokenizer"], sort=False):
        first = group.iloc[0]
        key = default_config_key(profiles.get(dataset), first["method_key"], dataset, tokenizer)
        default = group[group["config_key"] == key]
        if not default.empty:
            defaults.append((first, Pick([tokenizer_name(tokenizer), "default"], dataset, sorted(default["run_id"]),
                                         1, "default")))
        n_configs = int(group["config_key"].nunique())
        best, not_best, _ = best_configs(group, ["dataset"])
        if n_configs > 1 or default.empty:
            tuned.append((first, Pick([tokenizer_name(tokenizer), _tuned_setting(best, key, n_configs)], dataset,
                                      sorted(best["run_id"]), n_configs, "tuned")))
        shown = set(default["run_id"]) | (set(best["run_id"]) if n_configs > 1 or default.empty else set())
        for run in set(group["run_id"]) - shown:
            reasons[run] = f"not the profile's default configuration; {not_best.get(run, 'not the tuned pick')}"
    order = order_datasets(gen["dataset"])
    for part in (defaults, tuned):
        part.sort(key=lambda t: (method_order(t[0]["method_key"], t[0]["tokenizer"], ""), order.index(t[1].dataset)))
    selection.picks = [pick for _, pick in defaults + tuned]
    for dataset in order:
        best = best_pick(frame, [p for p in selection.picks if p.dataset == dataset and p.group == "default"])
        if best is not None:
            best.reference = True
    return _finish_selection(selection, records, reasons)


POSITIONS_KEY = "train.loss_positions"  # where the generative model's loss is taken (last item | all)


def architecture_text(arch: str, positions: str) -> str:
    """The Architecture cell: ``encoder-decoder`` or ``decoder-only, loss on all positions``."""
    text = str(arch).replace("_", "-")
    return text if positions == "last" and arch == "encoder_decoder" else f"{text}, loss on {positions} position" + (
        "s" if positions == "all" else "")


# what an architecture row may change beside the architecture: how long it trains (an equal-time
# comparison gives the decoder-only model other steps, and scales warm-up and evaluation with them)
_TRAINING_LENGTH = (*keys_with_role("budget"), *keys_with_role("schedule"))


def _without(config: dict, keys) -> dict:
    """``config`` (a copy) without the dotted ``keys``."""
    out = copy.deepcopy(config)
    for key in keys:
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return out


def _setting_key(config: dict) -> str:
    """What a run's configuration is apart from the generative model's architecture and training
    length: runs sharing it differ only in how, and how long, the model trains."""
    return config_identity(_without(config, (ARCH_KEY, POSITIONS_KEY, *_TRAINING_LENGTH)), ("seed", *PATH_KEYS))


def _setting_text(config: dict, default: dict | None, tokenizer: str) -> str:
    """How a setting differs from the tokenizer's default configuration (architecture and training
    length aside), e.g. ``alpha=0.1, beta=0`` (a tokenizer's own keys without their prefix); '' for
    the default itself or where the default cannot be resolved."""
    if default is None:
        return ""
    skip = ("seed", "profile", *PATH_KEYS, ARCH_KEY, POSITIONS_KEY, *_TRAINING_LENGTH)
    mine, theirs = flatten(config, skip), flatten(default, skip)
    own = f"{TOKENIZERS.section}.{tokenizer}."
    return ", ".join(f"{key.removeprefix(own)}={mine[key]}" for key in sorted(mine)
                     if key in theirs and one_number_form(mine[key]) != one_number_form(theirs[key]))


def select_architectures(records, profile: str | None = None, name: str = "architectures") -> TableSelection:
    """The generative model's architectures, per tokenizer setting: TIGER's encoder-decoder at the
    profile's training budget (the setting's reference row) against every other architecture
    (``model.arch``, ``train.loss_positions``) and training length run at the same setting (the same
    configuration apart from those), one row each, tested against the reference. Budgets differ by
    design (e.g. equal training time): each row shows its own. Settings with one architecture are
    left out."""
    records = list(records)
    # budgets differ by design here: every row shows its own
    frame, profiles, reasons = _prepare(records, params=[ARCH_KEY, POSITIONS_KEY, "train.max_steps"], profile=profile,
                                        equal_budgets=False)
    selection = TableSelection(name, "architectures", "Architectures of the generative model",
                               ["Tokenizer", "Architecture"], profiles=profiles,
                               empty_message="(no tokenizer setting with runs of two architectures)")
    if frame.empty:
        return _finish_selection(selection, records, reasons)
    generative = frame["method_key"].map(is_generative).astype(bool)
    reasons.update(dict.fromkeys(frame.loc[~generative, "run_id"], "not the generative model (see the main table)"))
    gen = frame[generative].copy()
    clocked = gen["budget"].map(lambda b: bool((b or {}).get("time_limit_hit"))).astype(bool)  # did not get its steps
    reasons.update(dict.fromkeys(gen.loc[clocked, "run_id"], "stopped by the clock (architecture table)"))
    gen = gen[~clocked]
    gen["tokenizer"] = gen["tokenizer"].fillna("?")
    for key in (ARCH_KEY, POSITIONS_KEY):  # records older than the key ran its default (identity.ADDED_LATER)
        column = f"param:{key}"
        gen[column] = gen[column].where(gen[column].notna(), ADDED_LATER[key])
    configs = {r.get("run_id"): r["config"] for r in records if isinstance(r.get("config"), dict)}
    gen["setting"] = gen["run_id"].map(lambda run: _setting_key(configs.get(run, {})))
    default_arch = (get_path(default_layer(), ARCH_KEY), get_path(default_layer(), POSITIONS_KEY))
    picks = []
    for (dataset, tokenizer, _), group in gen.groupby(["dataset", "tokenizer", "setting"], sort=False):
        arch = list(zip(group[f"param:{ARCH_KEY}"], group[f"param:{POSITIONS_KEY}"]))
        is_default = pd.Series([a == default_arch for a in arch], index=group.index)
        at_budget = group["at_profile_budget"].map(lambda v: v is True) & is_default
        if is_default.all() and group["config_key"].nunique() == 1:
            reasons.update(dict.fromkeys(group["run_id"], "no other architecture at this setting (architecture table)"))
            continue
        if not at_budget.any():
            reasons.update(dict.fromkeys(group["run_id"], "no encoder-decoder run at the profile's training budget "
                                                          "with this setting to compare with (architecture table)"))
            continue
        first = group.iloc[0]
        reference, n_configs = group[at_budget], int(group.loc[at_budget, "config_key"].nunique())
        if n_configs > 1:
            reference, _, _ = best_configs(reference, ["dataset"])
        default = _default_config(profiles.get(dataset), first["method_key"], dataset, tokenizer)
        setting = _setting_text(configs.get(first["run_id"], {}), default, tokenizer)
        family = tokenizer_name(tokenizer) + (f" ({setting})" if setting else "")
        rows = [Pick([family, architecture_text(*default_arch)], dataset, sorted(reference["run_id"]), n_configs,
                     "architecture", reference=True)]
        reasons.update(dict.fromkeys(set(group.loc[at_budget, "run_id"]) - set(reference["run_id"]),
                                     f"not the best of {n_configs} encoder-decoder configurations on validation"))
        for _, runs in group[~at_budget].groupby("config_key", sort=False):
            steps = runs["param:train.max_steps"].iloc[0]
            length = f", {_count(steps)} steps" if pd.notna(steps) else ""
            variant = (runs[f"param:{ARCH_KEY}"].iloc[0], runs[f"param:{POSITIONS_KEY}"].iloc[0])
            rows.append(Pick([family, architecture_text(*variant) + length], dataset, sorted(runs["run_id"]), 1,
                             "architecture"))
        picks.extend(rows)
    order = order_datasets(gen["dataset"])
    first_of = {run: row for run, row in zip(gen["run_id"], gen.itertuples())}
    picks.sort(key=lambda p: (method_order(first_of[p.runs[0]].method_key, first_of[p.runs[0]].tokenizer, ""),
                              p.labels[0], not p.reference, p.labels[1], order.index(p.dataset)))
    selection.picks = picks
    selection.facts = {"keys": [ARCH_KEY, POSITIONS_KEY]}  # they keep the items' IDs: every row on the reference's
    reasons.update(same_semantic_ids(selection, frame, family=lambda pick: pick.labels[0]))
    return _finish_selection(selection, records, reasons)


def _default_config(profile: str | None, method_key: str, dataset: str, tokenizer: str) -> dict | None:
    """The plain config ``bench run --tokenizer T --dataset D --profile P`` resolves today (None where
    it cannot be resolved)."""
    try:
        return resolve_config(profile, overrides={"method": method_key, "dataset": dataset,
                                                  "tokenizer": {"name": tokenizer}}).to_record()
    except Exception:  # noqa: BLE001 - an unknown profile, method or tokenizer has no default here
        return None


def _tuned_setting(best: pd.DataFrame, default_key: str | None, n_configs: int) -> str:
    """The Setting cell of a tokenizer's validation-chosen row: 'tuned', 'tuned (= default)' where
    the choice is the default, 'not the default' for a lone configuration that is not."""
    if set(best["config_key"]) == {default_key}:
        return "tuned (= default)"
    return "tuned" if n_configs > 1 else "not the default"


def default_architecture(frame: pd.DataFrame, what: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """The runs of ``frame`` (with a ``param:model.arch`` column) in the default architecture, TIGER's
    encoder-decoder (records older than the key ran it, identity.ADDED_LATER; methods without the key
    count as in it), and a reason for every other run: '<what> <the default>'."""
    arch = frame[f"param:{ARCH_KEY}"].where(frame[f"param:{ARCH_KEY}"].notna(), ADDED_LATER[ARCH_KEY])
    default_arch = get_path(default_layer(), ARCH_KEY)
    other = arch != default_arch
    reasons = {run: f"another architecture ({ARCH_KEY}={value}; {what} {default_arch})"
               for run, value in zip(frame.loc[other, "run_id"], arch[other])}
    return frame[~other], reasons


def select_ablation(records, param: str, profile: str | None = None, name: str | None = None) -> TableSelection:
    """One row per (method, value of ``param``), e.g. ``model.encoder_layers`` (TIGER Table 5): per
    method only runs that differ in ``param`` alone, per value the configuration best on validation.
    The reference row of each method is the value the profile sets today; where ``param`` cannot
    change the items' semantic IDs, a run whose IDs differ from the reference's at its seed is left out."""
    records = list(records)
    frame, profiles, reasons = _prepare(records, params=list(dict.fromkeys([param, ARCH_KEY])), profile=profile)
    column = f"param:{param}"
    selection = TableSelection(name or f"ablation-{param}", "ablation", f"Ablation over {param}", ["Method", param],
                               profiles=profiles, facts={"param": param, "keys": [param]},
                               empty_message=f"(no completed runs whose config has {param})")
    if frame.empty:
        return _finish_selection(selection, records, reasons)
    if param != ARCH_KEY:  # an ablation varies one setting of the default architecture (architectures: their table)
        frame, why = default_architecture(frame, "ablations vary one setting of")
        reasons.update(why)
    applies = frame[column].notna()
    for run, method in zip(frame.loc[~applies, "run_id"], frame.loc[~applies, "method"]):
        reasons[run] = f"{param} does not apply to {method}"
    part, why = _held_fixed(frame[applies], records, param)
    reasons.update(why)
    part, why, counts = best_configs(part, ["dataset", "method", column])
    reasons.update(why)
    picked = frame_picks(part, ["method", column], lambda k, f: [k[0], format_value(k[1])], _group,
                         lambda k, d: counts[(d, *k)])
    order = order_datasets(part["dataset"]) if not part.empty else []
    picked.sort(key=lambda t: (method_order(t[0]["method_key"], t[0]["tokenizer"], t[1].labels[0]),
                               value_order(t[0][column]), order.index(t[1].dataset)))
    for first, pick in picked:
        pick.group = "ablation" if pick.group == "generative" else pick.group
        try:
            default = profile_value(profiles.get(pick.dataset), param)
        except KeyError:
            continue
        pick.reference = _same_value(first[column], default)
    selection.picks = [pick for _, pick in picked]
    if keys_keep_item_ids([param]):
        reasons.update(same_semantic_ids(selection, frame, family=lambda p: p.labels[0]))
    values = Counter((p.labels[0], p.dataset) for p in selection.picks)
    for pick in selection.picks:  # a method with one value compares nothing: not a row of the ablation
        if values[(pick.labels[0], pick.dataset)] < 2:
            reasons.update(dict.fromkeys(pick.runs, f"the only value of {param} run for {pick.labels[0]}"))
    selection.picks = [pick for pick in selection.picks if values[(pick.labels[0], pick.dataset)] > 1]
    return _finish_selection(selection, records, reasons)


def _same_value(a, b) -> bool:
    return _same(a, _hashable(b))


def _held_fixed(part: pd.DataFrame, records, param: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """Per (dataset, method) only the runs that differ in ``param`` (and the seed) alone: the group of
    runs sharing every other setting with the most values of ``param`` (ties: more runs, newest), so
    an ablation row never mixes other changes in. Returns the runs and a reason per run left out."""
    rest, shown = {}, set(part["run_id"])
    for record in records:
        config = record.get("config")
        if isinstance(config, dict) and record.get("run_id") in shown:
            other = _without(config, (param,))
            rest[record["run_id"]] = config_identity(other, ("seed", *PATH_KEYS))
    if part.empty:
        return part, {}
    part = part.assign(_rest=part["run_id"].map(rest))
    keep, reasons = [], {}
    column = f"param:{param}"
    for (dataset, method), group in part.groupby(["dataset", "method"], sort=False):
        options = [(g[column].nunique(), len(g), g["run_id"].max(), key) for key, g in group.groupby("_rest")]
        best = max(options)[3]
        keep.append(group[group["_rest"] == best])
        for run in group.loc[group["_rest"] != best, "run_id"]:
            reasons[run] = f"differs from the compared {method} runs in more than {param}"
    return pd.concat(keep).drop(columns="_rest"), reasons


def same_semantic_ids(selection: TableSelection, frame: pd.DataFrame, family=lambda pick: "") -> dict[str, str]:
    """Compare like with like: drop from ``selection``'s picks every run whose semantic-ID sha differs
    from the reference (default) row's run at the same seed (same family and dataset); returns a
    reason per dropped run. Picks left without runs are removed."""
    reasons = {}
    for run, (sha, default_sha) in mixed_semantic_ids(selection.picks, *_shas_and_seeds(frame), family).items():
        reasons[run] = f"semantic IDs differ from the default's (sha {sha[:12]} vs {default_sha[:12]})"
    for pick in selection.picks:
        pick.runs = [run for run in pick.runs if run not in reasons]
    selection.picks = [pick for pick in selection.picks if pick.runs]
    return reasons


def _shas_and_seeds(frame: pd.DataFrame) -> tuple[dict, dict]:
    """run id -> semantic-ID sha, and run id -> seed, of the runs in ``frame``."""
    shas = dict(zip(frame["run_id"], frame["sid_sha"])) if "sid_sha" in frame.columns else {}
    seeds = dict(zip(frame["run_id"], frame["seed"])) if "seed" in frame.columns else {}
    return shas, seeds


def mixed_semantic_ids(picks: list[Pick], shas: dict, seeds: dict, family=lambda pick: "") -> dict[str, tuple[str, str]]:
    """run id -> (its sha, the reference row's sha at its seed) for every run of a non-reference pick
    whose semantic IDs differ from those of the reference pick of its family and dataset at the same
    seed (runs without semantic IDs, or at a seed the reference lacks, are not compared)."""
    references = {(family(p), p.dataset): p for p in picks if p.reference}
    mixed = {}
    for pick in picks:
        reference = references.get((family(pick), pick.dataset))
        if reference is None or pick is reference:
            continue
        default = {seeds.get(run): shas.get(run) for run in reference.runs if shas.get(run)}
        for run in pick.runs:
            sha, base = shas.get(run), default.get(seeds.get(run))
            if sha and base and sha != base:
                mixed[run] = (sha, base)
    return mixed


def check_semantic_ids(selection: TableSelection, frame: pd.DataFrame, family=lambda pick: "") -> None:
    """UserError naming the runs when a selection of a sweep or ablation whose keys cannot change the
    items' semantic IDs mixes IDs: every row must use the default row's IDs at each seed."""
    if not keys_keep_item_ids(selection.facts.get("keys")):
        return
    mixed = mixed_semantic_ids(selection.picks, *_shas_and_seeds(frame), family)
    if mixed:
        runs = ", ".join(f"{run} (sha {sha[:12]} vs {base[:12]})" for run, (sha, base) in sorted(mixed.items()))
        raise UserError(f"table {selection.name}: rows use other semantic IDs than the default row at the same seed, "
                        f"so they do not compare like with like: {runs}; run `bench select` again")


# ---------------------------------------------------------------------- building from a selection
FAMILY_BY_FIRST_LABEL = ("ablation", "architectures")  # kinds whose rows compare within their first label's rows


def _family(kind: str):
    return (lambda row: row.labels[0]) if kind in FAMILY_BY_FIRST_LABEL else (lambda row: "")


def table_from_selection(records, selection: TableSelection, metrics=MAIN_METRICS, split: str = "test",
                         alpha: float = 0.05, test: str = "wilcoxon") -> Table:
    """A main, tokenizer, ablation or sweep table from exactly the runs ``selection`` names (records
    only: no profile, spec or other selection is read). Marks: Welch's t over seeds against the
    reference row, Holm-corrected over the table (``bench.tables.significance``)."""
    frame = records_frame(list(records), split=split)
    table = Table(_profile_title(selection.title, selection.profiles), list(selection.label_columns), [],
                  list(metrics), [], empty_message=selection.empty_message, profiles=dict(selection.profiles),
                  users_test=test)
    if not selection.picks or frame.empty:
        return table
    family = _family(selection.kind)
    check_semantic_ids(selection, frame, lambda pick: pick.labels[0] if selection.kind in FAMILY_BY_FIRST_LABEL else "")
    rows = rows_from_picks(frame, selection.picks, metrics)
    table.datasets, table.rows = order_datasets(p.dataset for p in selection.picks), rows
    references = {(family(r), d): r for r in rows for d in r.reference}
    if selection.kind == "tokenizers":  # best and second among the defaults, and among the tuned rows
        for group in ("default", "tuned"):
            _mark_best([r for r in rows if r.group == group], table.columns)
    else:
        _mark_best(rows, table.columns)
    tests = 0
    if split == "test":
        def reference_of(row, dataset):
            return None if row.group == "tuned" else references.get((family(row), dataset))

        tests = compare_rows(rows, table.columns, reference_of, alpha, test, only_better=selection.kind == "main")
    for row in rows:  # a sweep's default row says so (an ablation's is named in the notes and the CSV)
        if row.reference and selection.kind == "sweep":
            row.labels[0] = f"{row.labels[0]} (default)"
    if selection.kind == "main":
        _improvement(table, selection)
    table.notes = table_notes(table, selection, frame, tests, alpha, split)
    return table


def _improvement(table: Table, selection: TableSelection) -> None:
    """The main table's last row: per dataset the generative row best on validation against the
    reference baseline (both named in the selection), in percent."""
    by_label = {row.labels[0]: row for row in table.rows}
    values = {}
    for dataset, pair in selection.facts.get("improvement", {}).items():
        gen, base = by_label.get(pair["generative"]), by_label.get(pair["baseline"])
        if gen is None or base is None:
            continue
        for column in table.columns:
            if column[0] == dataset and column in gen.cells and column in base.cells and base.cells[column].mean > 0:
                g, b = gen.cells[column].mean, base.cells[column].mean
                values[column] = ((g - b) / b * 100, gen.cells[column].significant)
    if values:
        table.summary_rows.append((IMPROVEMENT_ROW, values))


def _reference_text(table: Table, selection: TableSelection) -> str:
    names = " / ".join(dict.fromkeys(", ".join(r.labels) for r in table.rows if r.reference)) or "no row to compare with"
    what = {"main": "the validation-best baseline", "tokenizers": "the validation-best default row",
            "ablation": "the method's default value", "sweep": "the sweep's default",
            "architectures": "the encoder-decoder row of the same tokenizer setting"}
    return f"{what.get(selection.kind, 'the reference row')} ({names})"


def significance_note(table: Table, selection: TableSelection, tests: int, alpha: float) -> str:
    """One line: what a mark means and which rows are tested (never rows with n < 3)."""
    marks = SIGNIFICANCE_MARK if selection.kind == "main" else f"{SIGNIFICANCE_MARK} / {WORSE_MARK}"
    sense = "better than" if selection.kind == "main" else "better / worse than"
    untested = "; tuned rows are not tested" if any(r.group == "tuned" for r in table.rows) else ""
    return (f"{marks}: {sense} {_reference_text(table, selection)} by Welch's t over seeds, Holm over the table's "
            f"{tests} test{'' if tests == 1 else 's'}, p < {alpha:g}; rows with n < {MIN_SEEDS} are not tested{untested}.")


def details_note(table: Table, frame: pd.DataFrame | None = None, users: bool = True) -> str:
    """One line: where the detail lives (CSV, selection file), and what a reader must not compare."""
    users_p = (f", per-user {table.users_test.capitalize()} p (test users only; ignores training variance)"
               if users else "")
    parts = [f"CSV: each row's runs, budget, machine, commit{users_p}. Left-out runs and why: results/selection.json "
             "(bench select)"]
    machines = {m for row in table.rows for d in row.runs for m in row.machines(d).split(" / ") if m}
    if len(machines) > 1:
        parts.append(f"times compare only within one machine ({len(machines)} here)")
    if any("+dirty" in code for row in table.rows for code in row.code.values()):
        parts.append("'+dirty': uncommitted code")
    if frame is not None:
        history = protocol_differences(frame[frame["run_id"].isin(table.run_ids)])
        if history:
            parts.append("history length vs the split's: " + "; ".join(history))
    return "; ".join(parts) + "."


COUNTS = ("mean ± std over n seeds (no ± at n = 1); Configs: configurations the row was chosen among on validation "
          f"{SELECT_METRIC.upper()} (those with {MIN_SEEDS}+ seeds compete where there are)")


def table_notes(table: Table, selection: TableSelection, frame: pd.DataFrame, tests: int, alpha: float,
                split: str) -> list[str]:
    """At most three lines: what a cell is, what a mark means, where the detail is."""
    bold = "bold best, underlined second" + (" (default and tuned rows apart)" if selection.kind == "tokenizers" else "")
    if selection.kind == "sweep":
        what = f"{sweep_intro(table, selection, split)} Cells: {COUNTS}; {bold}."
    else:
        what = f"{split.capitalize()} split, leave-one-out, full ranking. Cells: {COUNTS}; {bold}."
    if selection.kind == "main" and table.summary_rows:
        pairs = "; ".join(f"{p['generative']} vs {p['baseline']}" + (f" on {dataset_name(d)}" if len(table.datasets) > 1 else "")
                          for d, p in selection.facts.get("improvement", {}).items())
        what += f" Improvement: {pairs}, each best on validation."
    notes = [what]
    if split == "test":
        notes.append(significance_note(table, selection, tests, alpha))
    notes.append(details_note(table, frame))
    return notes


def sweep_intro(table: Table, selection: TableSelection, split: str) -> str:
    """A sweep table's first words: the spec, how much of its grid ran, the setting chosen on validation."""
    facts = selection.facts
    name = facts.get("spec", "") + (f" (budget {facts['budget']})" if facts.get("budget") else "")
    coverage = "; ".join(f"{dataset_name(d)}: {present} of the grid's {planned} trials ran"
                         for d, (present, planned) in facts.get("coverage", {}).items() if present < planned)
    best = []
    for dataset in table.datasets:
        chosen = best_on_validation(table.rows, dataset)
        if chosen is None:
            continue
        top = max((r for r in table.rows if dataset in r.valid), key=lambda r: r.valid[dataset])
        best.append(", ".join(chosen.labels) + ("" if top is chosen else
                    f" ({', '.join(top.labels)} is higher at n = {len(top.runs[dataset])})"))
    return (f"{split.capitalize()} split, leave-one-out; a row per setting of sweep {name}"
            + (f" ({coverage})" if coverage else "")
            + (f"; best on validation: {' / '.join(best)}" if best else "") + ".")


# ---------------------------------------------------------------------- select + build in one go
def build_main_table(records, metrics=MAIN_METRICS, split: str = "test", alpha: float = 0.05,
                     test: str = "wilcoxon", profile: str | None = None) -> Table:
    """TIGER Table 1: every method (label) x every dataset, plus the improvement row."""
    records = list(records)
    return table_from_selection(records, select_main(records, profile), metrics, split, alpha, test)


def build_tokenizer_table(records, metrics=MAIN_METRICS, split: str = "test", alpha: float = 0.05,
                          test: str = "wilcoxon", profile: str | None = None) -> Table:
    """TIGER Table 2: the generative model with each item tokenizer at its default configuration,
    and the configuration best on validation where several ran."""
    records = list(records)
    return table_from_selection(records, select_tokenizers(records, profile), metrics, split, alpha, test)


def build_ablation_table(records, param: str, metrics=MAIN_METRICS, split: str = "test", alpha: float = 0.05,
                         test: str = "wilcoxon", profile: str | None = None) -> Table:
    """One row per (method, value of ``param``), e.g. ``model.encoder_layers`` (TIGER Table 5)."""
    records = list(records)
    return table_from_selection(records, select_ablation(records, param, profile), metrics, split, alpha, test)


def select_table(kind: str, records, param: str | None = None, profile: str | None = None) -> TableSelection:
    """The selection of a main, tokenizer or ablation table."""
    records = list(records)
    if kind == "main":
        return select_main(records, profile)
    if kind == "tokenizers":
        return select_tokenizers(records, profile)
    if kind == "architectures":
        return select_architectures(records, profile)
    if kind == "ablation":
        if not param:
            raise ValueError("an ablation table needs the config key to vary (--param)")
        return select_ablation(records, param, profile)
    raise ValueError(f"unknown table kind {kind!r}")


def build_table(kind: str, records, param: str | None = None, profile: str | None = None, **options) -> Table:
    records = list(records)
    return table_from_selection(records, select_table(kind, records, param, profile), **options)
