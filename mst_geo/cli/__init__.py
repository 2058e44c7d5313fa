"""The ``mst-geo`` command line: each sub-command lives in its own module and only parses flags.

User errors (``MSTGeoError``) are printed as one line on stderr with exit code 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import typer

from mst_geo.errors import MSTGeoError

app = typer.Typer(
    name="mst-geo",
    help="Segment objects in GeoTIFF scenes with a few clicks (MST: adaptive multi-scale tokens).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module adds its command(s) to `app` on import.
from mst_geo.cli import commands_registry  # noqa: E402,F401


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except MSTGeoError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        sys.exit(2)
