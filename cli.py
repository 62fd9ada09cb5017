"""``python cli.py COMMAND ...`` from a checkout: the same command line as ``featx``."""

from featx.__main__ import entry

if __name__ == "__main__":
    entry()
