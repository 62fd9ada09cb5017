"""The featx command line: the ``featx`` console script, ``python -m featx`` and a checkout's ``cli.py``."""

from featx.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
