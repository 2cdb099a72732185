"""``python -m portal.cli``: the same command line as ``portal``."""

from . import main

main()
