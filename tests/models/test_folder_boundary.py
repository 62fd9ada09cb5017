"""The model folder's boundaries on real radiographs and real models.

- Its manifest is read through a schema: every generated mutation of a real manifest (each field
  dropped, null, of the wrong type, out of range; an extra field; another format version) makes
  ``predict`` exit 1 with a message naming the file and the field, never a traceback.
- Models are swapped, never emptied: a real ``featx train`` killed with SIGKILL at each step
  between writing the new model and removing the old one leaves a folder that predicts with the
  old model or the new one, and the user's own files in it intact.
- A model with non-finite weights is never saved, and one that yields non-finite probabilities
  never predicts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest

from featx.backbones.registry import get_spec
from featx.cli import main
from featx.fileio import write_arrays_atomic
from featx.models.folder import MANIFEST, MODEL_FOLDER_PREFIX, ModelManifest
from tests.processes import kill_at_progress
from tests.realdata import REPO, featx_command, train_lite0

OLD_HEAD, NEW_HEAD = "logreg", "xgb"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("boundary_cache")


@pytest.fixture(scope="module")
def model_folder(small_data, cache, tmp_path_factory):
    """A real logreg model folder that also holds the user's notes.txt and cams/ (of --explain)."""
    folder = tmp_path_factory.mktemp("models") / "lite0"
    folder.mkdir()
    (folder / "notes.txt").write_text("the user's notes")
    (folder / "cams").mkdir()
    (folder / "cams" / "first.png").write_bytes(b"the user's heatmap")
    assert train_lite0(small_data, cache, folder, "--head", OLD_HEAD, "--folds", "2") == 0
    return folder


@pytest.fixture(scope="module")
def image(small_data):
    return str(sorted((small_data / "images").glob("*.jpg"))[0])


def _copy(folder, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(folder, target, symlinks=True)
    return target


def _snapshot(folder) -> dict:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _user_files_intact(folder) -> bool:
    return (folder / "notes.txt").read_text() == "the user's notes" and (
        folder / "cams" / "first.png"
    ).read_bytes() == b"the user's heatmap"


# --- the manifest's schema -------------------------------------------------------------------------

WRONG_TYPE = {str: 12345, bool: "true", int: "abc", list: "abc", dict: ["abc"], type(None): 12345}
"""A value of another JSON type for a field whose real value has the key's type."""

OUT_OF_RANGE = {
    "backbone": [""],
    "input_size": [[100000, 100000], [0, 64], [64], [64, 64, 64], [64, 64.5]],
    "classes": [[], ["covid", "covid", "normal"], ["", "pneumonia", "normal"], [None, "pneumonia", "normal"]],
    "positive": ["nonexistent", ""],
    "head_classes": [[], [0, 1, 7], [0, 0, 1], [-1, 0, 1]],
    "model_folder": ["..", "../elsewhere", "/etc", ".featx-model-ABCDEF0123456789", "cams"],
    "model_file": ["head.joblib", "model.keras", "../notes.txt"],
    "weights_sha256": ["not-a-hash"],
    "decoder": ["turbo", "PLAIN"],
    "mask": ["heart", ""],
    "cross_validation": [{"accuracy": 2.0}, {"note": ""}, {"note": "x", "accuracy": 0.5}],
    "format_version": ["2", 2.5, True],
}
"""Values of the right JSON type outside each declared range (or breaking a rule between fields)."""


FIELDS = [f.name for f in dataclasses.fields(ModelManifest)]
DEFAULTS = {f.name: f.default for f in dataclasses.fields(ModelManifest) if f.default is not dataclasses.MISSING}
"""Fields older manifests lack: read as their defaults, not refused (tests/models/test_model_inputs.py)."""


def manifest_mutations() -> list:
    """Every mutation generated from the schema's fields: (field, kind, value) as pytest params."""
    cases = [("surprise", "extra", 1)]
    for field in FIELDS:
        cases += [(field, "dropped", None)] if field not in DEFAULTS else []
        cases += [(field, "null", None)] if DEFAULTS.get(field, "") is not None else []
        cases += [(field, "wrong-type", None)]
        cases += [(field, "out-of-range", value) for value in OUT_OF_RANGE.get(field, [])]
    cases += [("format_version", "earlier", 1), ("format_version", "newer", 99)]
    cases.append(("classes", "shorter-than-the-head", ["covid", "pneumonia"]))
    return [pytest.param(*case, id=f"{case[0]}-{case[1]}-{index}") for index, case in enumerate(cases)]


def _mutate(manifest: dict, field: str, kind: str, value) -> str:
    """Apply one mutation to the manifest's JSON; return the words the refusal must hold."""
    if kind == "dropped":
        manifest.pop(field)
    elif kind == "wrong-type":
        manifest[field] = WRONG_TYPE[type(manifest[field])]
    elif kind == "shorter-than-the-head":  # consistent otherwise: caught when the head is loaded
        columns = len(manifest["head_classes"])
        manifest.update(classes=value, head_classes=list(range(len(value))))
        return f"the model has {columns} output columns but"
    else:
        manifest[field] = value
    return {"earlier": "written by an earlier featx", "newer": "written by a newer featx"}.get(kind, field)


def _edit(folder, edit) -> None:
    path = folder / MANIFEST
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def test_the_schema_fields_are_the_manifest_fields_and_the_ranges_name_real_fields(model_folder):
    manifest = json.loads((model_folder / MANIFEST).read_text())
    assert set(manifest) == set(FIELDS) and set(OUT_OF_RANGE) <= set(FIELDS)


@pytest.mark.parametrize("field, kind, value", manifest_mutations())
def test_every_manifest_mutation_is_refused_naming_the_file_and_field(
    model_folder, image, tmp_path, capsys, field, kind, value
):
    folder = _copy(model_folder, tmp_path)
    words = []
    _edit(folder, lambda manifest: words.append(_mutate(manifest, field, kind, value)))
    assert main(["predict", "--model-dir", str(folder), image, "-q"]) == 1
    err = capsys.readouterr().err
    assert str(folder / MANIFEST) in err and words[0] in err, err
    assert "Traceback" not in err and err.count("\n") == 1


def test_class_names_may_hold_any_text(model_folder, image, tmp_path, capsys):
    folder = _copy(model_folder, tmp_path)
    names = ["co/vid", "../pneumonia", "nor\\mal"]
    _edit(folder, lambda m: m.update(classes=names, positive="co/vid"))
    assert main(["predict", "--model-dir", str(folder), image, "--json", "-q"]) == 0
    row = json.loads(capsys.readouterr().out)["rows"][0]
    assert row["predicted"] in names and {f"p_{name}" for name in names} <= set(row)
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in model_folder.iterdir())


