"""A heatmap for every head family on real radiographs; the linear CAM is Grad-CAM of the same linear head."""

import numpy as np
import pytest
from PIL import Image

from featx.data import images
from featx.data.dataset import load_dataset
from featx.heads.fold_trainer import TrainedHead
from featx.models.explain import class_activation_map, conv_model, explanation, grad_cam, linear_weights
from featx.models.predict import LoadedModel, predict_files
from tests.realdata import train_lite0

EXPECTED = {
    "logreg": "cam",
    "softmax": "cam",
    "mlp1000": "grad-cam",
    "xgb": "occlusion",
    "rf": "occlusion",
    "svm": "occlusion",
}


@pytest.fixture(scope="module")
def dataset(small_data):
    return load_dataset(small_data)


@pytest.fixture(scope="module")
def folders(dataset, tmp_path_factory):
    cache = tmp_path_factory.mktemp("explain_cache")
    root = tmp_path_factory.mktemp("explain_models")
    made = {}
    for head in EXPECTED:
        extra = ["--epochs", "3"] if head == "mlp1000" else []
        assert train_lite0(dataset.root, cache, root / head, "--head", head, "--folds", "2", *extra) == 0
        made[head] = root / head
    return made


def test_every_head_family_is_explained_by_its_method(folders, dataset, tmp_path):
    files = list(dataset.table["path"].iloc[[0, 20]])
    for head, method in EXPECTED.items():
        out = tmp_path / head
        predictions = predict_files(folders[head], files, explain_dir=out)
        assert len(predictions.explained) == 2
        for written, row in zip(predictions.explained, predictions.table.itertuples(), strict=True):
            assert written.endswith(f"-{method}-{row.predicted}.png")
            with Image.open(written) as picture:
                assert picture.size == (64, 64)
        model = LoadedModel(folders[head])
        image = images.load(files[0], model.input_size)
        used, cam = explanation(model, image, model.classes.index(predictions.table["predicted"].iat[0]))
        assert used == method and cam.shape == image.shape[:2]
        assert 0 <= cam.min() and cam.max() <= 1 and cam.std() > 0.01, head


def test_linear_cam_equals_grad_cam_of_the_equivalent_keras_softmax_head(folders, dataset):
    image = images.load(dataset.table["path"].iat[3], (64, 64))
    for head in ("softmax", "logreg"):
        model = LoadedModel(folders[head])
        conv = conv_model(model.base)
        batch = model.image.scale(image[None])
        weights = np.stack([linear_weights(model, c) for c in range(3)], axis=1)
        if head == "logreg":  # the same linear function of the pooled features, as a softmax head
            fitted = model.head
            bias = fitted.estimator_.intercept_ - (fitted.scaler_.mean_ / fitted.scaler_.scale_) @ (
                fitted.estimator_.coef_.T
            )
            equivalent = TrainedHead(kernels=(weights.astype(np.float32),), biases=(bias.astype(np.float32),))
            pooled = np.asarray(model.base.predict(batch, verbose=0))
            np.testing.assert_allclose(equivalent.predict_proba(pooled), model.head.predict_proba(pooled), atol=1e-4)
        else:
            equivalent = model.dense_head()
        for class_index in range(3):
            cam = class_activation_map(conv, weights[:, class_index], batch)
            gradcam = grad_cam(conv, equivalent, batch, class_index)
            np.testing.assert_allclose(cam, gradcam, atol=1e-4)
