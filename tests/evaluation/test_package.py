"""The package re-exports resolve to the submodule objects."""

from __future__ import annotations

import importlib

import pytest

import medtl.evaluation as ev


@pytest.mark.parametrize("name", ev.__all__)
def test_every_export_resolves(name):
    obj = getattr(ev, name)
    # constants (e.g. CALIBRATION_MINIMUMS) carry no __module__: use the module the table names
    module = getattr(obj, "__module__", None) or f"medtl.evaluation.{ev._EXPORTS[name]}"
    assert obj is getattr(importlib.import_module(module), name)
    assert module.startswith("medtl.evaluation.")


def test_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ev.nope  # noqa: B018
