"""One path from files to a model's input: a model applies exactly the image record it was trained with.

A head trained on features of the ``plain`` decoder with the lungs masked predicts from the very pixels
its training rows were made from (not from the default decoder's, unmasked); validation reads its
images through the pixel cache of its cache folder, so a repeated validation decodes nothing.
"""

import dataclasses
import json
import logging

import h5py
import numpy as np
import pandas as pd
import pytest

from featx.data import images
from featx.data.dataset import load_dataset
from featx.evaluation.splits import Protocol
from featx.features.pixels import PixelCache, PixelKey
from featx.features.runtime import resolve_runtime
from featx.features.store import load_features
from featx.heads.recipe import HeadRecipe
from featx.models.folder import MANIFEST, ModelManifest
from featx.models.predict import LoadedModel, predict_files, read_pixels
from featx.models.train import train_model
from featx.study.validate import validate
from tests.realdata import LITE0_64, copy_subset, shared_metadata

PLAIN_MASKED = dataclasses.replace(LITE0_64, decoder="plain", mask="lungs")
DECODED = "featx.features.pixels"


@pytest.fixture(scope="module")
def trained(small_dataset, tmp_path_factory):
    """A logreg head on Lite0 features of plain-decoded, lung-masked pixels; returns (model folder, cache)."""
    cache = tmp_path_factory.mktemp("inputs_cache")
    model_dir = tmp_path_factory.mktemp("inputs_model") / "masked"
    train_model(
        small_dataset,
        PLAIN_MASKED,
        HeadRecipe(head="logreg"),
        Protocol(group_by="patient", folds=2, seed=0),
        model_dir=model_dir,
        cache_dir=cache,
        progress=False,
    )
    return model_dir, cache


def test_the_manifest_records_the_image_record_the_model_was_trained_with(trained):
    model_dir, _ = trained
    recorded = json.loads((model_dir / MANIFEST).read_text())
    assert (recorded["decoder"], recorded["mask"], recorded["input_size"]) == ("plain", "lungs", [64, 64])
    assert LoadedModel(model_dir).image == PLAIN_MASKED.image


def test_the_manifest_records_the_runtime_and_precision_of_the_store_the_head_was_trained_on(trained, small_dataset):
    model_dir, cache = trained
    recorded = json.loads((model_dir / MANIFEST).read_text())
    (store,) = load_features(cache, PLAIN_MASKED.key(small_dataset.id), small_dataset).sources
    with h5py.File(store, "r") as opened:
        made_by = (opened.attrs["runtime"], opened.attrs["precision"])
    assert (recorded["runtime"], recorded["precision"]) == made_by
    assert recorded["runtime"] == resolve_runtime()  # the default: OpenVINO on a CPU where it is installed
    assert LoadedModel(model_dir).features == PLAIN_MASKED.resolved


def test_predict_feeds_the_backbone_the_pixels_of_the_training_rows_bit_for_bit(trained, small_dataset):
    model_dir, cache = trained
    model = LoadedModel(model_dir)
    table = small_dataset.table
    decoded, failures = read_pixels(table["path"], model.image)  # no cache: decoded afresh by the pool
    assert failures == [] and [position for position, _ in decoded] == list(range(len(table)))
    stored = PixelCache(cache, PixelKey.of(PLAIN_MASKED.image)).read(table["content_hash"])  # phase 1's pixels
    training_pixels = np.stack([images.as_rgb(stored[digest][0]) for digest in table["content_hash"]])
    predicted_pixels = np.stack([pixels for _, pixels in decoded])
    np.testing.assert_array_equal(predicted_pixels, training_pixels)
    default = np.stack([images.load(path, model.input_size) for path in table["path"]])
    assert (default != training_pixels).mean() > 0.05  # the record matters: the default decoder, unmasked, differs

    features = model.forward.features_of(predicted_pixels)  # in the runtime the store was made in
    rows = load_features(cache, PLAIN_MASKED.key(small_dataset.id), small_dataset).features
    np.testing.assert_array_equal(features, rows)
    proba = predict_files(model_dir, list(table["path"])).table[[f"p_{c}" for c in model.classes]].to_numpy()
    np.testing.assert_array_equal(proba, model.head.predict_proba(features))


def test_a_manifest_without_an_image_record_reads_as_what_predict_applied_then(trained, tmp_path):
    """Manifests written before featx recorded decoder, mask and runtime: the default decoder, no mask, Keras."""
    model_dir, _ = trained
    recorded = json.loads((model_dir / MANIFEST).read_text())
    older = {name: value for name, value in recorded.items() if name not in ("decoder", "mask", "runtime", "precision")}
    (tmp_path / recorded["model_folder"]).symlink_to(model_dir / recorded["model_folder"])
    (tmp_path / MANIFEST).write_text(json.dumps(older))
    manifest = ModelManifest.read(tmp_path)
    image = manifest.image
    assert (image.decoder, image.mask, image.input_size) == (images.DEFAULT_DECODER, None, (64, 64))
    assert (manifest.runtime, manifest.precision) == ("keras", "float32")  # what computed every store then


@pytest.fixture(scope="module")
def external(small_data, tmp_path_factory):
    """Twelve radiographs of patients the model never saw."""
    table = shared_metadata()
    training = set(pd.read_csv(small_data / "metadata.csv", dtype=str)["patient_id"])
    unseen = table[~table["patient_id"].isin(training)]
    rows = pd.concat([unseen[unseen["label"] == label].head(4) for label in ("covid", "pneumonia", "normal")])
    return load_dataset(copy_subset(rows, tmp_path_factory.mktemp("inputs_external")), min_classes=1)


def test_a_repeated_validation_decodes_nothing(trained, external, tmp_path, caplog):
    model_dir, _ = trained
    caplog.set_level(logging.INFO, logger=DECODED)
    first = validate(model_dir, external, cache_dir=tmp_path)
    assert f"12 of 12 images decoded (the rest read from {tmp_path / 'pixels' / '64x64-plain-mask-lungs'})" in (
        caplog.text
    )
    caplog.clear()
    again = validate(model_dir, external, cache_dir=tmp_path)
    assert "0 of 12 images decoded" in caplog.text
    pd.testing.assert_frame_equal(again.predictions, first.predictions)


def test_predict_keeps_pixels_only_in_a_cache_it_is_given(trained, small_dataset, tmp_path, caplog):
    model_dir, _ = trained
    files = list(small_dataset.table["path"].iloc[:5])
    caplog.set_level(logging.INFO, logger=DECODED)
    plain = predict_files(model_dir, files).table
    assert "5 of 5 images decoded (no pixel cache)" in caplog.text and not (tmp_path / "pixels").exists()
    predict_files(model_dir, files, cache_dir=tmp_path)
    caplog.clear()
    cached = predict_files(model_dir, files, cache_dir=tmp_path).table
    assert "0 of 5 images decoded" in caplog.text
    pd.testing.assert_frame_equal(cached, plain)
