"""``python -m mst_geo`` = the ``mst-geo`` command (for machines where the console script is not
installed, e.g. a lent GPU box running from a source tree)."""

from mst_geo.cli import main

main()