def test_a_large_input_size_within_the_schema_is_refused_before_memory_is_allocated(
    model_folder, image, tmp_path, capsys
):
    folder = _copy(model_folder, tmp_path)
    _edit(folder, lambda m: m.update(input_size=[4096, 4096]))
    # 3000 images of 4096x4096 letterboxed at once: 150 GB
    assert main(["predict", "--model-dir", str(folder), *[image] * 3000, "-q"]) == 1
    err = capsys.readouterr().err
    assert "4096x4096" in err and "GiB of memory" in err and "--batch-size" in err


def test_a_model_yielding_non_finite_probabilities_does_not_predict(model_folder, image, tmp_path, capsys):
    folder = _copy(model_folder, tmp_path)
    manifest = ModelManifest.read(folder)
    width = get_spec(manifest.backbone).feature_dim
    manifest.path_in(folder).unlink()
    nan = {"kernel_0": np.full((width, 3), np.nan, np.float32), "bias_0": np.full(3, np.nan, np.float32)}
    write_arrays_atomic(folder / manifest.model_folder / "head.npz", nan)
    _edit(folder, lambda m: m.update(model_file="head.npz", head="softmax", head_classes=[0, 1, 2]))
    assert main(["predict", "--model-dir", str(folder), image, "-q"]) == 1
    err = capsys.readouterr().err
    assert "non-finite probabilities" in err and "--lr" in err and "covid" not in err


# --- swapped, never emptied ------------------------------------------------------------------------


