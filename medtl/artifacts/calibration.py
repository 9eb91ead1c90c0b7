"""A fitted calibrator as files store it (``model.json``'s ``calibration``, ``evaluation.json``'s
``calibrator``): the ``to_dict()`` of :mod:`medtl.evaluation.calibrators`.

The value stays a plain ``dict`` in Python (readers pass it to ``calibrator_from_dict``);
validation checks its shape: the method names the parameters, a temperature is positive, an
isotonic map's probabilities lie in [0, 1] on sorted knots.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, with_config
from typing_extensions import TypedDict

__all__ = ["CalibrationParams", "IsotonicParams", "PlattParams", "TemperatureParams"]

_Finite = Annotated[float, Field(allow_inf_nan=False)]
_Probability = Annotated[float, Field(ge=0.0, le=1.0)]


@with_config(ConfigDict(extra="forbid"))
class TemperatureParams(TypedDict):
    """``{"method": "temperature", "temperature": T, "n_classes": k}``: softmax(z / T)."""

    method: Literal["temperature"]
    temperature: Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
    n_classes: Annotated[int, Field(ge=2)]


@with_config(ConfigDict(extra="forbid"))
class PlattParams(TypedDict):
    """``{"method": "platt", "a": a, "b": b}``: sigmoid(a z + b), binary."""

    method: Literal["platt"]
    a: _Finite
    b: _Finite


@with_config(ConfigDict(extra="forbid"))
class IsotonicParams(TypedDict):
    """``{"method": "isotonic", "x": [...], "y": [...]}``: knots of a monotone map, binary."""

    method: Literal["isotonic"]
    x: Annotated[list[_Finite], Field(min_length=1)]
    y: Annotated[list[_Probability], Field(min_length=1)]


def _knots(value: IsotonicParams) -> IsotonicParams:
    x, y = value["x"], value["y"]
    if len(x) != len(y):
        raise ValueError(f"isotonic knots: {len(x)} x values but {len(y)} y values")
    if any(b < a for a, b in pairwise(x)):
        raise ValueError("isotonic knots: x must be sorted")
    return value


#: One fitted calibrator, told apart by ``method``.
CalibrationParams = Annotated[
    TemperatureParams | PlattParams | Annotated[IsotonicParams, AfterValidator(_knots)],
    Field(discriminator="method"),
]
