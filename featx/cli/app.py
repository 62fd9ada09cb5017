"""``featx``: parse the command line, run one command, translate featx's errors, return an exit status."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import warnings

from featx import __version__
from featx.cli import errors
from featx.cli.commands import COMMANDS
from featx.cli.options import HelpFormatter, check_apart, common_parser
from featx.cli.quiet import silence_tensorflow_import
from featx.exceptions import FeatxError, Terminated
from featx.fileio import file_system_error

EXIT_CODES = {
    0: "success",
    1: "bad input or a featx error (the message names the file or value and the problem)",
    2: "usage: unknown command or option, a missing or unreadable argument",
    3: "partial success: some inputs failed (predict lists them)",
    130: "interrupted (Ctrl-C); a rerun resumes where work was kept",
    143: "terminated (SIGTERM); worker processes and shared memory released, a rerun resumes",
}
NOISY_LIBRARIES = ("tensorflow", "keras", "absl", "h5py", "jax", "xgboost", "ray")
log = logging.getLogger("featx")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; building it imports no TensorFlow or Keras."""
    parser = argparse.ArgumentParser(
        prog="featx",
        formatter_class=HelpFormatter,
        description="featx: transfer learning on chest X-rays with cached ImageNet CNN features, honestly evaluated.",
        epilog="exit status:\n"
        + "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())
        + "\n\nstart with:\n  featx data fetch --dest data/cxr\n  featx extract --model efficientnet_lite0\n"
        "  featx fit --head mlp1000-750\n  featx COMMAND --help",
    )
    parser.add_argument("--version", action="version", version=f"featx {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = common_parser()
    for command in COMMANDS:
        command.register(commands, common)
    return parser


def command_parser(parser: argparse.ArgumentParser, args) -> argparse.ArgumentParser:
    """The parser of the command ``args`` runs (a subcommand's, or a sub-subcommand's such as ``data fetch``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if sub.get_default("run") is args.run:
                    return sub
                found = command_parser(sub, args)
                if found is not sub:
                    return found
    return parser


def configure_logging(verbose: int, quiet: bool) -> None:
    """featx's messages on stderr; TensorFlow's start-up chatter silenced unless ``-v``."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger("featx")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    if not verbose:
        silence_tensorflow_import()
        for library in NOISY_LIBRARIES:
            warnings.filterwarnings("ignore", module=library)
            logging.getLogger(library).setLevel(logging.ERROR)


class _Formatter(logging.Formatter):
    def format(self, record):
        message = record.getMessage()
        return message if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {message}"


def main(argv=None) -> int:
    """Run one command; return its exit status (see :data:`EXIT_CODES`).

    Every error reaches the user as one line: featx's own errors, an operating-system error (the
    path and its cause in words), memory running out; SIGTERM unwinds like Ctrl-C, so ``finally``
    blocks release worker processes and shared memory before the exit status 143.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        check_apart(command_parser(parser, args), args)
    except FeatxError as error:  # an option read but out of range, an output that overlaps an input
        print(f"featx: error: {error}", file=sys.stderr)
        return 1
    configure_logging(args.verbose or 0, args.quiet)
    with _terminate_as_exception():
        try:
            return args.run(args)
        except FeatxError as error:
            print(f"error: {errors.describe(error, args)}", file=sys.stderr)
            return 1
        except OSError as error:
            print(f"error: {file_system_error(error, '?', 'use').args[0]}", file=sys.stderr)
            return 1
        except MemoryError:
            print("error: out of memory; use a smaller --batch-size or --input-size", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted; a rerun resumes from the work already kept", file=sys.stderr)
            return 130
        except Terminated:
            print("terminated; a rerun resumes from the work already kept", file=sys.stderr)
            return 143


def _raise_terminated(signum, frame):
    raise Terminated


@contextlib.contextmanager
def _terminate_as_exception():
    """SIGTERM raises :class:`Terminated` in the main thread while the command runs."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread (a command run from a worker thread): leave it be
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
