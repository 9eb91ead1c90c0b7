"""Field types shared by the artifacts: probabilities, rates, counts and spreads with their
ranges, so every schema states them the same way.

The ``Optional*`` types read NaN and infinite values as ``None`` before checking the range
(an undefined rate is ``null`` in JSON, never a NaN that slips past the bounds).
"""

from __future__ import annotations

import numbers
from typing import Annotated

from pydantic import BeforeValidator, Field, Strict

from medtl.artifacts.base import finite_or_none

__all__ = [
    "Count",
    "Flag",
    "OptionalCorrelation",
    "OptionalCount",
    "OptionalProbability",
    "OptionalSpread",
    "Probability",
    "Spread",
    "undefined_as_none",
]


def undefined_as_none(value: object) -> object:
    """NaN and infinite floats as ``None``; anything else as is (a before-validator)."""
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return finite_or_none(value)  # float, numpy floating
    return value


#: a JSON boolean: ``"yes"`` or ``1`` is no boolean in a file (as in the JSON Schema).
Flag = Annotated[bool, Strict()]
#: a probability, rate or threshold in [0, 1].
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
#: the same, ``None`` when undefined.
OptionalProbability = Annotated[Probability | None, BeforeValidator(undefined_as_none)]
#: a count of images, patients, seeds or resamples.
Count = Annotated[int, Field(ge=0)]
OptionalCount = Count | None
#: a standard deviation, standard error or width: never negative.
Spread = Annotated[float, Field(ge=0.0)]
OptionalSpread = Annotated[Spread | None, BeforeValidator(undefined_as_none)]
#: a rank or linear correlation in [-1, 1], ``None`` when undefined.
OptionalCorrelation = Annotated[
    Annotated[float, Field(ge=-1.0, le=1.0)] | None, BeforeValidator(undefined_as_none)
]
