"""The one click type shared by the predictor, the clickers, the trainer and the geo layer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Click:
    """A click in image pixel coordinates (row ``y``, column ``x``; pixel centres at .5 are fine)."""

    y: float
    x: float
    positive: bool = True
