"""The fuzzer: every command run in-process on generated hostile option values, manifests, stored
JSON files and file-system states (read-only, full, a file in place of a folder, a pipe).

Each example runs in a fresh copy of a sandbox (real radiographs, a real feature store, a real
model folder) and must end with exit 0, 1, 2 or 3; anything but 0 with one message and no
traceback; no file changed outside the command's own folders (the cache and the paths named on
the command line); nothing half-written (no temporary file left, an output named on the command
line either whole or untouched). The fast tier runs a bounded number of examples per command;
``-m slow`` runs many more. Failures hypothesis finds become the explicit tests of tomorrow.
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import json
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featx.cli import main
from tests.filesystems import fill, snapshot
from tests.realdata import copy_subset, pick_rows

SIZE = ["--input-size", "32x32"]
BACKBONE = ["--model", "mobilenet_v2", "--weights", "none", *SIZE]
HEAD = ["--head", "logreg", "--folds", "3"]
DATA = ["--data", "data", "--cache", "cache"]

BASE = {
    "models": ["models"],
    "extract": ["extract", *BACKBONE, *DATA],
    "fit": ["fit", *BACKBONE, *HEAD, *DATA],
    "compare": ["compare", *DATA, "--csv", "out/compare.csv"],
    "train": ["train", *BACKBONE, *HEAD, *DATA, "--model-dir", "out/model"],
    "predict": ["predict", "--model-dir", "model", "ext/images", "--out", "out/predictions.csv"],
    "validate": ["validate", "--model-dir", "model", "--data", "ext", "--out", "out/validation"],
    "audit": ["audit", *BACKBONE, "--head", "logreg", "--folds", "3", *DATA],
    "reproduce": ["reproduce", "--models", "mobilenet_v2", *SIZE, "--folds", "2", *DATA, "--out", "out/report"],
    "finetune": ["finetune", *BACKBONE, "--epochs", "1", "--folds", "2", *DATA],
    "data": ["data", "fetch", "--from", "data", "--dest", "out/fetched"],
}
"""One valid, cheap command line per command, run in the sandbox's folder."""

HANG_SECONDS = 1800
"""A fuzz module that runs longer than this is hung (a command blocked on a pipe, say): dump and exit."""
HEAVY = {"audit", "reproduce", "finetune"}
"""Commands whose valid run takes long: their examples always carry at least one hostile value."""

NUMBERS = ["0", "-1", "1", "2", "nan", "inf", "-inf", "1e309", "4294967296", "99999999999999999999", "1.5", "", "x"]
SIZES = ["32x32", "8x8", "7x7", "0x0", "100000x100000", "4097x8", "x", "32", "32x32x3", "-32x32", ""]
HEADS = ["logreg", "xgb", "mlp0-0", "mlp99999999999", "mlp8-8", "mlp-1", "paper", "mlp8x8", "", "../logreg"]
NAMES = ["", ".", "..", "x" * 300, "../outside/x", "a/" * 40 + "b", "nonexistent/deep/x"]
"""Path values: empty, the folder itself, its parent, a name too long, ... (made relative to the sandbox)."""
STATE_PATHS = ["a_file", "a_file/x", "a_folder", "read_only/x", "full/x", "fifo", "link_to_file", "dangling"]
"""Path values naming the sandbox's prepared file-system states (see :func:`make_states`)."""
PATH_OPTIONS = {"--data", "--cache", "--out", "--csv", "--model-dir", "--explain", "--dest", "--from", "--weights"}
OUTPUT_OPTIONS = {"--cache", "--out", "--csv", "--model-dir", "--explain", "--dest"}
NUMERIC_OPTIONS = {
    "--folds",
    "--seed",
    "--epochs",
    "--batch-size",
    "--lr",
    "--workers",
    "--jobs",
    "--gpus-per-worker",
    "--finetune-from",
}


def options_of(command: str) -> dict[str, object]:
    """The options of a command as its argparse parser declares them: flag -> action."""
    from featx.cli.app import build_parser

    parser = build_parser()
    sub = next(action for action in parser._actions if action.dest == "command")
    chosen = sub.choices[command]
    if command == "data":
        chosen = next(action for action in chosen._actions if action.dest and action.choices).choices["fetch"]
    return {
        flag: action
        for action in chosen._actions
        for flag in action.option_strings
        if flag.startswith("--") and flag not in ("--help", "--version")
    }


