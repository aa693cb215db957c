"""The code's layers (DESIGN.md "Layers"): imports point down, checked by import-linter against the
contract in pyproject.toml; every module sits in a named layer; a function-local import of project
code is rare and says what heavy dependency it defers; registries refuse what they cannot hold."""
from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

from bench.registry import Registry

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "tokenizers_zoo", "recommenders", "baselines", "sweeps")
MAX_DEFERRED = 15


def contract() -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert config["root_packages"] == list(PACKAGES)
    [layers] = [c for c in config["contracts"] if c["type"] == "layers"]
    return layers


def test_imports_point_down(capsys):
    from importlinter.cli import lint_imports

    status = lint_imports(config_filename=str(ROOT / "pyproject.toml"))
    report = capsys.readouterr().out
    assert status == 0, report[report.find("Broken contracts"):]


def test_every_module_is_in_a_named_layer():
    named = {name.strip() for line in contract()["layers"] for part in line.split("|") for name in part.split(":")}
    modules = [info.name for pkg in PACKAGES
               for info in pkgutil.walk_packages(importlib.import_module(pkg).__path__, pkg + ".")]
    unplaced = [m for m in modules if not any(m == n or m.startswith(n + ".") for n in named)
                and m.split(".")[0] == "bench"]  # the other packages are layers as a whole
    assert not unplaced, f"add these modules to a layer in pyproject.toml [tool.importlinter]: {unplaced}"


def _function_local_project_imports():
    found = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            lines = path.read_text().splitlines()
            for func in ast.walk(ast.parse("\n".join(lines))):
                if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(func):
                    module = (node.module if isinstance(node, ast.ImportFrom) and node.level == 0 else
                              node.names[0].name if isinstance(node, ast.Import) else None)
                    if module and module.split(".")[0] in PACKAGES:
                        above = [line.strip() for line in lines[max(0, node.lineno - 4): node.lineno]]
                        found.append((f"{path.relative_to(ROOT)}:{node.lineno}", any("# defer:" in a for a in above)))
    return found


def test_function_local_project_imports_are_few_and_say_what_they_defer():
    found = _function_local_project_imports()
    assert len(found) <= MAX_DEFERRED, [where for where, _ in found]
    assert not [where for where, said in found if not said], \
        "a function-local project import needs a '# defer: <heavy dependency>' comment just above it"


def test_the_registry_refuses_a_second_entry_under_one_name():
    registry = Registry("thing")
    registry.register("a", object())
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a", object())
    registry.unregister("a")
    registry.register("a", object())  # after unregistering, the name is free again


def test_the_registry_refuses_an_entry_of_the_wrong_class():
    registry = Registry("method", base="bench.methods:Recommender")
    registry.register("not_a_method", "bench.split:LeaveOneOutSplit")
    registry.register("eager", dict)
    for name in ("not_a_method", "eager"):
        with pytest.raises(TypeError, match="not a subclass of bench.methods.Recommender"):
            registry.get(name)


def test_every_registered_plugin_has_its_base_class():
    from bench.methods import Recommender
    from bench.plugins import METHODS, TOKENIZERS
    from tokenizers_zoo.base import Tokenizer

    for registry, base in ((METHODS, Recommender), (TOKENIZERS, Tokenizer)):
        for name in registry:
            assert issubclass(registry.get(name), base)
