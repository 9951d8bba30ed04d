"""``python -m labkit`` is the ``labkit`` command line."""
from labkit.cli import main

raise SystemExit(main())
