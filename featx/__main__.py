"""``python -m featx``, the ``featx`` console script and a checkout's ``cli.py``: the featx command
line as a process's whole life."""

import os
import sys


def entry() -> None:
    """Run :func:`featx.cli.main` and exit with its status.

    Ctrl-C at any moment, even while modules load, ends in exit 130 with one line and no traceback.
    After an interrupt (130, 143) the process ends at once once its output is flushed (the work
    kept is already on disk): tearing down the interpreter while TensorFlow's and XLA's threads are
    mid-work can crash it.
    """
    try:
        from featx.cli import main

        status = main()
    except KeyboardInterrupt:
        print("interrupted; a rerun resumes from the work already kept", file=sys.stderr)
        status = 130
    if status in (130, 143):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    raise SystemExit(status)


if __name__ == "__main__":
    entry()
