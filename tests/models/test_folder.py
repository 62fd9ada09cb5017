"""Model folders load without running code: a malicious pickle is refused and never executed."""

import json
import pickle
import shutil

import pytest

from featx.exceptions import ModelFolderError
from featx.models.folder import MANIFEST, ModelManifest
from featx.models.predict import LoadedModel
from tests.realdata import train_lite0


class CreatesAFile:
    """Unpickling this calls ``open(path, 'w')``: the file appears if anything unpickles it."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def logreg_folder(small_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "logreg"
    cache = tmp_path_factory.mktemp("cache")
    assert train_lite0(small_data, cache, folder, "--head", "logreg", "--folds", "2") == 0
    return folder


def _copy(folder, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


def _weights(folder):
    return ModelManifest.read(folder).path_in(folder)


def _edit_manifest(folder, edit):
    manifest = json.loads((folder / MANIFEST).read_text())
    edit(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("file_name", ["head.joblib", "head.skops"])
def test_a_malicious_pickle_is_refused_and_never_run(logreg_folder, tmp_path, file_name):
    folder = _copy(logreg_folder, tmp_path)
    marker = tmp_path / "pwned"
    weights = _weights(folder)
    weights.unlink()
    (weights.parent / file_name).write_bytes(pickle.dumps(CreatesAFile(marker)))
    _edit_manifest(folder, lambda m: m.update(model_file=file_name))
    with pytest.raises(ModelFolderError) as caught:
        LoadedModel(folder)
    assert file_name in str(caught.value)
    assert not marker.exists()


def test_a_skops_file_naming_an_untrusted_type_is_refused(logreg_folder, tmp_path):
    import skops.io
    from sklearn.linear_model import LogisticRegression

    folder = _copy(logreg_folder, tmp_path)
    head = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    head.smuggled = CreatesAFile(tmp_path / "pwned")
    try:
        skops.io.dump(head, _weights(folder))
    except TypeError:
        pytest.skip("skops cannot even write this object")
    with pytest.raises(ModelFolderError, match="names types featx does not trust: .*CreatesAFile"):
        LoadedModel(folder)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda folder: (folder / MANIFEST).write_text("{ not json"), "damaged JSON"),
        (lambda folder: _edit_manifest(folder, lambda m: m.pop("classes")), "classes: required field missing"),
        (lambda folder: _weights(folder).unlink(), r"the model file \.featx-model-[0-9a-f]{16}/head.skops is missing"),
        (lambda folder: (folder / MANIFEST).unlink(), "not a featx model folder"),
    ],
)
def test_damaged_folders_are_named_with_the_problem(logreg_folder, tmp_path, damage, message):
    folder = _copy(logreg_folder, tmp_path)
    damage(folder)
    with pytest.raises(ModelFolderError, match=message):
        ModelManifest.read(folder)


def test_training_keeps_the_users_files_in_the_model_folder(small_data, tmp_path):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("months of work")
    code = train_lite0(small_data, tmp_path / "cache", precious, "--head", "logreg", "--folds", "2")
    assert code == 0 and (precious / "chapter1.tex").read_text() == "months of work"
    assert LoadedModel(precious).manifest.head == "logreg"


def test_a_folder_of_format_2_is_refused_with_the_command_that_remakes_it(logreg_folder, tmp_path):
    folder = _copy(logreg_folder, tmp_path)
    _edit_manifest(folder, lambda m: m.update(format_version=2, head="mlp1000", model_file="head.keras"))
    with pytest.raises(
        ModelFolderError, match=r"format 2 was written by an earlier featx.*reads format 3.*featx train"
    ):
        LoadedModel(folder)


def test_a_head_file_is_trusted_only_with_the_types_its_own_head_names(logreg_folder, tmp_path):
    """A random forest's tree type is trusted in an rf folder, not in the file a logreg manifest names."""
    import skops.io
    from sklearn.ensemble import RandomForestClassifier

    folder = _copy(logreg_folder, tmp_path)
    forest = RandomForestClassifier(n_estimators=2).fit([[0.0] * 1280, [1.0] * 1280, [2.0] * 1280], [0, 1, 2])
    skops.io.dump(forest, _weights(folder))
    with pytest.raises(ModelFolderError, match=r"names types featx does not trust: sklearn\.tree\._tree\.Tree"):
        LoadedModel(folder)
    _edit_manifest(folder, lambda m: m.update(head="rf"))
    assert LoadedModel(folder).head.n_estimators == 2
    skops.io.dump(RandomForestClassifier(n_estimators=2).fit([[0.0], [1.0], [2.0]], [0, 1, 2]), _weights(folder))
    with pytest.raises(ModelFolderError, match="the head does not take the 1280 features of efficientnet_lite0"):
        LoadedModel(folder)


def test_a_damaged_dense_head_file_is_named_with_its_head(logreg_folder, tmp_path):
    folder = _copy(logreg_folder, tmp_path)
    weights = _weights(folder)
    weights.unlink()
    (weights.parent / "head.npz").write_bytes(b"PK\x03\x04 not an archive")
    _edit_manifest(folder, lambda m: m.update(head="softmax", model_file="head.npz"))
    with pytest.raises(
        ModelFolderError, match=r"head\.npz: cannot be loaded as a softmax head \(ValueError: unreadable"
    ):
        LoadedModel(folder)
