"""The package re-exports resolve to the submodule objects."""

from __future__ import annotations

import importlib

import pytest

import medtl.evaluation as ev


@pytest.mark.parametrize("name", ev.__all__)
def test_every_export_resolves(name):
    obj = getattr(ev, name)
    assert obj is getattr(importlib.import_module(obj.__module__), name)
    assert obj.__module__.startswith("medtl.evaluation.")


def test_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ev.nope  # noqa: B018
