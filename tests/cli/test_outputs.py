"""Outputs named on the command line, on real radiographs and a real model folder: refused before any
work when they cannot be written, and on a full disk one message naming the path and nothing left
behind. Each case runs ``featx`` in this process: exit 1, one message, no traceback, no output."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from featx.cli import main
from featx.fileio import NAME_MAX
from tests.filesystems import snapshot, tmpfs
from tests.realdata import train_lite0

LITE0 = ["--model", "efficientnet_lite0", "--input-size", "64x64"]


@pytest.fixture(scope="module")
def model_folder(feature_data, tmp_path_factory):
    """A logreg head on EfficientNet-Lite0 features of 90 real radiographs."""
    dataset, cache = feature_data
    folder = tmp_path_factory.mktemp("outputs_model") / "logreg"
    assert train_lite0(dataset.root, cache, folder, "--head", "logreg", "--folds", "2") == 0
    return folder


def _size_of(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def _copy_of(cache: Path):
    def copy(folder: Path) -> None:
        shutil.copytree(cache, folder, dirs_exist_ok=True)

    return copy


def _room_for(cache: Path) -> str:
    return f"{_size_of(cache) // 1024 + 4096}k"


def one_error(capsys) -> str:
    """The one error line of a failed run (and no traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    return errors[0]


@dataclass(frozen=True, kw_only=True)
class Places:
    """What a case's command line is made of."""

    tmp: Path
    data: Path
    cache: Path
    model: Path
    image: Path
    file: Path
    folder: Path


@dataclass(frozen=True, kw_only=True)
class Case:
    name: str
    argv: object
    """Places -> the command line."""
    says: str


LONG = "n" * (NAME_MAX + 1)
CASES = [
    Case(
        name="fit --cache FILE",
        argv=lambda p: ["fit", *LITE0, "--head", "logreg", "--data", p.data, "--cache", p.file],
        says="cannot write --cache: is a file, not a folder",
    ),
    Case(
        name="compare --cache FILE (its default CSV inside)",
        argv=lambda p: ["compare", "--data", p.data, "--cache", p.file],
        says="cannot write --csv: ",
    ),
    Case(
        name="compare --csv DIR",
        argv=lambda p: ["compare", "--data", p.data, "--cache", p.cache, "--csv", p.folder],
        says="cannot write --csv: is a folder",
    ),
    Case(
        name="predict --out DIR",
        argv=lambda p: ["predict", "--model-dir", p.model, p.image, "--out", p.folder],
        says="cannot write --out: is a folder",
    ),
    Case(
        name="predict --out NAME_TOO_LONG",
        argv=lambda p: ["predict", "--model-dir", p.model, p.image, "--out", p.tmp / f"{LONG}.csv"],
        says="name too long",
    ),
    Case(
        name="predict --out FILE/x.csv",
        argv=lambda p: ["predict", "--model-dir", p.model, p.image, "--out", p.file / "x.csv"],
        says="is not a folder",
    ),
    Case(
        name="predict --explain FILE",
        argv=lambda p: ["predict", "--model-dir", p.model, p.image, "--explain", p.file],
        says="cannot write --explain: is a file, not a folder",
    ),
    Case(
        name="validate --out FILE",
        argv=lambda p: ["validate", "--model-dir", p.model, "--data", p.data, "--out", p.file],
        says="cannot write --out: is a file, not a folder",
    ),
    Case(
        name="validate --out NAME_TOO_LONG",
        argv=lambda p: ["validate", "--model-dir", p.model, "--data", p.data, "--out", p.tmp / LONG],
        says="name too long",
    ),
    Case(
        name="train --model-dir FILE",
        argv=lambda p: ["train", *LITE0, "--data", p.data, "--cache", p.cache, "--model-dir", p.file],
        says="cannot write --model-dir: is a file, not a folder",
    ),
    Case(
        name="data fetch --dest FILE",
        argv=lambda p: ["data", "fetch", "--dest", p.file, "--from", p.data],
        says="cannot write --dest: is a file, not a folder",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(
    case, feature_data, model_folder, tmp_path, capsys
):
    dataset, cache = feature_data
    places = Places(
        tmp=tmp_path,
        data=dataset.root,
        cache=tmp_path / "cache",
        model=model_folder,
        image=next((dataset.root / "images").iterdir()),
        file=tmp_path / "afile",
        folder=tmp_path / "afolder",
    )
    places.file.write_text("keep")
    places.folder.mkdir()
    shutil.copytree(cache, places.cache)
    before = snapshot(tmp_path)
    assert main([str(part) for part in case.argv(places)] + ["-q"]) == 1
    assert case.says in one_error(capsys)
    assert snapshot(tmp_path) == before, "nothing written, nothing trained into the cache"


READ_ONLY_CASES = {
    "fit": lambda data, cache: ["fit", *LITE0, "--head", "logreg", "--seed", "5", "--data", data, "--cache", cache],
    "compare": lambda data, cache: ["compare", "--data", data, "--cache", cache],
    "train": lambda data, cache: ["train", *LITE0, "--data", data, "--cache", cache, "--model-dir", cache / "m"],
}


@pytest.mark.parametrize("command", list(READ_ONLY_CASES))
def test_a_read_only_cache_is_refused_before_any_work(command, feature_data, tmp_path, capsys):
    dataset, cache = feature_data
    mount = tmp_path / "cache"
    with tmpfs(mount, _room_for(cache), read_only=True, holding=_copy_of(cache)):
        assert main([str(part) for part in READ_ONLY_CASES[command](dataset.root, mount)] + ["-q"]) == 1
        message = one_error(capsys)
        assert str(mount) in message and "read-only file system" in message


def test_compare_reads_a_read_only_cache_when_its_csv_goes_elsewhere(feature_data, model_folder, tmp_path, capsys):
    dataset, cache = feature_data
    mount = tmp_path / "cache"
    with tmpfs(mount, _room_for(cache), read_only=True, holding=_copy_of(cache)):
        argv = ["compare", "--data", str(dataset.root), "--cache", str(mount), "--csv", str(tmp_path / "c.csv")]
        assert main([*argv, "-q"]) == 0
    assert (tmp_path / "c.csv").read_text().startswith("phase,backbone")


FULL_DISK_CASES = {
    "fit": lambda p, mount: ["fit", *LITE0, "--head", "logreg", "--seed", "7", "--data", p.data, "--cache", mount],
    "train": lambda p, mount: (
        ["train", *LITE0, "--head", "logreg", "--folds", "2", "--data", p.data]
        + ["--cache", p.cache, "--model-dir", mount / "model"]
    ),
    "predict": lambda p, mount: ["predict", "--model-dir", p.model, p.image, "--out", mount / "predictions.csv"],
    "predict --explain": lambda p, mount: ["predict", "--model-dir", p.model, p.image, "--explain", mount / "cams"],
    "validate": lambda p, mount: ["validate", "--model-dir", p.model, "--data", p.data, "--out", mount / "report"],
}


@pytest.mark.parametrize("command", list(FULL_DISK_CASES))
def test_a_full_disk_gives_one_message_and_leaves_no_file(
    command, feature_data, small_data, model_folder, tmp_path, capsys
):
    dataset, cache = feature_data
    places = Places(
        tmp=tmp_path,
        data=small_data if command == "validate" else dataset.root,
        cache=cache,
        model=model_folder,
        image=next((dataset.root / "images").iterdir()),
        file=tmp_path / "afile",
        folder=tmp_path / "afolder",
    )
    mount = tmp_path / "mnt"
    holding = _copy_of(cache) if command == "fit" else None
    with tmpfs(mount, _room_for(cache) if holding else "256k", full=True, holding=holding):
        before = snapshot(mount)
        assert main([str(part) for part in FULL_DISK_CASES[command](places, mount)] + ["-q"]) == 1
        message = one_error(capsys)
        assert str(mount) in message and "no space left on the device" in message
        after = snapshot(mount)
        assert {path for path in after if after[path] != before.get(path) and after[path][0] != "folder"} == set()
