"""The one writer and the text it writes: each file-system state a target can be in, and hostile text.

Every case is generated: a writer (``write_text_atomic``, ``write_csv``) times a state of the
file system at its target; the message names the path and the cause, and nothing else in the
folder changes. Hostile labels go through the CSV writer and the report renderer.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from featx.exceptions import FileSystemError
from featx.fileio import (
    NAME_MAX,
    check_output_file,
    check_output_folder,
    csv_cell,
    write_csv,
    write_text_atomic,
    written_together,
)
from featx.study.document import Document
from tests.filesystems import snapshot, tmpfs

TEXT = "a,b\n1,2\n"


@dataclass(frozen=True, kw_only=True)
class State:
    """A state of the file system at a writer's target.

    ``make(place)`` builds it under ``place`` and returns the target and the context it needs
    (a mount); ``cause`` is the words of the refusal, or None when the write succeeds at ``lands``.
    """

    name: str
    make: Callable
    cause: str | None = None
    lands: Callable | None = None
    """Where the bytes end up, from the target (default: the target)."""
    preflight: bool = True
    """Whether :func:`check_output_file` sees the refusal coming (a full disk it cannot)."""


def _plain(place):
    return place / "out.csv", contextlib.nullcontext()


def _missing_parent(place):
    return place / "new" / "deeper" / "out.csv", contextlib.nullcontext()


def _file_as_folder(place):
    (place / "afile").write_text("keep")
    return place / "afile" / "out.csv", contextlib.nullcontext()


def _folder_as_file(place):
    (place / "out.csv").mkdir()
    (place / "out.csv" / "inside").write_text("keep")
    return place / "out.csv", contextlib.nullcontext()


def _read_only(place):
    return place / "mnt" / "out.csv", tmpfs(place / "mnt", read_only=True)


def _full(place):
    return place / "mnt" / "out.csv", tmpfs(place / "mnt", full=True)


def _too_long(place):
    return place / ("n" * (NAME_MAX + 1) + ".csv"), contextlib.nullcontext()


def _link_to_file(place):
    (place / "real.csv").write_text("old")
    (place / "out.csv").symlink_to("real.csv")
    return place / "out.csv", contextlib.nullcontext()


def _dangling_link(place):
    (place / "out.csv").symlink_to("made-by-the-write.csv")
    return place / "out.csv", contextlib.nullcontext()


def _fifo(place):
    os.mkfifo(place / "out.csv")
    return place / "out.csv", contextlib.nullcontext()


STATES = [
    State(name="plain", make=_plain),
    State(name="missing parent", make=_missing_parent),
    State(name="file in place of a folder", make=_file_as_folder, cause="it exists and is not a folder"),
    State(name="folder in place of the file", make=_folder_as_file, cause="is a folder"),
    State(name="read-only tmpfs", make=_read_only, cause="read-only file system"),
    State(name="full tmpfs", make=_full, cause="no space left on the device", preflight=False),
    State(name="name too long", make=_too_long, cause="name too long"),
    State(name="symlink to a file", make=_link_to_file, lands=lambda target: target.parent / "real.csv"),
    State(name="dangling symlink", make=_dangling_link, lands=lambda target: target.parent / "made-by-the-write.csv"),
    State(name="fifo", make=_fifo),
]
TABLE = pd.DataFrame({"a": [1], "b": [2]})
WRITERS = {
    "write_text_atomic": (lambda path: write_text_atomic(path, TEXT), TEXT.encode()),
    "write_csv": (lambda path: write_csv(TABLE, path), TEXT.replace("\n", "\r\n").encode()),
}


class Reader(threading.Thread):
    """Reads a FIFO to its end, as a shell's ``cat`` would."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.path, self.data = path, None

    def run(self):
        with open(self.path, "rb") as handle:
            self.data = handle.read()


