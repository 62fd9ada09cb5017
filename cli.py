"""``python cli.py COMMAND ...`` from a checkout: the same command line as ``featx``."""

from featx.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
