"""One table per sweep: the spec's settings as rows (seeds averaged), each compared with the spec's
default setting (Welch's t over seeds, Holm-corrected), with the setting chosen on validation named."""
from __future__ import annotations

from bench.tables.frame import choose_profiles, config_identity, latest_code, records_frame, shared_semantic_ids
from bench.tables.model import Table, _finish_selection, frame_picks, same_semantic_ids, table_from_selection
from bench.tables.names import MAIN_METRICS, format_value, order_datasets
from bench.tables.selection import TableSelection, keys_keep_item_ids
from sweeps.spec import load_spec, point_key, point_of, resolve_trial_config


def sweep_point_label(spec, point: dict) -> str:
    return ", ".join(f"{name}={format_value(point[name])}" for name in _dims(spec) if name in point)


def _dims(spec) -> list[str]:
    return [d.name for d in spec.dimensions if d.keys != ["seed"]]


def _on_grid(spec, point: dict) -> bool:
    """Whether ``point`` is one of the spec's grid settings: a table of the papers' grid does not show
    a budget's reduced grid, nor the reverse. Seeds are replicates, not settings: a setting's runs at
    seeds beyond the spec's (``bench sweep --seeds``) are its rows' seeds too."""
    return all(point.get(d.name) in d.values for d in spec.dimensions
               if d.kind == "grid" and d.values and d.keys != ["seed"])


def sweep_records(records, spec) -> list[tuple[dict, dict]]:
    """(record, point) for every completed record that is a trial of ``spec``: its config is what
    the spec resolves for that point (paths and seed aside). Reads today's profiles: selection time."""
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
        if config_identity(expected.to_record()) == config_identity(config):
            found.append((record, point))
    return found


def sweep_name(spec) -> str:
    return spec.name + (f" (budget {spec.budget})" if spec.budget else "")


def _swept_keys(spec) -> list[str]:
    keys = []
    for dim in spec.dimensions:
        if dim.keys == ["seed"]:
            continue
        keys += [str(key) for case in dim.cases.values() for key in case] if dim.cases else list(dim.keys)
    return sorted(set(keys))


def select_sweep(records, spec, profile: str | None = None, name: str | None = None) -> TableSelection:
    """The runs of a sweep's table: its trials (one profile per dataset, one code identity per
    setting), one row per setting in grid order, the spec's default the reference row. Where no swept
    key can change the items' semantic IDs, a trial whose IDs differ from the default's at its seed
    is left out."""
    records = list(records)
    dims = _dims(spec)
    stem = name or f"sweep-{spec.name}" + (f"-{spec.budget}" if spec.budget else "")
    selection = TableSelection(stem, "sweep", f"Sweep {sweep_name(spec)}", dims,
                               empty_message=f"(no completed trials of sweep {sweep_name(spec)})")
    found = sweep_records(records, spec)
    selection.facts = {
        "spec": spec.name, "budget": spec.budget, "keys": _swept_keys(spec),
        "dims": [{"name": d.name, "keys": list(d.keys), "cases": bool(d.cases)} for d in spec.dimensions
                 if d.keys != ["seed"]],
        "default": {d: spec.default[d] for d in dims if d in spec.default} if spec.default else {},
        "default_labels": [format_value(spec.default[d]) for d in dims] if spec.default else None,
    }
    not_trial = f"not a trial of sweep {sweep_name(spec)}"
    if not found:
        return _finish_selection(selection, records, {}, not_trial)
    labels = {record["run_id"]: [format_value(point[d]) for d in dims] for record, point in found}
    frame = records_frame([r for r, _ in found])  # a sweep's own protocol: its spec says
    frame["_labels"] = frame["run_id"].map(lambda run: "\x1f".join(labels[run]))
    frame, profiles, reasons = choose_profiles(frame)
    ids_fixed = keys_keep_item_ids(selection.facts["keys"])
    # rows that must share the default's IDs: of a configuration run by several code versions (the
    # default, shared by several sweeps), keep the one whose runs share the other rows' IDs
    frame, other_code = latest_code(frame, prefer=shared_semantic_ids if ids_fixed else None)
    reasons.update(other_code)
    selection.profiles = profiles
    if frame.empty:
        return _finish_selection(selection, records, reasons, not_trial)
    picked = frame_picks(frame, ["_labels"], lambda k, f: list(labels[f["run_id"]]), lambda f: "ablation")
    grid = [d.name for d in spec.dimensions if d.keys != ["seed"] and d.kind == "grid"]
    order = {tuple(format_value(p[d]) for d in grid): i for i, p in enumerate(_grid_order(spec))}
    position = [dims.index(d) for d in grid]
    datasets = order_datasets(frame["dataset"])
    picked.sort(key=lambda t: (order.get(tuple(t[1].labels[i] for i in position), len(order)), tuple(t[1].labels),
                               datasets.index(t[1].dataset)))
    for _, pick in picked:
        pick.reference = pick.labels == selection.facts["default_labels"]
    selection.picks = [pick for _, pick in picked]
    if ids_fixed:
        reasons.update(same_semantic_ids(selection, frame))
    selection.facts["coverage"] = _coverage(spec, [(r, p) for r, p in found if r["run_id"] in selection.run_ids])
    return _finish_selection(selection, records, reasons, not_trial)