@pytest.mark.parametrize("writer", list(WRITERS))
@pytest.mark.parametrize("state", STATES, ids=[state.name for state in STATES])
def test_writer_in_each_file_system_state(state, writer, tmp_path):
    place = tmp_path / "place"
    place.mkdir()
    target, context = state.make(place)
    with context:
        before = snapshot(place)
        reader = Reader(target) if state.make is _fifo else None
        if reader:
            reader.start()
        write, written = WRITERS[writer]
        if state.cause is None:
            write(target)
            lands = state.lands(target) if state.lands else target
            if reader:
                reader.join(timeout=30)
                assert reader.data == written
            else:
                assert lands.read_bytes() == written
            changed = {path for path in snapshot(place) if snapshot(place)[path] != before.get(path)}
            assert changed <= {lands, *lands.parents}, "only the target (and the folders made for it) changed"
            if target.is_symlink():
                assert os.readlink(target) == before[target][1], "the link stays a link"
        else:
            with pytest.raises(FileSystemError) as raised:
                write(target)
            message = str(raised.value)
            assert state.cause in message
            assert str(place) in message
            assert snapshot(place) == before, "a refused write leaves everything as it was"


@pytest.mark.parametrize("state", STATES, ids=[state.name for state in STATES])
def test_preflight_check_agrees_with_the_writer(state, tmp_path):
    place = tmp_path / "place"
    place.mkdir()
    target, context = state.make(place)
    with context:
        before = snapshot(place)
        if state.cause is not None and state.preflight:
            with pytest.raises(FileSystemError) as raised:
                check_output_file(target, "--out")
            assert "--out" in str(raised.value) and str(place) in str(raised.value)
        else:
            assert check_output_file(target, "--out") == target
        assert snapshot(place) == before, "a check writes nothing"


FOLDER_STATES = {
    "missing": (lambda place: place / "new" / "reports", None),
    "existing": (lambda place: place, None),
    "a file in its place": (lambda place: (place / "f").write_text("x") and place / "f", "is a file, not a folder"),
    "under a file": (lambda place: (place / "f").write_text("x") and place / "f" / "reports", "is not a folder"),
    "name too long": (lambda place: place / ("n" * (NAME_MAX + 1)), "name too long"),
    "under a dangling link": (
        lambda place: (place / "gone").symlink_to("nowhere") or place / "gone" / "reports",
        "a symbolic link to nothing",
    ),
}


@pytest.mark.parametrize("name", list(FOLDER_STATES))
def test_output_folder_check(name, tmp_path):
    make, cause = FOLDER_STATES[name]
    target = make(tmp_path)
    before = snapshot(tmp_path)
    if cause is None:
        assert check_output_folder(target, "--cache") == target
    else:
        with pytest.raises(FileSystemError, match=cause) as raised:
            check_output_folder(target, "--cache")
        assert "--cache" in str(raised.value)
    assert snapshot(tmp_path) == before


def test_output_folder_check_refuses_a_read_only_file_system(tmp_path):
    with tmpfs(tmp_path / "mnt", read_only=True) as mount:
        for target in (mount, mount / "new"):
            with pytest.raises(FileSystemError, match="read-only file system"):
                check_output_folder(target, "--cache")


def test_outputs_written_together_appear_together_or_not_at_all(tmp_path):
    out = tmp_path / "reports"
    out.mkdir()
    (out / "notes.txt").write_text("the user's")
    with written_together(out) as staging:
        write_text_atomic(staging / "report.md", "# r")
        write_csv(TABLE, staging / "predictions.csv")
        write_text_atomic(staging / "figures" / "f.png", "png")
    assert {p.relative_to(out).as_posix() for p in out.rglob("*")} == {
        "notes.txt",
        "report.md",
        "predictions.csv",
        "figures",
        "figures/f.png",
    }
    assert (out / "notes.txt").read_text() == "the user's"
    assert snapshot(tmp_path).keys() == {tmp_path / "reports", *out.rglob("*")}, "no temporary folder left"


def test_outputs_written_together_on_a_full_disk_leave_nothing(tmp_path):
    with tmpfs(tmp_path / "mnt", full=True) as mount:
        before = snapshot(mount)
        out = mount / "reports"
        with pytest.raises(FileSystemError) as raised, written_together(out) as staging:
            write_csv(TABLE, staging / "predictions.csv")
        assert str(raised.value) == f"{out / 'predictions.csv'}: cannot write: no space left on the device"
        assert snapshot(mount) == before


HOSTILE = [
    "=cmd|' /C calc'!A0",
    "+1",
    "-x",
    "@SUM(1)",
    "\tx",
    "\rx",
    "<script>alert(1)</script>",
    "a|b",
    "[click](javascript:alert(1))",
    "![x](http://tracker.example/p.png)",
    "# heading",
    "1. item",
    "a\\|b",
    "&lt;b&gt;",
    "line\nbreak",
    "**normal**|x",
    "pn`eu`",
    "_viral_ ~~x~~",
]
FORMULA = tuple("=+-@\t\r")


