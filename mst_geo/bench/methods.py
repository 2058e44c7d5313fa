"""Method names of ``mst-geo bench noc --model`` -> objects with set_image/predict.

A baseline name (``grabcut``, ``random-walker``, ``watershed``, ``disk``) gives that baseline;
anything else goes through ``mst_geo.model.resolve_model`` (``default``, a preset, a checkpoint
path) and is wrapped in the shared ``Predictor``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mst_geo.bench.baselines import BASELINES, make_baseline
from mst_geo.bench.loop import ClickMethod
from mst_geo.errors import MSTGeoError


def split_names(values: Iterable[str]) -> list[str]:
    """Flatten repeated and comma-separated option values, keeping order, dropping repeats."""
    names = [part.strip() for value in values for part in value.split(",") if part.strip()]
    return list(dict.fromkeys(names))


def method_label(name: str, zoom_in: bool = True, flip: bool = False) -> str:
    """The name a method has in tables: baselines as given, checkpoints by file stem, plus the
    inference options that differ from the default (no zoom, flip)."""
    if name in BASELINES:
        return name
    label = Path(name).stem if name.endswith(".safetensors") else name
    options = [text for text, used in (("no zoom", not zoom_in), ("flip", flip)) if used]
    return f"{label} ({', '.join(options)})" if options else label


def resolve_method(name: str, device: str = "cpu", zoom_in: bool = True, flip: bool = False) -> ClickMethod:
    """A baseline by name, or an MST checkpoint/preset wrapped in the iterative ``Predictor``."""
    if name in BASELINES:
        return make_baseline(name)
    from mst_geo.clicks.predictor import Predictor
    from mst_geo.model import list_presets, resolve_model

    if name != "default" and name not in list_presets() and not Path(name).expanduser().exists():
        raise MSTGeoError(
            f"unknown model {name!r}: not a baseline ({', '.join(BASELINES)}), a preset "
            f"({', '.join(list_presets())}), 'default' or an existing checkpoint file"
        )
    model, _card = resolve_model(name)
    return Predictor(model, device=device, zoom_in=zoom_in, flip=flip)
