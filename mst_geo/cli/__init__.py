"""The ``mst-geo`` command line: each sub-command lives in its own module and only parses flags.

User errors (``MSTGeoError``) and file-system errors (a path that cannot be read or written) are
printed as one line on stderr with exit code 2, Ctrl-C as one line with exit code 130 (commands
that resume say how); anything else is a bug and keeps its traceback.
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
        _fail(str(error), 2)
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        _fail(f"{where}{error.strerror or error}", 2)
    except KeyboardInterrupt:
        _fail("interrupted", 130)


def _fail(message: str, code: int) -> None:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    sys.exit(code)
