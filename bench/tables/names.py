"""How tables name and order things: metric headers, and display names and order of datasets,
methods and tokenizers, all read from the plug-in registries (no name lists here)."""
from __future__ import annotations

import numbers
from bench.config_schema import method_budget_keys
from bench.plugins import METHODS, TOKENIZERS
from bench.data import DATASETS

DEFAULT_METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@20", "ndcg@20")
MAIN_METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
SELECT_METRIC = "ndcg@10"  # model selection among configurations, on validation
SHORT = {"recall": "R", "ndcg": "N", "coverage": "Cov", "entropy": "H", "invalid_id_rate": "Invalid"}
SIGNIFICANCE_MARK = "†"
WORSE_MARK = "‡"  # significantly worse than the reference (ablation tables against their default)
IMPROVEMENT_ROW = "Improvement over best baseline"
NO_TRAINING = "no training (closed form)"


def _methods():
    return METHODS


def _tokenizers():
    return TOKENIZERS


def _datasets():
    return DATASETS


def metric_header(metric: str) -> str:
    if " " in metric:  # "cold recall@10" -> "cold R@10"
        prefix, _, rest = metric.rpartition(" ")
        return f"{prefix} {metric_header(rest)}"
    name, _, k = metric.partition("@")
    return f"{SHORT.get(name, name)}@{k}"


def dataset_name(dataset: str) -> str:
    return _datasets().display(dataset)


def tokenizer_name(tokenizer) -> str:
    return _tokenizers().display(tokenizer)


def is_generative(method_key) -> bool:
    """Whether a method's registry entry says it is generative (TIGER); unknown names are not."""
    methods = _methods()
    return isinstance(method_key, str) and method_key in methods and methods.info(method_key).generative


def method_sections(method_key) -> tuple[str, ...]:
    """The config sections a registered method reads (its descriptor's ``sections``)."""
    methods = _methods()
    if not isinstance(method_key, str) or method_key not in methods:
        return ()
    return tuple(methods.info(method_key).extras.get("sections", ()))


def section_owners(section: str) -> set[str]:
    """The registered methods that read config section ``section``."""
    return {p.name for p in _methods().infos() if section in p.extras.get("sections", ())}


def budget_keys(method_key) -> tuple[str, ...]:
    """The config keys that fix ``method_key``'s training budget under a profile (none where unregistered)."""
    return method_budget_keys(method_key) if isinstance(method_key, str) else ()


def order_datasets(datasets) -> list[str]:
    datasets = list(dict.fromkeys(datasets))
    registry = _datasets()
    return sorted(datasets, key=lambda d: (registry.order(d), str(d)))


def method_order(method_key: str, tokenizer, label: str) -> tuple:
    """Baselines first (in their registry order), then the generative rows by tokenizer order."""
    if is_generative(method_key):
        return (1, _methods().order(method_key), _tokenizers().order(tokenizer), str(tokenizer), label)
    return (0, _methods().order(method_key), 0, str(method_key), label)


def value_order(value) -> tuple:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):  # numpy numbers too
        return (0, float(value), "")
    return (1, 0.0, str(value))


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)
