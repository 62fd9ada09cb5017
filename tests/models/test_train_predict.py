"""Final models on real radiographs: train a folder, predict, Grad-CAM, the fine-tuned CV record; the head a
folder saves is the head cross-validation trains."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from featx.cli import main
from featx.data import images
from featx.data.dataset import load_dataset
from featx.evaluation.finetune import FinetuneRecipe, finetune_variant
from featx.evaluation.splits import Protocol
from featx.features.store import load_features
from featx.heads import HeadRecipe, get_head
from featx.models.explain import conv_model, grad_cam
from featx.models.predict import LoadedModel, predict_files
from featx.models.train import train_model
from tests.realdata import LITE0_64, train_lite0

SIZE_ARGS = ["--input-size", "64x64"]


@pytest.fixture(scope="module")
def dataset(small_data):
    return load_dataset(small_data)


def _train(dataset, model_dir, cache, *extra):
    assert train_lite0(dataset.root, cache, model_dir, "--folds", "2", *extra) == 0
    return model_dir


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    return _train(
        dataset,
        tmp_path_factory.mktemp("model") / "mlp",
        tmp_path_factory.mktemp("train_cache"),
        "--head",
        "mlp1000",
        "--epochs",
        "2",
        "--batch-size",
        "16",
    )


def test_train_writes_a_model_folder_with_provenance(trained):
    manifest = json.loads((trained / "featx-model.json").read_text())
    assert manifest["weights"] == "imagenet" and len(manifest["weights_sha256"]) == 64
    assert manifest["classes"] == ["covid", "pneumonia", "normal"] and manifest["input_size"] == [64, 64]
    assert 0 <= manifest["cross_validation"]["accuracy_3class"] <= 1
    assert manifest["cross_validation"]["variant"]["head_params"] == {"epochs": 2, "batch_size": 16}
    assert sorted(p.name for p in trained.iterdir()) == [manifest["model_folder"], "featx-model.json"]
    assert [p.name for p in (trained / manifest["model_folder"]).iterdir()] == ["head.npz"]


def test_predict_round_trips_and_reports_a_corrupt_file(trained, dataset, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(open(dataset.table["path"].iat[0], "rb").read()[:200])
    files = list(dataset.table["path"].iloc[:4]) + [str(corrupt)]
    out = tmp_path / "preds.csv"
    assert (
        main(
            [
                "predict",
                "--model-dir",
                str(trained),
                *files,
                "--out",
                str(out),
                "--explain",
                str(tmp_path / "cams"),
                "-q",
            ]
        )
        == 3
    )  # partial success: one file failed
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns) == ["file", "p_covid", "p_pneumonia", "p_normal", "predicted", "error"]
    assert len(table) == 5 and table["error"].iat[4] != "" and table["predicted"].iat[4] == ""
    good = table.iloc[:4]
    assert (good["error"] == "").all() and set(good["predicted"]) <= {"covid", "pneumonia", "normal"}
    np.testing.assert_allclose(good[["p_covid", "p_pneumonia", "p_normal"]].astype(float).sum(axis=1), 1, atol=1e-5)
    assert len(list((tmp_path / "cams").glob("*.png"))) == 4
    again = predict_files(trained, files[:4]).table
    np.testing.assert_allclose(again["p_covid"].astype(float), good["p_covid"].astype(float), atol=1e-6)


def test_gradcam_has_the_image_shape_and_is_not_constant(trained, dataset):

    model = LoadedModel(trained)
    image = images.load(dataset.table["path"].iat[0], model.input_size)
    cams = grad_cam(conv_model(model.base), model.dense_head(), model.image.scale(image[None]), 0)
    assert cams.shape == (1, 64, 64) == (1,) + image.shape[:2] and cams.max() <= 1 and cams.min() >= 0
    assert cams.std() > 0.01


@pytest.mark.parametrize("head, file_name", [("logreg", "head.skops"), ("xgb", "head.xgb.json"), ("rf", "head.skops")])
def test_classical_heads_save_in_safe_formats_and_predict_like_the_fitted_head(head, file_name, dataset, tmp_path):
    folder = _train(dataset, tmp_path / head, tmp_path / "cache", "--head", head)
    manifest = LoadedModel(folder).manifest
    assert sorted(p.name for p in folder.iterdir()) == [manifest.model_folder, "featx-model.json"]
    assert manifest.path_in(folder).name == file_name
    table = predict_files(folder, list(dataset.table["path"].iloc[:6])).table
    assert (table["error"] == "").all()
    np.testing.assert_allclose(table[["p_covid", "p_pneumonia", "p_normal"]].sum(axis=1), 1, atol=1e-6)


def test_finetuned_model_records_the_cv_of_exactly_its_own_variant(dataset, tmp_path):
    """The phase-3 result is looked up by the whole variant, not by backbone, head and epochs alone."""
    recipe = FinetuneRecipe(head="mlp1000", epochs=1, batch_size=8)
    protocol = Protocol(group_by="patient", folds=2, seed=0)
    stored = finetune_variant(dataset, LITE0_64, recipe, protocol, cache_dir=tmp_path, progress=False)
    same = train_model(
        dataset, LITE0_64, recipe, protocol, model_dir=tmp_path / "same", cache_dir=tmp_path, progress=False
    )
    assert same.cross_validation.result_file == str(stored.result.path)
    assert same.path_in(tmp_path / "same").name == "model.keras" and same.path_in(tmp_path / "same").is_file()
    other_lr = FinetuneRecipe(head="mlp1000", epochs=1, batch_size=8, learning_rate=1e-3)
    other = train_model(
        dataset, LITE0_64, other_lr, protocol, model_dir=tmp_path / "other", cache_dir=tmp_path, progress=False
    )
    assert "not cross-validated" in other.cross_validation.note
    table = predict_files(tmp_path / "same", list(dataset.table["path"].iloc[:3])).table
    assert (table["error"] == "").all()


@pytest.mark.parametrize(
    "recipe",
    [HeadRecipe(head="mlp1000", sampler="oversample", epochs=2), HeadRecipe(head="logreg", sampler="class-weight")],
    ids=str,
)
def test_a_folders_head_predicts_its_training_rows_exactly_as_the_fold_trained_on_those_rows(
    feature_data, tmp_path, recipe
):
    """One body per head: the final fit is the fold training call, and the saved file the arrays it made.

    Cross-validating two copies of the training rows, fold 0 trains on the first copy (the rows the
    final model trains on, in order, with the same seed and fold index) and predicts the second.
    """
    dataset, shared_cache = feature_data
    cache = shutil.copytree(shared_cache, tmp_path / "cache")  # the folder's result stays out of the shared cache
    protocol = Protocol(group_by="patient", folds=2, seed=5)
    manifest = train_model(
        dataset, LITE0_64, recipe, protocol, model_dir=tmp_path / "model", cache_dir=cache, progress=False
    )
    x = load_features(cache, LITE0_64.key(dataset.id), dataset).features
    saved = LoadedModel(tmp_path / "model").head.predict_proba(x)
    y = dataset.label_indices()
    out_of_fold = get_head(recipe.head).family.out_of_fold(
        np.concatenate([x, x]),
        np.concatenate([y, y]),
        np.repeat([1, 0], len(y)),
        recipe,
        seed=protocol.seed,
        n_classes=len(dataset.classes),
    )
    np.testing.assert_array_equal(out_of_fold.proba[len(y) :][:, list(manifest.head_classes)], saved)
    assert manifest.cross_validation.variant.sampler == recipe.sampler
