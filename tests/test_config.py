import pytest

from bench.config import ConfigError, get_path, parse_assignment, resolve_config


def test_layers_apply_in_order(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("seed: 7\nsplit: {max_history: 30}\n")
    config = resolve_config("smoke", [file], ["seed=9", "eval.ks=[1, 2]"], overrides={"dataset": "synthetic"})
    assert config["seed"] == 9  # --set beats --config
    assert config["split"]["max_history"] == 30  # --config beats defaults
    assert config["eval"]["ks"] == [1, 2]
    assert config["dataset"] == "synthetic"
    assert config["profile"] == "smoke"
    assert config.layers[0] == "defaults" and config.layers[1] == "profile:smoke"
    assert config["eval"]["max_k"] == 20  # untouched defaults survive deep merges


def test_unknown_keys_are_rejected():
    with pytest.raises(ConfigError, match="unknown config key 'split.max_hist'"):
        resolve_config(None, [], ["split.max_hist=3"])


def test_unknown_profile_lists_profiles():
    with pytest.raises(ConfigError, match="valid profiles: .*smoke"):
        resolve_config("turbo")


def test_values_are_parsed_as_yaml():
    assert parse_assignment("a.b=1e-3") == {"a": {"b": 1e-3}}
    assert parse_assignment("x=true") == {"x": True}
    assert parse_assignment("x=null") == {"x": None}
    with pytest.raises(ConfigError):
        parse_assignment("novalue")


def test_get_path():
    assert get_path({"a": {"b": 2}}, "a.b") == 2
    assert get_path({"a": {"b": 2}}, "a.c", "missing") == "missing"


def test_bad_config_file_is_named(tmp_path):
    file = tmp_path / "bad.yaml"
    file.write_text("seed: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        resolve_config(None, [file])


def test_exponent_floats_in_files_are_floats(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("train:\n  lr: 1e-3\n")
    assert resolve_config(None, [file])["train"]["lr"] == 0.001
    file.write_text("seed: 1e3\n")  # a float where an integer belongs is an error, not a silent cast
    with pytest.raises(ConfigError, match="seed"):
        resolve_config(None, [file])