def build_sweep_table(records, spec, metrics=MAIN_METRICS, split: str = "test", alpha: float = 0.05,
                      test: str = "wilcoxon", profile: str | None = None) -> Table:
    """Rows: the spec's settings found in ``records``; † / ‡: significantly better / worse than the
    spec's ``default`` setting (Welch's t over seeds, Holm-corrected; rows with n < 3 not tested)."""
    records = list(records)
    return table_from_selection(records, select_sweep(records, spec, profile), metrics, split, alpha, test)


def _coverage(spec, found: list[tuple[dict, dict]]) -> dict:
    """dataset -> [trials in the table, trials of the grid] (grid specs only)."""
    if spec.search != "grid" or any(d.kind != "grid" for d in spec.dimensions):
        return {}
    planned = {point_key(p) for p in spec.grid_points()}
    datasets = order_datasets(r.get("dataset") for r, _ in found)
    return {d: [len({point_key(p) for r, p in found if r.get("dataset") == d} & planned), len(planned)]
            for d in datasets}


def _grid_order(spec) -> list[dict]:
    import itertools

    grid = [d for d in spec.dimensions if d.keys != ["seed"] and d.kind == "grid"]
    return [dict(zip([d.name for d in grid], combo)) for combo in itertools.product(*(d.values for d in grid))]


def sweep_selections(records, specs) -> tuple[list[TableSelection], dict[str, dict]]:
    """The sweep tables `bench render` writes: per spec (and each of its budgets) with at least two
    settings in ``records``, its selection (a papers' grid holding exactly a budget's runs is not
    repeated). Also the sweeps with trials that are not rendered, and why."""
    out, skipped = [], {}
    for path in specs:
        spec = load_spec(path)
        seen = []  # the run sets already tabled for this spec
        for budget in [*sorted(spec.budgets), None]:
            variant = load_spec(path, budget=budget) if budget else spec
            selection = select_sweep(records, variant)
            runs = selection.run_ids
            settings = {tuple(p.labels) for p in selection.picks}
            if runs in seen:
                continue
            trials = {run: why for run, why in selection.left_out.items() if not why.startswith("not a trial")}
            if len(settings) < 2:
                if trials:
                    skipped[selection.name] = {"why": f"{len(settings)} setting(s) left to compare (a table needs 2)",
                                               "left_out": trials, "runs": sorted(runs)}
                continue
            seen.append(runs)
            out.append(selection)
    return out, skipped


def sweep_tables(records, specs) -> list[tuple[str, TableSelection, Table]]:
    """(file stem, selection, table) for every sweep `bench render` writes (:func:`sweep_selections`)."""
    selections, _ = sweep_selections(records, specs)
    return [(s.name, s, table_from_selection(records, s)) for s in selections]


__all__ = ["build_sweep_table", "select_sweep", "sweep_records", "sweep_selections", "sweep_tables",
           "sweep_point_label"]