def values_for(flag: str, action) -> st.SearchStrategy[str]:
    """Hostile and ordinary values for one option."""
    if action.choices:
        return st.sampled_from([*map(str, action.choices), "", "NONE", "../x"])
    if flag == "--input-size":
        return st.sampled_from(SIZES)
    if flag == "--head":
        return st.sampled_from(HEADS)
    if flag in PATH_OPTIONS:
        return st.sampled_from(NAMES + STATE_PATHS + ["out/fresh", "cache", "data", "model", "ext"])
    if flag in NUMERIC_OPTIONS or action.type is not None:
        return st.sampled_from(NUMBERS)
    return st.one_of(st.sampled_from(NUMBERS + NAMES), st.text(max_size=20))


@dataclass(frozen=True, kw_only=True)
class Outcome:
    status: int
    stdout: str
    stderr: str


def run_in(folder: Path, argv: list[str]) -> Outcome:
    """``featx`` in this process with ``folder`` as the working folder; argparse's exits become statuses."""
    stdout, stderr = io.StringIO(), io.StringIO()
    previous = Path.cwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                status = main(argv)
            except SystemExit as exit_:  # argparse: usage errors and --help
                status = exit_.code if isinstance(exit_.code, int) else 2
    finally:
        os.chdir(previous)
    return Outcome(status=status, stdout=stdout.getvalue(), stderr=stderr.getvalue())


def _mounted(folder: Path, *options: str) -> bool:
    command = ["mount", "-t", "tmpfs", "-o", ",".join(["size=64k", *options]), "tmpfs", str(folder)]
    return subprocess.run(command, capture_output=True).returncode == 0


def make_states(sandbox: Path) -> list[Path]:
    """File-system states the hostile path values name; returns the mount points to unmount."""
    (sandbox / "a_file").write_text("not a folder\n")
    (sandbox / "a_folder").mkdir()
    (sandbox / "link_to_file").symlink_to(sandbox / "a_file")
    (sandbox / "dangling").symlink_to(sandbox / "nowhere")
    os.mkfifo(sandbox / "fifo")
    mounts = []
    for name, options in (("read_only", ("ro",)), ("full", ())):
        (sandbox / name).mkdir()
        if _mounted(sandbox / name, *options):
            mounts.append(sandbox / name)
    if sandbox / "full" in mounts:
        fill(sandbox / "full" / "filler")
    return mounts


def drain_fifo(path: Path, stop: threading.Event) -> threading.Thread:
    """A reader for the sandbox's pipe, so that a command writing through it never blocks."""

    def read():
        while not stop.is_set():
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                while not stop.wait(0.01):
                    with contextlib.suppress(BlockingIOError):
                        os.read(fd, 1 << 16)
            finally:
                os.close(fd)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def seed_sandbox(tmp_path_factory):
    """Real radiographs (``data``: 36, ``ext``: 9 others), a real store and results in ``cache``, a
    real model folder in ``model``: what every example starts from (copied)."""
    from tests.conftest import _need_data

    _need_data()
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)  # a hang fails the run with a dump, never stalls CI
    root = tmp_path_factory.mktemp("fuzz_seed")
    training = pick_rows({"covid": 12, "bacterial": 6, "viral": 6, "normal": 12}, seed=11)
    copy_subset(training, root / "data")
    others = pick_rows({"covid": 20, "bacterial": 10, "viral": 10, "normal": 20}, seed=12)
    others = others[~others["filename"].isin(training["filename"])].groupby("label").head(3)
    copy_subset(others, root / "ext")
    for argv in (BASE["extract"], BASE["fit"], ["train", *BACKBONE, *HEAD, *DATA, "--model-dir", "model"]):
        outcome = run_in(root, [*argv, "-q"])
        assert outcome.status == 0, outcome.stderr
    yield root
    faulthandler.cancel_dump_traceback_later()


@contextlib.contextmanager
def sandbox_from(seed: Path):
    """A fresh copy of the seed sandbox beside an ``outside`` folder, with its file-system states."""
    parent = Path(tempfile.mkdtemp(prefix="featx-fuzz-"))
    sandbox = parent / "sandbox"
    shutil.copytree(seed, sandbox, symlinks=True)
    (parent / "outside").mkdir()
    (parent / "outside" / "keep.txt").write_text("a file featx must not touch\n")
    mounts = make_states(sandbox)
    stop = threading.Event()
    reader = drain_fifo(sandbox / "fifo", stop)
    try:
        yield parent, sandbox
    finally:
        stop.set()
        reader.join(timeout=5)
        for mount in mounts:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        shutil.rmtree(parent, ignore_errors=True)


