"""A model's view: the side (or sides) in px that the predictor resizes a window to, and how many
passes it makes at a first click.

One side is one forward pass per click; several are averaged (multi-scale test-time augmentation).
Kept free of torch so the bench's baselines and tables can name views without loading a model.
"""

from __future__ import annotations

from collections.abc import Sequence

Sides = int | Sequence[int]


def view_sizes(sides: Sides) -> tuple[int, ...]:
    """One side or several, as a tuple."""
    return (int(sides),) if isinstance(sides, int) else tuple(int(side) for side in sides)


def describe_views(sides: Sides) -> str:
    """``352 px`` or ``320+384 px``: how logs, tables and the model list name a view."""
    return "+".join(str(side) for side in view_sizes(sides)) + " px"


def views_json(sides: Sides) -> int | list[int]:
    """A view as reports and cards store it: a number, or a list when the views are several."""
    sizes = view_sizes(sides)
    return sizes[0] if len(sizes) == 1 else list(sizes)


def describe_passes(passes: int) -> str:
    """``1 first-click pass`` or ``2 first-click passes``: how tables and the model list name them."""
    return f"{passes} first-click pass" + ("" if passes == 1 else "es")


def describe_extras(passes: int, flip: bool) -> list[str]:
    """``["2 first-click passes", "mirror-averaged"]``: what a model does beyond one plain pass at
    its view (one pass and no mirror go unsaid)."""
    passes_said = [describe_passes(passes)] if passes > 1 else []
    return passes_said + (["mirror-averaged"] if flip else [])


def describe_inference(sides: Sides, passes: int, flip: bool) -> str:
    """``288+416 px, 2 first-click passes, mirror-averaged``: a model's resolved inference
    settings as the model list and held-out logs name them."""
    return ", ".join([describe_views(sides), *describe_extras(passes, flip)])
