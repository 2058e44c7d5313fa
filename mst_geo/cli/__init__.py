"""The ``mst-geo`` command line: each sub-command lives in its own module and only parses flags.

User errors (``MSTGeoError``), file-system errors about a named path and a full disk are printed
as one line on stderr with exit code 2, notes for the user (``MSTGeoWarning``) as one ``warning:`` line; Ctrl-C exits with code 130, SIGTERM in segment, bench noc, train and app with 143 (the resumable commands say how to resume);
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator

import typer

from mst_geo.errors import MSTGeoError, MSTGeoWarning, os_error_line

BANDS_HELP = ("Scene bands as R,G,B, by number (1-based, e.g. 4,3,2), by description (e.g. B04,B03,B02) or by colour "
              "interpretation (e.g. blue,green,red), or one "
              "grey band. Default: the bands whose colour interpretation, else description, is red, green, blue; "
              "else B4,B3,B2 when described with Sentinel-2 or Landsat 8/9 band names; else the first three that are not alpha, else the first as grey (a guess among unnamed bands "
              "prints a warning).")
"""--bands of every command that reads a scene (segment, app, bench --scene, train --scene)."""

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
        with _notes_as_lines():
            app()
    except MSTGeoError as error:
        _fail(str(error))
    except OSError as error:
        line = os_error_line(error)
        if line is None:  # not about a path the user gave, nor a full disk: a bug, keep the traceback
            raise
        _fail(line)


@contextlib.contextmanager
def _notes_as_lines() -> Iterator[None]:
    """``MSTGeoWarning``s print as one ``warning:`` line (not file:line and source), whatever the
    warning filters say; other warnings as usual. Both are restored on the way out."""
    with warnings.catch_warnings():
        show = warnings.showwarning
        warnings.simplefilter("default", MSTGeoWarning)

        def show_note(message, category, *rest) -> None:  # noqa: ANN001 (warnings.showwarning's signature)
            if issubclass(category, MSTGeoWarning):
                typer.secho(f"warning: {message}", err=True, fg=typer.colors.YELLOW)
            else:
                show(message, category, *rest)

        warnings.showwarning = show_note
        yield


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    sys.exit(2)

