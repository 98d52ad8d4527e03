"""The `>>>` examples in the public entry points' docstrings run and give what they show."""
import doctest
import importlib

import pytest

# the slow ones train tiny models for an epoch (train_model, a 2-trial search, an evaluation)
MODULES = ["autoaug", "autoaug.config", "autoaug.opspec", "autoaug.policy", "autoaug.ops", "autoaug.augment",
           "autoaug.stats"] + [pytest.param(m, marks=pytest.mark.slow) for m in (
               "autoaug.train", "autoaug.search.runner", "autoaug.search.freeze", "autoaug.evaluate")]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path):
    result = doctest.testmod(importlib.import_module(name), extraglobs={"tmp": str(tmp_path)},
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"
