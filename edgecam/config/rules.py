"""Building blocks of the config schema: the section base class and value rules whose messages a user
understands. Shared by edgecam.config and the event sections (edgecam.config.events)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict

from edgecam.detect.labels import COCO_LABELS


class Section(BaseModel):
    """A config section: frozen, unknown keys rejected (with a did-you-mean from edgecam.config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def between(lo: float, hi: float) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo:g} and {hi:g}")
        return value

    return check


def at_least(lo: float) -> Callable[[float], float]:
    def check(value: float) -> float:
        if value < lo:
            raise ValueError(f"must be at least {lo:g}")
        return value

    return check


def above(lo: float) -> Callable[[float], float]:
    def check(value: float) -> float:
        if value <= lo:
            raise ValueError(f"must be greater than {lo:g}")
        return value

    return check


def known_label(label: str) -> str:
    if label not in COCO_LABELS:
        guess = difflib.get_close_matches(label, COCO_LABELS, n=1)
        hint = f"; did you mean '{guess[0]}'?" if guess else " (see the labels in models/README.md)"
        raise ValueError(f"unknown class '{label}'{hint}")
    return label


Fraction = Annotated[float, AfterValidator(between(0.0, 1.0))]
PositiveFloat = Annotated[float, AfterValidator(above(0.0))]
NonNegativeFloat = Annotated[float, AfterValidator(at_least(0.0))]
Port = Annotated[int, AfterValidator(between(1, 65535))]
Label = Annotated[str, AfterValidator(known_label)]
