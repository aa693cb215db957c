"""One source per default: every config value's default is in bench/configs/defaults (or, for a
plug-in that prefers it, its registration's ``defaults=``), once; profiles hold only what differs;
the code reads the resolved config without a fallback of its own, and the few code-level defaults
a library caller sees agree with the config's."""
from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest

from bench.config import DEFAULTS_DIR, PROFILES_DIR, _load_yaml, default_layer, flatten, profile_names
from bench.data import DATASETS
from bench.plugins import METHODS, TOKENIZERS

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "tokenizers_zoo", "recommenders", "baselines", "sweeps")
# code that reads *records* (written by older versions, which may lack a key) may fall back on a value
READS_OLD_RECORDS = {"bench/records.py", "bench/tables/frame.py", "bench/plots.py"}


@pytest.mark.parametrize("profile", profile_names())
def test_a_profile_holds_only_what_differs_from_the_defaults(profile):
    defaults = flatten(default_layer())
    for path in sorted((PROFILES_DIR / profile).glob("*.yaml")):
        restated = [key for key, value in flatten(_load_yaml(path)).items()
                    if key in defaults and defaults[key] == value and type(defaults[key]) is type(value)]
        assert not restated, f"{path.relative_to(ROOT)} restates defaults: {restated}"


def test_no_default_is_defined_in_two_yaml_files_or_in_yaml_and_a_registration():
    seen: dict[str, str] = {}
    for path in sorted(DEFAULTS_DIR.glob("*.yaml")):
        for key in flatten(_load_yaml(path)):
            assert key not in seen, f"{key} is defined in {seen[key]} and {path.name}"
            seen[key] = path.name
    for registry, section in ((TOKENIZERS, "tokenizer"), (DATASETS, "data"), (METHODS, "baseline")):
        for plugin in registry.infos():
            for key in flatten({section: {plugin.name: plugin.defaults or {}}}):
                assert key not in seen, f"{key}: in {seen[key]} and in the registration of {plugin.name}"


def _config_fallbacks():
    """``<config-like>.get("<config key>", <literal>)``: a second default written in code."""
    leaves = {key.rsplit(".", 1)[-1] for key in flatten(default_layer())}
    found = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            where = str(path.relative_to(ROOT))
            if where in READS_OLD_RECORDS:
                continue
            source = path.read_text()
            for node in ast.walk(ast.parse(source)):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                        and len(node.args) == 2 and isinstance(node.args[0], ast.Constant)
                        and node.args[0].value in leaves
                        and isinstance(node.args[1], (ast.Constant, ast.List, ast.Tuple, ast.Dict))):
                    receiver = ast.get_source_segment(source, node.func.value)
                    if any(word in receiver for word in ("cfg", "config", "section", "params")):
                        found.append(f"{where}:{node.lineno}: {ast.get_source_segment(source, node)}")
                if (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "get_path"
                        and len(node.args) == 3 and isinstance(node.args[2], (ast.Constant, ast.List, ast.Tuple))):
                    found.append(f"{where}:{node.lineno}: {ast.get_source_segment(source, node)}")
    return found


def test_the_code_reads_config_values_without_a_fallback_of_its_own():
    assert not _config_fallbacks()


def test_code_level_defaults_agree_with_the_config():
    from recommenders.model import TigerModelConfig
    from tokenizers_zoo.base import Tokenizer

    model = default_layer()["model"]
    for field in dataclasses.fields(TigerModelConfig):
        if field.name in model and field.default is not dataclasses.MISSING:
            assert field.default == model[field.name], f"TigerModelConfig.{field.name}"
    tokenizer = default_layer()["tokenizer"]
    for name, parameter in inspect.signature(Tokenizer.__init__).parameters.items():
        if name in tokenizer and name not in ("seed", "device"):  # null there: the run's; None here: the config's
            assert parameter.default is None, f"Tokenizer({name}=...) has a default of its own"
    built = TOKENIZERS.get("lsh")()
    assert (built.progress, built.collapse_threshold, built.allow_collapse) == (
        tokenizer["progress"], tokenizer["collapse_threshold"], tokenizer["allow_collapse"])


def test_tokenizers_read_their_defaults_through_the_config_loader(monkeypatch):
    """Not a second YAML reader (plain yaml.safe_load takes 1e-3 for a string): a tokenizer's
    defaults are the default layer's section, whatever that layer holds."""
    from bench import config
    from tokenizers_zoo.base import default_params

    assert default_params("letter") == default_layer()["tokenizer"]["letter"]
    changed = default_layer()
    changed["tokenizer"]["letter"]["lr"] = 0.123
    monkeypatch.setattr("tokenizers_zoo.base.default_layer", lambda: changed)
    assert default_params("letter")["lr"] == 0.123 and TOKENIZERS.get("letter")().params["lr"] == 0.123
    assert config.parse_assignment("x=1e-3") == {"x": 0.001}