def allowed_roots(sandbox: Path, argv: list[str]) -> list[Path]:
    """The command's own folders: its cache (default ``cache``), the outputs it was given (and, as
    featx follows links, what a link given as an output points to), and the default folders of the
    commands that have them."""
    roots = [sandbox / "cache", sandbox / "reports"]
    for index, token in enumerate(argv[:-1]):
        if token in OUTPUT_OPTIONS:
            roots += [sandbox / argv[index + 1], Path(os.path.realpath(sandbox / argv[index + 1]))]
    if "data" in argv[:1]:
        roots.append(sandbox / "data" / "cxr")
    return [Path(os.path.abspath(root)) for root in roots]


def check(parent: Path, sandbox: Path, argv: list[str], before: dict, outcome: Outcome) -> None:
    """The fuzzer's invariants for one example."""
    assert outcome.status in (0, 1, 2, 3), (argv, outcome)
    assert "Traceback" not in outcome.stderr, (argv, outcome.stderr)
    if outcome.status == 1:
        messages = [line for line in outcome.stderr.splitlines() if line.startswith(("error:", "featx: error:"))]
        assert len(messages) == 1, (argv, outcome.stderr)
    after = snapshot(parent)
    roots = allowed_roots(sandbox, argv)
    for path in set(before) | set(after):
        if before.get(path) == after.get(path):
            continue
        name = str(path.relative_to(parent))
        if name.startswith(("sandbox/full/", "sandbox/fifo")):
            continue
        path = Path(os.path.abspath(path))
        inside = any(path == root or root in path.parents for root in roots)
        holds_an_output = any(path in root.parents for root in roots)  # a folder made to hold one
        assert inside or holds_an_output, (argv, name, "changed outside")
        assert not name.endswith((".tmp", ".partial")), (argv, name, "temporary file left")


def fuzz_examples(command: str):
    """A hypothesis strategy: the command's valid line with one to three options replaced or added
    (a flag that takes no value is added alone)."""
    options = options_of(command)
    flags = sorted(options)

    def values(flag):
        if options[flag].nargs == 0:
            return st.tuples(st.just(flag), st.none())
        return st.tuples(st.just(flag), values_for(flag, options[flag]))

    mutation = st.sampled_from(flags).flatmap(values)
    return st.lists(mutation, min_size=1 if command in HEAVY else 0, max_size=3)


def apply(base: list[str], mutations) -> list[str]:
    """``base`` with each (flag, value) replacing that flag's value, or appended."""
    argv = list(base)
    for flag, value in mutations:
        if value is None:
            argv.append(flag)
        elif flag in argv and argv.index(flag) + 1 < len(argv):
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    return [*argv, "-q"]


def fuzz_command(seed: Path, command: str, mutations) -> None:
    argv = apply(BASE[command], mutations)
    with sandbox_from(seed) as (parent, sandbox):
        before = snapshot(parent)
        outcome = run_in(sandbox, argv)
        check(parent, sandbox, argv, before, outcome)


FAST_EXAMPLES = {"models": 10, "audit": 4, "reproduce": 3, "finetune": 3}


@pytest.mark.parametrize("command", list(BASE))
def test_options_fuzzed(seed_sandbox, command):
    @settings(
        max_examples=FAST_EXAMPLES.get(command, 8),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        derandomize=True,
    )
    @given(mutations=fuzz_examples(command))
    def example(mutations):
        fuzz_command(seed_sandbox, command, mutations)

    example()


@pytest.mark.slow
@pytest.mark.parametrize("command", list(BASE))
def test_options_fuzzed_long(seed_sandbox, command):
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(mutations=fuzz_examples(command))
    def example(mutations):
        fuzz_command(seed_sandbox, command, mutations)

    example()


def mutated_json(value, data) -> object:
    """A hostile edit of a JSON value: a field dropped, added, nulled, retyped or made huge."""
    if isinstance(value, dict) and value:
        key = data.draw(st.sampled_from(sorted(value)))
        edit = data.draw(st.sampled_from(["drop", "extra", "null", "string", "negative", "huge", "nan", "deeper"]))
        changed = dict(value)
        if edit == "drop":
            del changed[key]
        elif edit == "extra":
            changed["unexpected_field"] = 1
        elif edit == "null":
            changed[key] = None
        elif edit == "string":
            changed[key] = "abc"
        elif edit == "negative":
            changed[key] = -1
        elif edit == "huge":
            changed[key] = 10**30
        elif edit == "nan":
            changed[key] = float("nan")
        else:
            changed[key] = mutated_json(value[key], data)
        return changed
    if isinstance(value, list) and value:
        index = data.draw(st.integers(0, len(value) - 1))
        return value[:index] + [mutated_json(value[index], data)] + value[index + 1 :]
    return data.draw(st.sampled_from([None, "abc", -1, 10**30, [], {}, True, "../../x"]))


