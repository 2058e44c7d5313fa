"""Imports every sub-command module so that each registers itself on the shared Typer app."""

# One line per command module (each agent/owner adds its own):
from mst_geo.cli import train  # noqa: E402,F401
from mst_geo.cli import bench  # noqa: E402,F401
from mst_geo.cli import segment  # noqa: E402,F401
from mst_geo.cli import webapp  # noqa: E402,F401  (not app.py: that would shadow the Typer `app`)
from mst_geo.cli import models  # noqa: E402,F401
