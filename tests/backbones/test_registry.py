import numpy as np
import pytest

from featx.backbones.registry import BACKBONES, get_spec, preprocess
from featx.backbones.weights import build_base
from featx.exceptions import ParameterError, UnknownNameError, WeightsError


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_registry_entry_builds_with_random_weights(name):
    spec = BACKBONES[name]
    model, provenance = build_base(spec, (80, 96), weights="none")
    features = model.predict(np.zeros((2, 96, 80, 3), dtype=np.float32), verbose=0)
    assert features.shape == (2, spec.feature_dim)
    assert provenance.weights == "random-init"
    assert spec.cutoff is None or spec.cutoff < len(model.layers)


@pytest.mark.parametrize("name", [n for n, s in BACKBONES.items() if s.keras_module])
def test_preprocessing_matches_keras_applications(name):
    import keras

    spec = BACKBONES[name]
    pixels = np.random.default_rng(0).integers(0, 256, size=(2, 8, 8, 3)).astype(np.float32)
    reference = getattr(keras.applications, spec.keras_module).preprocess_input(pixels.copy())
    np.testing.assert_allclose(preprocess(spec, pixels.astype(np.uint8)), reference, rtol=1e-6)


def test_vgg19_preprocessing_is_caffe_style_bgr():
    pixels = np.zeros((1, 1, 1, 3), dtype=np.uint8)
    pixels[..., 0] = 255  # pure red
    out = preprocess(get_spec("vgg19"), pixels)
    np.testing.assert_allclose(out[0, 0, 0], [-103.939, -116.779, 255 - 123.68], rtol=1e-5)


def test_unknown_backbone_lists_the_valid_names():
    with pytest.raises(UnknownNameError, match="Unknown backbone 'mobilenet'. Available: efficientnet_lite0"):
        get_spec("mobilenet")


def test_too_small_input_is_refused_with_the_minimum():
    with pytest.raises(
        ParameterError, match="input_size must be at least 75 pixels a side for inception_v3, got '64x64'"
    ):
        build_base(get_spec("inception_v3"), (64, 64), weights="none")


def test_offline_imagenet_error_names_the_file_and_the_way_out(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # empty: Keras must try to download
    with pytest.raises(WeightsError) as caught:
        build_base(get_spec("vgg19"), (64, 64), weights="imagenet")
    message = str(caught.value)
    assert "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(tmp_path / "models") in message and "weights=PATH" in message and "weights='none'" in message


def test_local_weights_file_round_trips(tmp_path):
    spec = get_spec("mobilenet_v2")
    model, _ = build_base(spec, (64, 64), weights="none")
    for variable in model.trainable_variables[:3]:
        variable.assign(variable.numpy() + 0.5)
    path = tmp_path / "mine.weights.h5"
    model.save_weights(str(path))
    loaded, provenance = build_base(spec, (64, 64), weights=str(path))
    assert provenance.weights == "file:mine.weights.h5" and len(provenance.weights_sha256) == 64
    np.testing.assert_array_equal(loaded.trainable_variables[0].numpy(), model.trainable_variables[0].numpy())


def test_weights_file_that_does_not_fit_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="bad.weights.h5"):
        build_base(get_spec("mobilenet_v2"), (64, 64), weights=str(bad))
