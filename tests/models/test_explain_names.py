"""Explanation file names come from image stems and class names, which come from data: whatever
they hold, the PNG lands inside --explain under a safe name, one per input."""

from __future__ import annotations

import io
import os

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from featx.cli import main
from featx.fileio import NAME_MAX, safe_name
from tests.realdata import copy_subset, pick_rows


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=400))
def test_safe_name_is_one_writable_component(tmp_path_factory, text):
    name = safe_name(text)
    assert name and os.sep not in name and "\0" not in name and not name.startswith(".")
    assert len(name.encode("utf-8", "surrogateescape")) <= 120 < NAME_MAX
    folder = tmp_path_factory.mktemp("names", numbered=True)
    (folder / name).write_bytes(b"")
    assert [entry.name for entry in folder.iterdir()] == [name]


def test_explain_with_class_names_that_are_paths(small_data, tmp_path, capsys):
    """Labels ``a/b``, ``../up`` and ``=x|y``: a model trained on them explains into --explain only,
    and two inputs with the same stem in different folders get two overlays."""
    rows = pick_rows({"covid": 6, "normal": 6, "bacterial": 6}, seed=5)
    rows = rows.assign(label=rows["subtype"].map({"covid": "a/b", "normal": "../up", "bacterial": "=x|y"}))
    data = copy_subset(rows.drop(columns=["patient_id"]), tmp_path / "data")
    inputs = tmp_path / "inputs"
    for folder in ("one", "two"):
        (inputs / folder).mkdir(parents=True)
        (inputs / folder / "same.png").write_bytes((data / rows["filename"].iat[0]).read_bytes())
    common = ["--model", "mobilenet_v2", "--weights", "none", "--input-size", "32x32", "--data", str(data)]
    common += ["--cache", str(tmp_path / "cache"), "--group-by", "image", "--folds", "2", "-q"]
    assert main(["extract", *common[:-5], "--cache", str(tmp_path / "cache"), "-q"]) == 0
    assert main(["train", *common, "--head", "logreg", "--model-dir", str(tmp_path / "model")]) == 0
    before = sorted(path for path in tmp_path.parent.iterdir())
    capsys.readouterr()
    status = main(["predict", "--model-dir", str(tmp_path / "model"), str(inputs), "--explain", str(tmp_path / "cams")])
    assert status == 0, capsys.readouterr().err
    written = sorted(path.name for path in (tmp_path / "cams").iterdir())
    assert len(written) == 2 and all(name.startswith("same-") and name.endswith(".png") for name in written)
    assert sorted(path for path in tmp_path.parent.iterdir()) == before
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert set(table["predicted"]) <= {"a/b", "../up", "'=x|y"}
