"""Strip outputs and execution counts from notebooks, so git holds only their source.

Outputs of the analyst notebooks depend on the machine and the model and would bloat the repository;
CI executes the notebooks anyway (tests/test_notebooks.py). Run before committing a notebook:

    python scripts/strip_notebook_outputs.py notebooks/*.ipynb
    python scripts/strip_notebook_outputs.py --check notebooks/*.ipynb   # exit 1 if any has outputs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

from mst_geo.atomic import write_atomic

RUN_METADATA = ("execution", "collapsed", "scrolled")
"""Cell metadata that records a run or a view, not the source."""


def is_stripped(notebook: nbformat.NotebookNode) -> bool:
    """Whether no code cell holds outputs, an execution count or run metadata."""
    return all(
        not cell.get("outputs") and cell.get("execution_count") is None
        and not any(key in cell.metadata for key in RUN_METADATA)
        for cell in notebook.cells if cell.cell_type == "code"
    ) and "widgets" not in notebook.metadata


def strip(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook without outputs, execution counts, run metadata or widget state."""
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            for key in RUN_METADATA:
                cell.metadata.pop(key, None)
    notebook.metadata.pop("widgets", None)
    return notebook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path, help="notebook files (.ipynb)")
    parser.add_argument("--check", action="store_true", help="only report notebooks with outputs; exit 1 if any")
    args = parser.parse_args(argv)
    dirty = []
    for path in args.notebooks:
        notebook = nbformat.read(path, as_version=4)
        if is_stripped(notebook):
            continue
        dirty.append(path)
        if not args.check:
            stripped = strip(notebook)
            write_atomic(path, lambda temporary: nbformat.write(stripped, str(temporary)))
    verb = "has outputs" if args.check else "stripped"
    for path in dirty:
        print(f"{path}: {verb}")
    return 1 if args.check and dirty else 0


if __name__ == "__main__":
    sys.exit(main())
