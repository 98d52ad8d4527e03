"""The `>>>` examples in the public entry points' docstrings run and give what they show."""
import doctest
import importlib

import pytest

MODULES = ["autoaug", "autoaug.opspec", "autoaug.policy", "autoaug.ops", "autoaug.augment",
           pytest.param("autoaug.train", marks=pytest.mark.slow)]  # trains a tiny model one epoch


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name),
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"
