"""mst-geo: interactive segmentation of GeoTIFF scenes of any size with the MST model.

Public API (imported lazily, so ``import mst_geo`` stays light):
``load_model`` (a checkpoint path, a preset or "default" -> (model, card)), ``Segmenter``
(notebooks, the web app), ``segment_scene`` (what ``mst-geo segment`` runs) and ``Click``.
"""

from __future__ import annotations

import warnings
from importlib import import_module
from typing import Any

from tqdm import TqdmWarning

with warnings.catch_warnings():  # a notebook without ipywidgets gets text bars, not a warning, whoever
    warnings.simplefilter("ignore", TqdmWarning)  # imports tqdm.auto first (the app, timm's huggingface_hub)
    import tqdm.auto  # noqa: F401

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": ("mst_geo.model.checkpoint", "resolve_model"),
    "Segmenter": ("mst_geo.api", "Segmenter"),
    "segment_scene": ("mst_geo.api", "segment_scene"),
    "Click": ("mst_geo.clicks.click", "Click"),
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mst_geo' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = getattr(import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
