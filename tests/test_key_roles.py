"""What a config key means beyond its value (identity, resume, tables, sweep estimates) is declared
once, on its schema field (bench.config_schema.role), and every module reads it from there."""
from __future__ import annotations

import pytest

from bench.config import check_key
from bench.config_schema import ROLES, keys_added_later, keys_with_role, method_budget_keys, role


@pytest.mark.parametrize("name", sorted(ROLES))
def test_every_key_with_a_role_is_a_config_key(name):
    keys = keys_with_role(name)
    assert keys, f"no key has role {name}"
    for key in keys:
        check_key(key)  # ConfigError for a key no default declares


def test_the_modules_read_their_key_lists_from_the_schema():
    import bench.identity
    import bench.tables.frame
    import recommenders.tiger
    import sweeps.launcher

    assert bench.identity.PATH_KEYS == keys_with_role("path")
    assert recommenders.tiger.RESUME_MAY_CHANGE == keys_with_role("may_change_on_resume")
    assert sweeps.launcher._TEST_TIME_COST == keys_with_role("test_time_cost")
    assert bench.tables.frame._NOT_A_SETTING == keys_with_role("not_a_setting")
    assert bench.tables.frame._AT_TEST == keys_with_role("at_test")


def test_what_the_roles_hold():
    assert set(keys_with_role("path")) == {"results_dir", "work_dir", "data_dir", "track"}  # where files go
    assert set(keys_with_role("path")) < set(keys_with_role("not_a_setting")) and "seed" in keys_with_role("not_a_setting")
    resume = set(keys_with_role("may_change_on_resume"))
    assert {"train.max_steps", "eval", "decode.sample_count", "tokenizer.cache_dir"} <= resume
    assert not resume & {"train.lr", "decode.beam_size", "model.d_model", "seed", "tokenizer.name"}  # these shape training
    assert set(keys_with_role("at_test")) == {"decode", "eval"}
    assert keys_with_role("budget") == ("train.max_steps", "train.max_epochs", "train.batch_size")


def test_budget_keys_and_keys_added_later_are_read_from_the_schema():
    import bench.identity
    import recommenders.trainer

    assert method_budget_keys("tiger") == keys_with_role("budget")  # TIGER reads the train section
    assert method_budget_keys("sasrec") == () and method_budget_keys("nope") == ()  # early stopping; unknown
    assert keys_added_later() == {"model.arch": "encoder_decoder", "train.loss_positions": "last",
                                  "tokenizer.allow_collapse": False}
    assert bench.identity.ADDED_LATER is recommenders.trainer.ADDED_LATER
    assert bench.identity.ADDED_LATER == keys_added_later()


def test_an_unknown_role_is_refused():
    with pytest.raises(ValueError, match="unknown key role"):
        role("pathh")
    with pytest.raises(ValueError, match="unknown key role"):
        keys_with_role("pathh")
