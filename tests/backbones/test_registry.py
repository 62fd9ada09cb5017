import dataclasses
import re

import numpy as np
import pytest

from featx.backbones.registry import BACKBONES, PREPROCESSINGS, get_preprocessing, get_spec
from featx.backbones.weights import build_base
from featx.data import images
from featx.exceptions import ParameterError, UnknownNameError, WeightsError
from featx.features.identity import ImageRecord
from tests.realdata import SHARED_DATA, requires_data, shared_metadata

LITE_MEAN_RGB, LITE_STDDEV_RGB = 127.0, 128.0
"""The EfficientNet-Lite reference's input scaling (tensorflow/tpu, efficientnet_lite_builder.py)."""
BAD_PREPROCESSINGS = [name.upper() for name in PREPROCESSINGS] + ["+".join(PREPROCESSINGS), ""]


def _colour_radiographs(count: int = 2, size=(48, 40)) -> np.ndarray:
    """(count, H, W, 3) uint8 whose channels are three different real radiographs, so channel order shows."""
    files = [SHARED_DATA / name for name in shared_metadata()["filename"].iloc[: 3 * count]]
    grey = np.stack([images.load_compact(path, size, decoder="plain") for path in files])
    assert grey.ndim == 3  # one channel each
    return np.stack([np.stack(grey[3 * i : 3 * i + 3], axis=-1) for i in range(count)])


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_registry_entry_builds_with_random_weights(name):
    spec = BACKBONES[name]
    model, provenance = build_base(spec, (80, 96), weights="none")
    features = model.predict(np.zeros((2, 96, 80, 3), dtype=np.float32), verbose=0)
    assert features.shape == (2, spec.feature_dim)
    assert provenance.weights == "random-init"
    assert spec.cutoff is None or spec.cutoff < len(model.layers)


@requires_data
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_preprocessing_equals_the_backbones_reference_on_real_pixels(name):
    """featx scales pixels itself; Keras' ``preprocess_input`` (or the Lite reference) is the independent check."""
    import keras

    spec = BACKBONES[name]
    pixels = _colour_radiographs()
    assert (pixels[..., 0] != pixels[..., 2]).mean() > 0.5
    if spec.keras_module:
        reference = getattr(keras.applications, spec.keras_module).preprocess_input(pixels.astype(np.float32))
    else:
        reference = (pixels.astype(np.float32) - LITE_MEAN_RGB) / LITE_STDDEV_RGB
    np.testing.assert_allclose(get_preprocessing(spec.preprocessing).host(pixels), reference, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", sorted(PREPROCESSINGS))
def test_preprocessing_on_the_device_equals_the_host(mode):
    preprocessing = get_preprocessing(mode)
    pixels = np.random.default_rng(0).integers(0, 256, (2, 8, 6, 3), dtype=np.uint8)
    on_device = np.asarray(preprocessing.layer()(pixels))
    assert on_device.dtype == np.float32
    np.testing.assert_allclose(on_device, preprocessing.host(pixels), rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", sorted(PREPROCESSINGS) + BAD_PREPROCESSINGS)
def test_a_preprocessing_mode_is_registered_or_refused_by_name(mode):
    """An unknown mode is an error wherever it is named (never read as caffe, as it once was)."""
    spec = dataclasses.replace(BACKBONES["vgg19"], name="probe", preprocessing="caffe")
    if mode in PREPROCESSINGS:
        assert get_preprocessing(mode).name == mode
        assert ImageRecord(input_size=(8, 8), decoder="plain", mask=None, preprocessing=mode).preprocessing == mode
        assert dataclasses.replace(spec, preprocessing=mode).preprocessing == mode
        return
    refusal = f"Unknown preprocessing {mode!r}. Available: {', '.join(sorted(PREPROCESSINGS))}"
    with pytest.raises(UnknownNameError) as caught:
        get_preprocessing(mode)
    assert str(caught.value) == refusal
    with pytest.raises(UnknownNameError, match=re.escape(refusal)):
        ImageRecord(input_size=(8, 8), decoder="plain", mask=None, preprocessing=mode)
    with pytest.raises(UnknownNameError, match=re.escape(refusal)):
        dataclasses.replace(spec, preprocessing=mode)


def test_vgg19_preprocessing_is_caffe_style_bgr():
    pixels = np.zeros((1, 1, 1, 3), dtype=np.uint8)
    pixels[..., 0] = 255  # pure red
    out = get_preprocessing(get_spec("vgg19").preprocessing).host(pixels)
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
