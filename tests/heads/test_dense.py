"""A dense head is its kernels and biases: saved and read back bit for bit without pickle, refused when
damaged or of another shape, and the same function when loaded into Keras layers."""

import numpy as np
import pytest

from featx.features.store import load_features
from featx.fileio import write_arrays_atomic
from featx.heads import HeadRecipe, get_head, make_head
from featx.heads.dense import dense_head, load_into, trained_head_of
from tests.realdata import LITE0_64


@pytest.fixture(scope="module")
def features(feature_data):
    dataset, cache = feature_data
    return load_features(cache, LITE0_64.key(dataset.id), dataset).features, dataset.label_indices()


@pytest.fixture(scope="module")
def trained(features):
    matrix, y = features
    family = get_head("mlp64-32").family
    return family.fit(matrix, y, HeadRecipe(head="mlp64-32", epochs=2), seed=0, n_classes=3).predictor


def test_a_saved_head_reads_back_bit_for_bit_and_predicts_the_same(trained, features, tmp_path):
    family = get_head("mlp64-32").family
    assert family.save(trained, tmp_path) == "head.npz"
    loaded = family.load(tmp_path / "head.npz")
    for saved, read in zip(trained.arrays().values(), loaded.arrays().values(), strict=True):
        np.testing.assert_array_equal(saved, read)
    np.testing.assert_array_equal(loaded.predict_proba(features[0]), trained.predict_proba(features[0]))


def test_a_damaged_or_mismatched_head_file_is_refused(trained, tmp_path):
    family = get_head("mlp64-32").family
    family.save(trained, tmp_path)
    with pytest.raises(ValueError, match="hidden layers are \\(64, 32\\), not \\(1000,\\)"):
        get_head("mlp1000").family.load(tmp_path / "head.npz")
    arrays = trained.arrays()
    write_arrays_atomic(tmp_path / "gap.npz", {**arrays, "kernel_1": arrays["kernel_1"][:5]})
    with pytest.raises(ValueError, match="layer 1: kernel \\(5, 32\\) and bias \\(32,\\) do not follow"):
        family.load(tmp_path / "gap.npz")
    write_arrays_atomic(tmp_path / "wide.npz", {**arrays, "bias_2": arrays["bias_2"].astype(np.float64)})
    with pytest.raises(ValueError, match="layer 2: kernel and bias must be float32"):
        family.load(tmp_path / "wide.npz")
    damaged = bytearray((tmp_path / "head.npz").read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    (tmp_path / "head.npz").write_bytes(bytes(damaged))
    with pytest.raises(ValueError):
        family.load(tmp_path / "head.npz")


def test_the_scikit_learn_head_predicts_through_the_trained_heads_forward_pass(features):
    matrix, y = features
    head = make_head("mlp64-32", epochs=2).fit(matrix, y)
    np.testing.assert_array_equal(head.predict_proba(matrix), head.trained_.predict_proba(matrix))
    same = get_head("mlp64-32").family.fit(matrix, y, HeadRecipe(head="mlp64-32", epochs=2), seed=0, n_classes=3)
    np.testing.assert_array_equal(same.predictor.predict_proba(matrix), head.predict_proba(matrix))


def test_keras_layers_loaded_from_a_trained_head_compute_its_function_and_read_back(trained, features):
    import keras

    inputs = keras.Input(shape=(features[0].shape[1],))
    model = keras.Model(inputs, dense_head(inputs, trained.hidden, 0.5, trained.n_classes))
    load_into(model, trained)
    np.testing.assert_allclose(model.predict(features[0], verbose=0), trained.predict_proba(features[0]), atol=1e-6)
    for kept, read in zip(trained.arrays().values(), trained_head_of(model).arrays().values(), strict=True):
        np.testing.assert_array_equal(kept, read)
    assert [layer.name for layer in model.layers[1:]] == [
        "head_dense_0",
        "head_dropout_1",
        "head_dense_1",
        "head_dense_2",
    ]
