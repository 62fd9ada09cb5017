"""``python -m featx``: the featx command line."""

from featx.cli import main

raise SystemExit(main())
