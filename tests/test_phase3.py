"""Phase 3 on real radiographs at a small input size: freezing, shared results, train/predict, Grad-CAM."""

import json

import numpy as np
import pandas as pd
import pytest

import cli
from featx.backbones.registry import get_spec
from featx.data.dataset import load_dataset
from featx.models.train import LoadedModel, predict_files
from featx.evaluation.finetune import build_finetune_model, compile_model, finetune_variant, image_batches
from featx.models.explain import conv_model, grad_cam
from featx.evaluation.metrics import point_metrics
from featx.evaluation.results import load_result

SIZE = (64, 64)


@pytest.fixture(scope="module")
def dataset(small_data):
    return load_dataset(small_data)


def _bn_statistics(layer):
    return [v.numpy().copy() for v in layer.non_trainable_weights]


def test_frozen_layers_and_batchnorm_statistics_stay_bit_identical(dataset):
    spec = get_spec("efficientnet_lite0")
    model, base, cutoff, _ = build_finetune_model(spec, SIZE, "imagenet", "mlp1000")
    before = [[w.copy() for w in layer.get_weights()] for layer in base.layers]
    compile_model(model, 1e-3)
    batches = image_batches(dataset.table["path"].to_numpy(), dataset.label_indices(), spec, SIZE, 8, shuffle_seed=0)
    model.fit(batches, epochs=1, verbose=0)
    changed_trainable = 0
    for index, layer in enumerate(base.layers):
        after = layer.get_weights()
        if index < cutoff:
            assert all(np.array_equal(a, b) for a, b in zip(before[index], after)), layer.name
        if type(layer).__name__ == "BatchNormalization":  # moving mean/variance: inference mode everywhere
            np.testing.assert_array_equal(before[index][2], after[2])
            np.testing.assert_array_equal(before[index][3], after[3])
        elif index >= cutoff and layer.trainable_weights:
            changed_trainable += any(not np.array_equal(a, b) for a, b in zip(before[index], after))
    assert changed_trainable >= 5
    assert all(not layer.trainable for layer in base.layers[:cutoff])


def test_finetune_lands_in_the_shared_format_and_reruns_identically(dataset, tmp_path):
    options = dict(weights="imagenet", input_size=SIZE, group_by="patient", folds=2, epochs=1, batch_size=8,
                   cache_dir=tmp_path, progress=False)
    first = finetune_variant(dataset, "efficientnet_lite0", "mlp1000", **options)
    result = load_result(first["result_file"])
    assert result["variant"]["phase"] == 3 and result["proba"].shape == (36, 3)
    assert np.allclose(result["proba"].sum(axis=1), 1, atol=1e-5)
    assert first["accuracy_3class"] == point_metrics(result["y_true"], result["proba"])["accuracy_3class"]
    again = finetune_variant(dataset, "efficientnet_lite0", "mlp1000", refit=True, **options)
    np.testing.assert_allclose(load_result(again["result_file"])["proba"], result["proba"], atol=1e-6)
    assert cli.main(["compare", "--data", str(dataset.root), "--cache", str(tmp_path)]) == 0


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("model")
    cache = tmp_path_factory.mktemp("train_cache")
    code = cli.main(["train", "--model", "efficientnet_lite0", "--head", "mlp1000", "--input-size", "64x64",
                     "--data", str(dataset.root), "--cache", str(cache), "--model-dir", str(model_dir),
                     "--folds", "2", "--epochs", "2", "--quiet"])
    assert code == 0
    return model_dir


def test_train_writes_a_model_folder_with_provenance(trained):
    manifest = json.loads((trained / "featx-model.json").read_text())
    assert manifest["weights"] == "imagenet" and len(manifest["weights_sha256"]) == 64
    assert manifest["classes"] == ["covid", "pneumonia", "normal"] and manifest["input_size"] == [64, 64]
    assert 0 <= manifest["cross_validation"]["accuracy_3class"] <= 1
    assert (trained / "head.joblib").exists()


def test_predict_round_trips_and_reports_a_corrupt_file(trained, dataset, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(open(dataset.table["path"].iat[0], "rb").read()[:200])
    files = list(dataset.table["path"].iloc[:4]) + [str(corrupt)]
    out = tmp_path / "preds.csv"
    assert cli.main(["predict", "--model-dir", str(trained), *files, "--out", str(out),
                     "--explain", str(tmp_path / "cams")]) == 0
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns) == ["file", "p_covid", "p_pneumonia", "p_normal", "predicted", "error"]
    assert len(table) == 5 and table["error"].iat[4] != "" and table["predicted"].iat[4] == ""
    good = table.iloc[:4]
    assert (good["error"] == "").all() and set(good["predicted"]) <= {"covid", "pneumonia", "normal"}
    np.testing.assert_allclose(good[["p_covid", "p_pneumonia", "p_normal"]].astype(float).sum(axis=1), 1, atol=1e-5)
    assert len(list((tmp_path / "cams").glob("*.png"))) == 4
    again = predict_files(trained, files[:4])
    np.testing.assert_allclose(again["p_covid"].astype(float), good["p_covid"].astype(float), atol=1e-6)


def test_gradcam_has_the_image_shape_and_is_not_constant(trained, dataset):
    from featx.backbones.registry import preprocess
    from featx.data.images import load

    model = LoadedModel(trained)
    image = load(dataset.table["path"].iat[0], model.input_size)
    cams = grad_cam(conv_model(model.base), model.keras_head(), preprocess(model.spec, image[None]), 0)
    assert cams.shape == (1, 64, 64) == (1,) + image.shape[:2] and cams.max() <= 1 and cams.min() >= 0
    assert cams.std() > 0.01
