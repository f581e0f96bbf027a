"""``python -m custody``: the same command line as ``custody``."""

from custody.cli import main

raise SystemExit(main())
