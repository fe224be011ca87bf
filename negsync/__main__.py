"""``python -m negsync`` is the ``negsync`` command."""

from negsync.cli import main

raise SystemExit(main())
