"""``--device`` flags: one check, so every command refuses an unknown or absent device in one line."""

from __future__ import annotations

import torch

from mst_geo.errors import MSTGeoError


def torch_device(device: str | torch.device) -> torch.device:
    """The torch device for ``--device``, refused in one line when unknown or absent here."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise MSTGeoError(f"unknown device {device!r} (use cpu, cuda, cuda:1 or mps)") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(parsed.type, False):
        raise MSTGeoError(f"device {str(device)!r} is not available on this machine (use cpu)")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise MSTGeoError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return parsed