@pytest.mark.parametrize("step", [1, 2, 3])
def test_a_train_killed_between_writing_and_removing_leaves_the_old_or_the_new_model(
    model_folder, small_data, cache, image, tmp_path, capsys, step
):
    """Steps (``model folder: step N`` at -v): 1 writing the new subfolder, 2 written and flushed,
    3 manifest switched, before the previous model is removed."""
    folder = _copy(model_folder, tmp_path)
    args = ["train", "--model", "efficientnet_lite0", "--input-size", "64x64", "--folds", "2"]
    args += ["--head", NEW_HEAD, "--data", str(small_data), "--cache", str(cache), "--model-dir", str(folder), "-v"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    kill_at_progress(featx_command(*args), r"model folder: step (\d+)", lambda steps: step in steps, env)

    assert main(["predict", "--model-dir", str(folder), image, "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["failed"] == 0
    head = ModelManifest.read(folder).head
    assert head == NEW_HEAD if step >= 3 else head in (OLD_HEAD, NEW_HEAD)
    assert _user_files_intact(folder)
    # the next train completes the swap: one model subfolder left, the user's files kept
    assert train_lite0(small_data, cache, folder, "--head", OLD_HEAD, "--folds", "2") == 0
    assert len(list(folder.glob(f"{MODEL_FOLDER_PREFIX}*"))) == 1 and _user_files_intact(folder)
    assert ModelManifest.read(folder).head == OLD_HEAD


def test_a_folder_of_an_earlier_format_is_named_and_replaced_by_train(model_folder, small_data, cache, image, tmp_path):
    folder = _copy(model_folder, tmp_path)
    manifest = ModelManifest.read(folder)
    shutil.move(manifest.path_in(folder), folder / manifest.model_file)
    (folder / manifest.model_folder).rmdir()
    _edit(folder, lambda m: (m.pop("model_folder"), m.update(format_version=1)))
    with pytest.raises(Exception, match="written by an earlier featx"):
        ModelManifest.read(folder)
    assert train_lite0(small_data, cache, folder, "--head", OLD_HEAD, "--folds", "2") == 0
    assert not (folder / manifest.model_file).exists() and _user_files_intact(folder)
    assert main(["predict", "--model-dir", str(folder), image, "-q"]) == 0


@pytest.mark.parametrize("occupant", ["foreign-json", "folder", "link"])
def test_a_featx_model_json_featx_did_not_write_is_refused_and_kept(small_data, cache, tmp_path, capsys, occupant):
    folder = tmp_path / "D"
    folder.mkdir()
    manifest = folder / MANIFEST
    if occupant == "foreign-json":
        manifest.write_text('{"mine": true}')
    elif occupant == "folder":
        manifest.mkdir()
    else:
        (tmp_path / "elsewhere.json").write_text("{}")
        manifest.symlink_to(tmp_path / "elsewhere.json")
    before = _snapshot(tmp_path)
    assert train_lite0(small_data, cache, folder, "--head", OLD_HEAD, "--folds", "2") == 1
    assert f"{manifest}: exists and is not a manifest featx wrote" in capsys.readouterr().err
    assert _snapshot(tmp_path) == before and sorted(p.name for p in folder.iterdir()) == [MANIFEST]


def test_a_model_dir_that_is_a_file_is_refused(small_data, cache, tmp_path, capsys):
    target = tmp_path / "model"
    target.write_text("not a folder")
    assert train_lite0(small_data, cache, target, "--head", OLD_HEAD, "--folds", "2") == 1
    assert "is a file, not a folder" in capsys.readouterr().err and target.read_text() == "not a folder"


# --- non-finite weights are never saved ------------------------------------------------------------


@pytest.mark.parametrize("lr", ["1e30", "nan"])
def test_a_diverged_head_is_not_saved(model_folder, small_data, cache, tmp_path, lr, capsys):
    folder = _copy(model_folder, tmp_path)
    before = _snapshot(folder)
    code = train_lite0(small_data, cache, folder, "--head", "mlp1000", "--epochs", "1", "--folds", "2", "--lr", lr)
    err = capsys.readouterr().err
    assert code == 1 and ("diverged" in err or "--lr" in err) and "Traceback" not in err, err
    assert _snapshot(folder) == before


MEANINGLESS = {
    "a head saved in another format": ({"head": "xgb"}, "head"),
    "a head beyond the width domain": ({"head": "mlp99999999-1"}, "head"),
    "an unknown preprocessing": ({"preprocessing": "torch"}, "preprocessing"),
    "an unknown backbone": ({"backbone": "resnet"}, "backbone"),
    "weights from a device": ({"weights_argument": "/dev/zero"}, "/dev/zero"),
    "weights from another file": ({"weights_argument": "FOREIGN"}, "differ from those the head was trained on"),
}


@pytest.mark.parametrize("case", list(MEANINGLESS))
def test_manifest_fields_must_mean_what_the_folder_holds(case, model_folder, image, tmp_path, capsys):
    """Fields right in type but wrong in meaning are refused before any weights are loaded; weights
    named elsewhere are hashed (regular files only) and compared before Keras reads them."""
    folder = _copy(model_folder, tmp_path)
    edit, named = MEANINGLESS[case]
    foreign = tmp_path / "foreign.weights.h5"
    foreign.write_bytes(b"not the weights the head was trained on")
    edit = {key: str(foreign) if value == "FOREIGN" else value for key, value in edit.items()}
    _edit(folder, lambda manifest: manifest.update(edit))
    assert main(["predict", "--model-dir", str(folder), image, "-q"]) == 1
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err, err
