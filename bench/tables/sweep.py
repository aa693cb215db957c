"""One table per sweep: the spec's settings as rows (seeds averaged), each compared with the spec's
default setting by a paired per-user test, with the setting chosen on validation named."""
from __future__ import annotations

from bench.tables.budget import machines_note
from bench.tables.frame import choose_profiles, config_identity, latest_code, records_frame
from bench.tables.model import Row, Table, _make_rows, _mark_best, _profile_title
from bench.tables.names import (
    MAIN_METRICS, SELECT_METRIC, SIGNIFICANCE_MARK, WORSE_MARK, dataset_name, format_value, order_datasets,
)
from bench.tables.significance import compare_with


def sweep_point_label(spec, point: dict) -> str:
    return ", ".join(f"{name}={format_value(point[name])}" for name in _dims(spec) if name in point)


def _dims(spec) -> list[str]:
    return [d.name for d in spec.dimensions if d.keys != ["seed"]]


def _on_grid(spec, point: dict) -> bool:
    """Whether ``point`` is one of the spec's grid settings (its seeds included): a table of the
    papers' grid does not show a budget's reduced grid, nor the reverse."""
    return all(point.get(d.name) in d.values for d in spec.dimensions if d.kind == "grid" and d.values)


def sweep_records(records, spec) -> list[tuple[dict, dict]]:
    """(record, point) for every completed record that is a trial of ``spec``: its config is what
    the spec resolves for that point (paths and seed aside)."""
    from sweeps.spec import point_of, resolve_trial_config

    base = spec.base()
    found = []
    for record in records:
        config = record.get("config")
        if record.get("status", "completed") != "completed" or not isinstance(config, dict):
            continue
        try:
            point = point_of(spec, config)
            if point is None or not _on_grid(spec, point):
                continue
            expected = resolve_trial_config(base, point)
        except Exception:  # noqa: BLE001 - a record from another layout of the config is not a trial
            continue
        if config_identity(expected) == config_identity(config):
            found.append((record, point))
    return found


def build_sweep_table(records, spec, metrics=MAIN_METRICS, split: str = "test", alpha: float = 0.05,
                      test: str = "wilcoxon", profile: str | None = None) -> Table:
    """Rows: the spec's settings found in ``records``; † / ‡: significantly better / worse than the
    spec's ``default`` setting (two-sided paired test on per-user values, seeds averaged)."""
    dims = _dims(spec)
    name = spec.name + (f" (budget {spec.budget})" if spec.budget else "")
    table = Table(f"Sweep {name}", dims, [], list(metrics), [],
                  empty_message=f"(no completed trials of sweep {name})")
    found = sweep_records(records, spec)
    if not found:
        return table
    labels = {}
    for record, point in found:
        labels[record["run_id"]] = {d: format_value(point[d]) for d in dims}
    frame = records_frame([r for r, _ in found], split=split)  # a sweep's own protocol: its spec says
    for d in dims:
        frame[f"dim:{d}"] = frame["run_id"].map(lambda run, d=d: labels[run][d])
    frame, profiles, notes = choose_profiles(frame, profile)
    frame, code_notes = latest_code(frame)
    if frame.empty:
        return table
    datasets = order_datasets(frame["dataset"])
    keys = [f"dim:{d}" for d in dims]
    keyed = _make_rows(frame, keys, lambda k, f: [str(v) for v in k], lambda f: "ablation", metrics, datasets)
    grid = [d.name for d in spec.dimensions if d.keys != ["seed"] and d.kind == "grid"]
    order = {tuple(format_value(p[d]) for d in grid): i for i, p in enumerate(_grid_order(spec))}
    position = [dims.index(d) for d in grid]
    keyed.sort(key=lambda t: (order.get(tuple(t[0][i] for i in position), len(order)), tuple(t[0])))
    rows = [r for _, _, r in keyed]
    default = tuple(format_value(spec.default[d]) for d in dims) if spec.default else None
    reference = next((r for r in rows if tuple(r.labels) == default), None)
    profiles = {d: p for d, p in profiles.items() if d in datasets}
    table.datasets, table.rows, table.profiles = datasets, rows, profiles
    table.title = _profile_title(table.title, profiles)
    _mark_best(rows, table.columns)
    if reference is not None and split == "test":
        _against_default(rows, reference, table.columns, alpha, test)
        reference.labels = [reference.labels[0] + " (default)"] + reference.labels[1:]
    shown = set(frame["run_id"])
    table.notes = (_sweep_notes(spec, rows, reference, datasets, alpha, test, split)
                   + _coverage_notes(spec, [(r, p) for r, p in found if r["run_id"] in shown], datasets)
                   + notes + code_notes)
    return table


