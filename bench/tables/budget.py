"""A row's budget in a few words: optimizer steps, epochs, training time, device x threads, stop reason."""
from __future__ import annotations

import math
from typing import Iterable

from bench.tables.names import NO_TRAINING, dataset_name


def _count(value: float) -> str:
    value = float(value)
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{value:.0f}"


def _duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _spread(values, fmt) -> str | None:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return None
    lo, hi = fmt(min(values)), fmt(max(values))
    return lo if lo == hi else f"{lo}–{hi}"


def budget_text(budgets: Iterable[dict]) -> str:
    """A compact budget of a row's runs: '2.5k steps · 5.1 ep · 20 min · cpu×1 · time limit'
    (a range where the seeds differ); '' when the records carry none."""
    budgets = [b for b in budgets if isinstance(b, dict)]
    if not budgets:
        return ""
    reasons = sorted({str(b.get("stop_reason")) for b in budgets if b.get("stop_reason")})
    if reasons == [NO_TRAINING]:
        return "no training"
    known = ("optimizer_steps", "epochs", "train_seconds", "stop_reason")
    if not any(b.get(key) is not None for b in budgets for key in known):
        return ""
    parts = []
    steps = _spread([b.get("optimizer_steps") for b in budgets], _count)
    if steps:
        parts.append(f"{steps} steps")
    epochs = _spread([b.get("epochs") for b in budgets], lambda e: f"{float(e):.1f}".rstrip("0").rstrip("."))
    if epochs:
        parts.append(f"{epochs} ep")
    seconds = _spread([b.get("train_seconds") for b in budgets], _duration)
    if seconds:
        parts.append(seconds)
    devices = sorted({f"{b.get('device') or '?'}×{b.get('threads') or '?'}" for b in budgets})
    parts.append("/".join(devices))
    if reasons:
        parts.append("/".join(reasons))
    return " · ".join(parts)


def machines_note(rows) -> list[str]:
    """Where a table's runs computed on more than one machine, a note naming the rows of each: the
    Budget's training times compare only within one machine."""
    several_datasets = len({dataset for row in rows for dataset in row.runs}) > 1
    by_machine: dict[str, list[str]] = {}
    for row in rows:
        for dataset, runs in row.runs.items():
            label = ", ".join(row.labels) + (f" on {dataset_name(dataset)}" if several_datasets else "")
            for machine in sorted(set(runs["machine"].dropna())):
                by_machine.setdefault(machine, []).append(label)
    if len(by_machine) < 2:
        return []
    parts = "; ".join(f"{machine}: {' / '.join(labels)}" for machine, labels in sorted(by_machine.items()))
    return [f"Runs on more than one machine (training times compare only within one): {parts}."]
