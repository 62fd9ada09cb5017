"""The data boundary: every path read from data stays in its folder, metadata.csv is read by one
validating reader, hidden entries are never images, and `data fetch` from a hostile mirror writes
nothing outside --dest. Each bad input exits 1 with one message naming the file, no traceback."""

from __future__ import annotations

import csv
import hashlib
import http.server
import io
import itertools
import os
import shutil
import threading
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featx.cli import main
from featx.data.dataset import MANIFEST_LIMIT, load_dataset
from featx.data.fetch import COHEN_ARCHIVE, KERMANY_ARCHIVE
from featx.exceptions import FeatxError
from featx.fileio import confined
from tests.realdata import SHARED_DATA, requires_data, shared_metadata

pytestmark = requires_data

HEADER = ["filename", "label", "patient_id"]


@pytest.fixture(scope="module")
def images() -> dict:
    """Two real radiographs of each class (covid, normal), by label."""
    table = shared_metadata()
    return {label: [SHARED_DATA / f for f in table[table.label == label].filename[:2]] for label in ("covid", "normal")}


def _folder(root: Path, images: dict) -> list[list[str]]:
    """Copy the images into ``root/images`` and return their manifest rows."""
    (root / "images").mkdir(parents=True)
    rows = []
    for label, paths in images.items():
        for index, path in enumerate(paths):
            name = f"images/{label}{index}{path.suffix}"
            shutil.copyfile(path, root / name)
            rows.append([name, label, f"{label}{index}"])
    return rows


def _csv_text(rows, line_end="\n") -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=line_end, quoting=csv.QUOTE_ALL).writerows(rows)
    return buffer.getvalue()


def _refused(folder: Path, capsys, tmp_path: Path) -> str:
    """Run the cheapest command that loads the data; assert exit 1 and one message, no traceback."""
    code = main(["audit", "--model", "mobilenet_v2", "--weights", "none", "--data", str(folder)] + _cache(tmp_path))
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err and err.count("error:") == 1, err
    return err


def _cache(tmp_path: Path) -> list[str]:
    return ["--cache", str(tmp_path / "cache"), "-q"]


# --- paths read from data -------------------------------------------------------------------------------------------

HOSTILE_PATHS = st.one_of(
    st.builds(lambda k, tail: "../" * k + tail, st.integers(1, 6), st.text(min_size=1, max_size=20)),
    st.builds(lambda tail: "/" + tail, st.text(max_size=30)),
    st.builds(lambda a, b: f"images/{a}\0{b}", st.text(max_size=10), st.text(max_size=10)),
    st.builds(lambda n, c: "images/" + c * n, st.integers(256, 400), st.sampled_from(["x", "é", "日", "😀"])),
    st.builds(lambda k: "images/" + "x/" * k + "../" * (k + 2) + "etc/passwd", st.integers(0, 4)),
)
ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(filename=HOSTILE_PATHS)
def test_a_path_that_leaves_the_data_folder_is_refused_naming_the_row(filename, images, tmp_path_factory, capsys):
    folder = tmp_path_factory.mktemp("hostile")
    rows = _folder(folder, images)
    rows[1][0] = filename
    (folder / "metadata.csv").write_text(_csv_text([HEADER, *rows]), encoding="utf-8")
    err = _refused(folder, capsys, tmp_path_factory.mktemp("cache"))
    assert "metadata.csv line 3" in err and "refused" in err


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(filename=ANY_TEXT)
def test_any_filename_loads_or_is_refused_in_words(filename, images, tmp_path_factory):
    folder = tmp_path_factory.mktemp("anytext")
    rows = _folder(folder, images)
    rows[1][0] = filename
    (folder / "metadata.csv").write_text(_csv_text([HEADER, *rows]), encoding="utf-8")
    try:
        dataset = load_dataset(folder)
    except FeatxError as error:
        assert str(folder / "metadata.csv") in str(error)
    else:  # only a name of a file inside the folder loads
        for path in dataset.table["path"]:
            assert Path(path).is_relative_to(folder.resolve())