@pytest.mark.parametrize("label", HOSTILE + ["normal", "covid-19", "p_covid"])
def test_csv_cells_never_start_a_formula_and_read_back_as_written(label, tmp_path):
    table = pd.DataFrame({"file": [label, "ok"], "p_covid": [-0.25, 1.0], "count": [-3, 4], "predicted": ["a", label]})
    path = write_csv(table, tmp_path / "out.csv")
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    cells = [cell for row in rows for cell in row]
    assert not [cell for cell in cells if cell.startswith(FORMULA) and cell not in ("-0.25", "-3")]
    assert rows[1] == [csv_cell(label), "-0.25", "-3", "a"], "numbers stay numbers, a negative one too"
    expected = "'" + label if label.startswith(FORMULA) else label
    assert rows[1][0] == expected and rows[2][3] == expected
    assert pd.read_csv(path)["p_covid"].tolist() == [-0.25, 1.0]


def test_csv_of_rows_escapes_text_and_keeps_numbers_and_missing_values(tmp_path):
    rows = [{"head": "=1+1", "accuracy": -0.5, "auc": None}, {"head": "logreg", "accuracy": 0.9, "auc": 0.8}]
    path = write_csv(rows, tmp_path / "compare.csv", columns=list(rows[0]))
    assert path.read_bytes() == b"head,accuracy,auc\r\n'=1+1,-0.5,\r\nlogreg,0.9,0.8\r\n"


class Page(HTMLParser):
    """The tags of a page and its text."""

    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _hostile_document(label: str, folder: Path) -> Document:
    figure = folder / "figures" / "f.png"
    figure.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((2, 2, 3), dtype=np.uint8)).save(figure)
    doc = Document(label)
    doc.heading(label)
    doc.paragraph(label)
    doc.bullets([label, "plain"])
    doc.table([label, "n"], [[label, 1], ["x", -2]])
    doc.image(figure, label)
    return doc


TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "ul", "li"}
TAGS |= {"table", "thead", "tbody", "tr", "th", "td", "figure", "img", "figcaption"}


def _shown(label: str) -> str:
    """What a label reads as on a rendered page: one line, spaces at its ends collapsed."""
    return " ".join(label.splitlines()).strip()


@pytest.mark.parametrize("label", HOSTILE)
def test_report_html_shows_hostile_text_as_typed_and_adds_no_markup(label, tmp_path):
    page = Page()
    page.feed(_hostile_document(label, tmp_path).html())
    assert {tag for tag, _ in page.tags} <= TAGS
    assert [attrs["src"][:22] for tag, attrs in page.tags if tag == "img"] == ["data:image/png;base64,"]
    text = "".join(page.text)
    assert text.count(label) >= 6, "title, heading, paragraph, bullet, cell, caption"


@pytest.mark.parametrize("label", HOSTILE)
def test_report_markdown_renders_hostile_text_as_typed_and_adds_no_markup(label, tmp_path):
    markdown_it = pytest.importorskip("markdown_it")
    markdown = _hostile_document(label, tmp_path).markdown(tmp_path)
    page = Page()
    page.feed(markdown_it.MarkdownIt("commonmark").enable("table").render(markdown))
    tags = [tag for tag, _ in page.tags]
    assert set(tags) <= TAGS and "a" not in tags
    assert tags.count("img") == 1 and tags.count("table") == 1 and tags.count("li") == 2
    assert tags.count("th") == 2 and tags.count("td") == 4, "a | in a cell adds no cell"
    assert [attrs["src"] for tag, attrs in page.tags if tag == "img"] == ["figures/f.png"]
    shown = _shown(label)
    text = "".join(page.text)
    assert text.count(shown) >= 5, "title, heading, paragraph, bullet, cell (the caption is the image's alt)"
    assert [attrs["alt"].strip() for tag, attrs in page.tags if tag == "img"] == [shown]


def test_csv_text_goes_to_a_fifo_reader(tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    reader = Reader(fifo)
    reader.start()
    write_csv(pd.DataFrame({"label": ["=1"]}), fifo)
    reader.join(timeout=30)
    assert list(csv.reader(io.StringIO(reader.data.decode()))) == [["label"], ["'=1"]]