STORED = {
    "predict": ("model/featx-model.json", BASE["predict"]),
    "validate": ("model/featx-model.json", BASE["validate"]),
    "compare": ("cache/**/results/*.json", BASE["compare"]),
    "fit": ("cache/**/results/*.json", BASE["fit"]),
    "train": ("cache/**/splits/*.json", BASE["train"]),
}
"""Which stored JSON file each command reads back, and the command that reads it."""


@pytest.mark.parametrize("command", list(STORED))
def test_stored_json_fuzzed(seed_sandbox, command):
    pattern, base = STORED[command]

    @settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
    @given(data=st.data())
    def example(data):
        with sandbox_from(seed_sandbox) as (parent, sandbox):
            files = sorted(sandbox.glob(pattern))
            assert files, f"no stored file matches {pattern}"
            target = data.draw(st.sampled_from(files))
            text = json.dumps(mutated_json(json.loads(target.read_text()), data))
            target.write_text(text)
            before = snapshot(parent)
            outcome = run_in(sandbox, [*base, "-q"])
            check(parent, sandbox, base, before, outcome)

    example()


MANIFEST_EDITS = {
    "trailing comma": lambda text: "\n".join(line + "," for line in text.splitlines()) + "\n",
    "duplicate label column": lambda text: (
        "\n".join(line + "," + line.split(",")[1] for line in text.splitlines()) + "\n"
    ),
    "a path out of the folder": lambda text: text + "../outside/keep.txt,covid,covid,p999,x,PA\n",
    "an absolute path": lambda text: text + "/etc/hostname,covid,covid,p999,x,PA\n",
    "a name too long": lambda text: text + ("x" * 300) + ".png,covid,covid,p999,x,PA\n",
    "a NUL byte": lambda text: text + "images/a\0b.png,covid,covid,p999,x,PA\n",
    "no header": lambda text: "\n".join(text.splitlines()[1:]) + "\n",
    "empty": lambda text: "",
    "not UTF-8": lambda text: text.encode().decode("latin-1") + "images/\udcff.png,covid\n",
    "a BOM and CRLF": lambda text: "\ufeff" + text.replace("\n", "\r\n"),
    "a NUL in a cell": lambda text: text.replace(",covid,", ",co\0vid,", 1),
    "a line break in a quoted label": lambda text: text.replace(",covid,", ',"co\nvid",', 1),
    "a tab in a view": lambda text: text.replace(",PA,", ",P\tA,", 1),
}


@pytest.mark.parametrize("edit", list(MANIFEST_EDITS))
def test_hostile_metadata_csv(seed_sandbox, edit):
    """A hostile ``metadata.csv`` through the cheapest command that loads a data set."""
    with sandbox_from(seed_sandbox) as (parent, sandbox):
        manifest = sandbox / "data" / "metadata.csv"
        text = manifest.read_text()
        edited = MANIFEST_EDITS[edit](text)
        manifest.write_bytes(edited.encode("utf-8", "surrogateescape"))
        (sandbox / "data" / "images" / "._hidden.png").write_bytes(b"\0\5\22macOS resource fork")
        before = snapshot(parent)
        argv = [*BASE["extract"], "-q"]
        outcome = run_in(sandbox, argv)
        check(parent, sandbox, argv, before, outcome)


@pytest.mark.parametrize("state", ["a folder", "a pipe", "a link to /dev/zero", "a link outside"])
def test_metadata_csv_not_a_file(seed_sandbox, state):
    with sandbox_from(seed_sandbox) as (parent, sandbox):
        manifest = sandbox / "data" / "metadata.csv"
        manifest.unlink()
        if state == "a folder":
            manifest.mkdir()
        elif state == "a pipe":
            os.mkfifo(manifest)
        elif state == "a link to /dev/zero":
            manifest.symlink_to("/dev/zero")
        else:
            manifest.symlink_to(parent / "outside" / "keep.txt")
        before = snapshot(parent)
        argv = [*BASE["extract"], "-q"]
        outcome = run_in(sandbox, argv)
        check(parent, sandbox, argv, before, outcome)
        assert outcome.status == 1 and "metadata.csv" in outcome.stderr
