"""Clicks: the type, the simulated clickers (eval and training) and the iterative predictor."""

from mst_geo.clicks.click import Click

__all__ = ["Click"]