def _coverage_notes(spec, found: list[tuple[dict, dict]], datasets) -> list[str]:
    """How much of the spec's grid the table holds, per dataset: a partly run grid says so."""
    from sweeps.spec import point_key

    if spec.search != "grid" or any(d.kind != "grid" for d in spec.dimensions):
        return []
    planned = {point_key(p) for p in spec.grid_points()}
    notes = []
    for dataset in datasets:
        present = {point_key(p) for r, p in found if r.get("dataset") == dataset} & planned
        if len(present) < len(planned):
            notes.append(f"{dataset_name(dataset)}: {len(present)} of the grid's {len(planned)} trials "
                         "(settings x seeds) are in the store; the rest have not run.")
    return notes


def _grid_order(spec) -> list[dict]:
    import itertools

    grid = [d for d in spec.dimensions if d.keys != ["seed"] and d.kind == "grid"]
    return [dict(zip([d.name for d in grid], combo)) for combo in itertools.product(*(d.values for d in grid))]


def _against_default(rows: list[Row], reference: Row, columns, alpha: float, test: str) -> None:
    compare_with(rows, {column: reference for column in columns}, alpha, test, only_better=False)


def _sweep_notes(spec, rows, reference, datasets, alpha, test, split) -> list[str]:
    notes = [f"{split.capitalize()} split, full-catalogue ranking, leave-one-out; one row per setting of sweep "
             f"{spec.name}" + (f" (budget {spec.budget})" if spec.budget else "") +
             "; mean ± sample std where there are several seeds. Bold: best per column; underlined: second."]
    name = "Wilcoxon signed-rank" if test == "wilcoxon" else "paired t"
    if reference is not None and split == "test":
        notes.append(f"{SIGNIFICANCE_MARK} / {WORSE_MARK}: significantly better / worse than the default setting "
                     f"({', '.join(reference.labels)}) at p < {alpha:g} (two-sided {name} test on per-user values).")
    elif reference is None:
        notes.append("No run of the default setting in the store: no significance marks.")
    for dataset in datasets:
        present = [r for r in rows if dataset in r.valid]
        if present:
            best = max(present, key=lambda r: r.valid[dataset])
            notes.append(f"Best setting by validation {SELECT_METRIC.upper()} on {dataset_name(dataset)}: "
                         f"{', '.join(best.labels)}.")
    notes.append("Budget: optimizer steps · epochs · training time · device×threads · why training stopped.")
    return notes + machines_note(rows)


def sweep_tables(records, specs) -> list[tuple[str, object, Table]]:
    """(file stem, spec, table) for every spec (and each of its budgets) with at least two settings
    in ``records``; what ``bench render`` writes."""
    from sweeps.spec import load_spec

    out = []
    for path in specs:
        spec = load_spec(path)
        seen = []  # the run sets already tabled for this spec
        for budget in [*sorted(spec.budgets), None]:
            variant = load_spec(path, budget=budget) if budget else spec
            table = build_sweep_table(records, variant)
            runs = table.run_ids
            if len(table.rows) < 2 or runs in seen:  # the papers' grid holding only a budget's runs: no new table
                continue
            seen.append(runs)
            out.append((f"sweep-{variant.name}" + (f"-{budget}" if budget else ""), variant, table))
    return out


__all__ = ["build_sweep_table", "sweep_records", "sweep_tables", "sweep_point_label"]