def test_confined_keeps_a_link_inside_and_refuses_one_pointing_out(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.png").write_bytes(b"x")
    (root / "inside").symlink_to(root / "images")
    (root / "outside").symlink_to(tmp_path)
    assert confined(root, "inside/a.png") == (root / "images" / "a.png").resolve()
    with pytest.raises(FeatxError, match=r"path 'outside/x' refused in .*data: it leads outside the folder"):
        confined(root, "outside/x")


def test_a_class_folder_image_linked_from_outside_is_refused(images, tmp_path, capsys):
    folder = tmp_path / "data"
    for label, paths in images.items():
        (folder / label).mkdir(parents=True)
        shutil.copyfile(paths[0], folder / label / f"a{paths[0].suffix}")
    secret = tmp_path / "secret.png"
    shutil.copyfile(images["covid"][1], secret)
    (folder / "covid" / "linked.png").symlink_to(secret)
    err = _refused(folder, capsys, tmp_path)
    assert "covid/linked.png" in err and "leads outside the folder" in err


# --- metadata.csv: one validating reader ---------------------------------------------------------------------------

ENCODINGS = list(itertools.product([False, True], ["\n", "\r\n"], [False, True]))  # BOM, line end, trailing comma


def _encoded(rows, bom: bool, line_end: str, trailing_comma: bool, header_comma: bool = False) -> bytes:
    lines = _csv_text(rows, line_end).split(line_end)[:-1]
    lines = [line + ("," if trailing_comma and (index or header_comma) else "") for index, line in enumerate(lines)]
    return ("\ufeff" if bom else "").encode() + (line_end.join(lines) + line_end).encode()


@pytest.mark.parametrize(("bom", "line_end", "trailing_comma"), ENCODINGS)
@pytest.mark.parametrize("header_comma", [False, True])
def test_bom_crlf_and_trailing_commas_read_the_same_rows(images, tmp_path, bom, line_end, trailing_comma, header_comma):
    rows = _folder(tmp_path, images)
    (tmp_path / "metadata.csv").write_bytes(_encoded([HEADER, *rows], bom, line_end, trailing_comma, header_comma))
    dataset = load_dataset(tmp_path)
    assert sorted(dataset.table["filename"]) == sorted(row[0] for row in rows)
    assert sorted(dataset.table["label"]) == ["covid", "covid", "normal", "normal"]
    assert set(dataset.table["patient_id"]) == {row[2] for row in rows}


def test_a_spreadsheet_index_column_without_a_name_is_ignored(images, tmp_path):
    rows = _folder(tmp_path, images)
    (tmp_path / "metadata.csv").write_text(_csv_text([["", *HEADER], *[[str(i), *r] for i, r in enumerate(rows)]]))
    assert len(load_dataset(tmp_path)) == 4


BAD_TABLES = {
    "a value beyond the header": (lambda rows: [HEADER, *rows[:2], [*rows[2], "extra"], rows[3]], "line 4"),
    "fewer fields than the header": (lambda rows: [HEADER, rows[0][:1], *rows[1:]], "fewer than the header's 3"),
    "label named twice": (lambda rows: [[*HEADER, "label"], *[[*r, "x"] for r in rows]], "'label' named more than"),
    "filename named twice": (lambda rows: [["filename", *HEADER], *[[r[0], *r] for r in rows]], "'filename' named"),
    "no label column": (lambda rows: [["filename", "patient_id"], *[[r[0], r[2]] for r in rows]], "missing column"),
    "a header only": (lambda rows: [HEADER], "a header but no rows"),
    "a field over csv's limit": (lambda rows: [HEADER, *rows, ["images/" + "x" * 140_000, "covid", "p"]], "line 6"),
}


@pytest.mark.parametrize("encoding", ENCODINGS[::3], ids=str)
@pytest.mark.parametrize("case", list(BAD_TABLES))
def test_a_table_that_does_not_fit_its_header_is_refused_naming_the_line(images, tmp_path, capsys, case, encoding):
    folder = tmp_path / "data"
    build, expected = BAD_TABLES[case]
    (folder / "metadata.csv").parent.mkdir()
    rows = _folder(folder, images)
    (folder / "metadata.csv").write_bytes(_encoded(build(rows), *encoding))
    err = _refused(folder, capsys, tmp_path)
    assert str(folder / "metadata.csv") in err and expected in err


BAD_BYTES = {
    "empty": (b"", "is empty"),
    "blank lines": (b"\n \r\n\n", "is empty"),
    "latin-1": ("filename,label\nimages/é.jpg,covid\n".encode("latin-1"), "line 2: not UTF-8 text (byte 0xe9)"),
    "utf-16": ("filename,label\n".encode("utf-16"), "line 1: not UTF-8 text"),
    "semicolons": (b"filename;label\na.jpg;covid\n", "separated by semicolons"),
    "an unclosed quote": (b'filename,label\n"images/a.jpg,covid\n', "line 2: not a readable CSV row (unexpected end"),
    "a quote inside a value": (b'filename,label\n"images/a".jpg,covid\n', "line 2: not a readable CSV row"),
}


@pytest.mark.parametrize("case", list(BAD_BYTES))
def test_a_manifest_that_is_not_utf8_csv_is_refused_naming_the_file(images, tmp_path, capsys, case):
    folder = tmp_path / "data"
    _folder(folder, images)
    data, expected = BAD_BYTES[case]
    (folder / "metadata.csv").write_bytes(data)
    err = _refused(folder, capsys, tmp_path)
    assert str(folder / "metadata.csv") in err and expected in err


def _as_folder(path: Path, tmp_path: Path) -> None:
    path.mkdir()


def _as_fifo(path: Path, tmp_path: Path) -> None:
    os.mkfifo(path)


def _as_link_to_a_big_file(path: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    with open(big, "wb") as handle:
        handle.truncate(MANIFEST_LIMIT + 1)  # sparse: nothing is written to disk
    path.symlink_to(big)


def _as_link_to_dev_zero(path: Path, tmp_path: Path) -> None:
    path.symlink_to("/dev/zero")  # only read, never written


def _as_dangling_link(path: Path, tmp_path: Path) -> None:
    path.symlink_to(tmp_path / "nothing")


NOT_A_FILE = {
    "a folder": (_as_folder, "is a folder"),
    "a fifo": (_as_fifo, "not a regular file"),
    "a link to a big file": (_as_link_to_a_big_file, "larger than a data manifest can be"),
    "a link to /dev/zero": (_as_link_to_dev_zero, "not a regular file"),
    "a dangling link": (_as_dangling_link, "no such file"),
}


@pytest.mark.parametrize("case", list(NOT_A_FILE))
def test_a_manifest_that_is_not_a_regular_file_is_refused_unread(images, tmp_path, capsys, case):
    folder = tmp_path / "data"
    _folder(folder, images)
    make, expected = NOT_A_FILE[case]
    make(folder / "metadata.csv", tmp_path)
    err = _refused(folder, capsys, tmp_path)
    assert str(folder / "metadata.csv") in err and expected in err


# --- hidden entries -------------------------------------------------------------------------------------------------

HIDDEN = ["._a.jpg", ".DS_Store", ".cache/x.png", ".git/objects/y.jpeg", "sub/._b.png", ".hidden.dcm"]


@pytest.mark.parametrize("count", [1, 3, len(HIDDEN)])
def test_hidden_entries_in_class_folders_are_not_images(images, tmp_path, count):
    for label, paths in images.items():
        for index, path in enumerate(paths):
            (tmp_path / label / "sub").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, tmp_path / label / f"{index}{path.suffix}")
        for name in HIDDEN[:count]:
            (tmp_path / label / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / label / name).write_bytes(b"\x00\x05\x16\x07 AppleDouble, not an image")
    (tmp_path / ".Trash" / "x.jpg").parent.mkdir()
    (tmp_path / ".Trash" / "x.jpg").write_bytes(b"not an image")
    dataset = load_dataset(tmp_path)
    assert dataset.classes == ("covid", "normal") and len(dataset) == 4
    assert not any(part.startswith(".") for name in dataset.table["filename"] for part in name.split("/"))


# --- data fetch -----------------------------------------------------------------------------------------------------

HOSTILE_COHEN_NAMES = [
    "x/../../../PWN.jpg",
    "x/../../../../PWN.jpg",
    "../../PWN.jpg",
    "../../../../../../tmp/PWN.jpg",
    "a\0b.jpg",
    "x" * 300,
]


def _zip(members: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


def _mirror_files(images: dict, cohen_name: str, extra_member: str | None = None) -> dict:
    covid = images["covid"][0].read_bytes()
    manifest = _csv_text(
        [["patientid", "finding", "view", "folder", "filename"], ["1", "COVID-19", "PA", "images", cohen_name]]
    )
    root = "covid-chestxray-dataset-master"
    # "images/x/../../../PWN.jpg" names the zip's top-level PWN.jpg: before confinement, fetch copied it to
    # "images/cohen_x/../../../PWN.jpg", beside --dest
    cohen = {f"{root}/metadata.csv": manifest, f"{root}/images/x/a.jpg": covid, "PWN.jpg": covid}
    if extra_member:
        cohen[extra_member] = covid
    normal = images["normal"][0].read_bytes()
    kermany = {"chest_xray/train/NORMAL/IM-0001.jpeg": normal, "chest_xray/test/PNEUMONIA/person1_virus_1.jpeg": covid}
    return {COHEN_ARCHIVE: _zip(cohen), KERMANY_ARCHIVE: _zip(kermany)}


@pytest.fixture
def http_mirror():
    """A loopback HTTP server for the files put into its dict (with SHA256SUMS made for them)."""
    files = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            name = self.path.strip("/").split("/")[-1]
            sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {key}\n" for key, data in files.items())
            data = sums.encode() if name == "SHA256SUMS" else files.get(name)
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", files
    server.shutdown()


def _everything(folder: Path) -> set:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*")}


@pytest.mark.parametrize("over_http", [False, True])
@pytest.mark.parametrize("cohen_name", HOSTILE_COHEN_NAMES)
def test_a_hostile_mirror_writes_nothing_outside_dest(images, tmp_path, capsys, http_mirror, cohen_name, over_http):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    files = _mirror_files(images, cohen_name)
    for name, data in files.items():
        (mirror / name).write_bytes(data)
    url, served = http_mirror
    served.update(files)
    work = tmp_path / "a" / "b" / "c" / "d"
    work.mkdir(parents=True)
    before = _everything(tmp_path)
    code = main(["data", "fetch", "--from", url if over_http else str(mirror), "--dest", str(work / "cxr"), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and err.count("error:") == 1, err
    assert repr(cohen_name[:120])[1:-1][:60] in err and "refused" in err
    assert _everything(tmp_path) == before, "fetch left files behind or wrote outside --dest"
    assert not Path("/tmp/PWN.jpg").exists()


def test_an_archive_member_leaving_its_folder_is_refused(images, tmp_path, capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name, data in _mirror_files(images, "a.jpg", extra_member="../../escaped.jpg").items():
        (mirror / name).write_bytes(data)
    before = _everything(tmp_path)
    assert main(["data", "fetch", "--from", str(mirror), "--dest", str(tmp_path / "out" / "cxr"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "member" in err and "'../../escaped.jpg' refused" in err
    assert _everything(tmp_path) == before


def _dest_is_a_file(dest: Path) -> None:
    dest.write_text("not a folder")


def _dest_holds_files(dest: Path) -> None:
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")


def _partial_is_a_file(dest: Path) -> None:
    dest.with_name(dest.name + ".partial").write_text("left behind")


BAD_DEST = {
    "a file": (_dest_is_a_file, "is a file, not a folder"),
    "a folder holding files": (_dest_holds_files, "--dest is not empty (it holds notes.txt)"),
    "DEST.partial a file": (_partial_is_a_file, "cxr.partial: cannot write --dest: is a file"),
}


@pytest.mark.parametrize("case", list(BAD_DEST))
def test_a_bad_dest_is_refused_before_any_download(tmp_path, capsys, case):
    make, expected = BAD_DEST[case]
    dest = tmp_path / "cxr"
    make(dest)
    before = {path: path.read_bytes() if path.is_file() else None for path in tmp_path.rglob("*")}
    # port 9 (discard) has no server: a download attempt would fail with another message
    assert main(["data", "fetch", "--from", "http://127.0.0.1:9/", "--dest", str(dest), "-q"]) == 1
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err, err
    assert {path: path.read_bytes() if path.is_file() else None for path in tmp_path.rglob("*")} == before
