"""Phase 3 on real radiographs at a small input size: freezing, BatchNorm, the shared result format."""

import logging

import numpy as np
import pytest

from featx.cli import main
from featx.data.dataset import load_dataset
from featx.evaluation.finetune import (
    FinetuneRecipe,
    build_finetune_model,
    compile_model,
    dataset_pixels,
    finetune_variant,
    image_batches,
)
from featx.evaluation.metrics import point_metrics
from featx.evaluation.results import load_result
from featx.evaluation.splits import Protocol
from featx.exceptions import DatasetError, ParameterError, UnknownNameError
from tests.realdata import LITE0_64


@pytest.fixture(scope="module")
def dataset(small_data):
    return load_dataset(small_data)


def test_frozen_layers_and_batchnorm_statistics_stay_bit_identical(dataset, tmp_path):
    built = build_finetune_model(LITE0_64, FinetuneRecipe(head="mlp1000"), 3)
    base, cutoff = built.base, built.cutoff
    before = [[w.copy() for w in layer.get_weights()] for layer in base.layers]
    compile_model(built.model, 1e-3)
    pixels = dataset_pixels(dataset, LITE0_64.image, tmp_path)
    rows = np.arange(len(dataset))
    batches = image_batches(pixels, rows, dataset.label_indices(), LITE0_64.image, 8, shuffle_seed=0)
    built.model.fit(batches, epochs=1, verbose=0)
    changed_trainable = 0
    for index, layer in enumerate(base.layers):
        after = layer.get_weights()
        if index < cutoff:
            assert all(np.array_equal(a, b) for a, b in zip(before[index], after, strict=True)), layer.name
        if type(layer).__name__ == "BatchNormalization":  # moving mean/variance: inference mode everywhere
            np.testing.assert_array_equal(before[index][2], after[2])
            np.testing.assert_array_equal(before[index][3], after[3])
        elif index >= cutoff and layer.trainable_weights:
            changed_trainable += any(not np.array_equal(a, b) for a, b in zip(before[index], after, strict=True))
    assert changed_trainable >= 5
    assert all(not layer.trainable for layer in base.layers[:cutoff])


def test_recipe_checks_its_values():
    with pytest.raises(ParameterError, match="head must be a dense head"):
        FinetuneRecipe(head="logreg")
    with pytest.raises(UnknownNameError, match="Unknown precision 'float16'"):
        FinetuneRecipe(head="mlp1000", precision="float16")
    with pytest.raises(ParameterError, match="epochs must be a whole number within 1..100000, got 0"):
        FinetuneRecipe(head="mlp1000", epochs=0)
    with pytest.raises(ParameterError, match="cutoff must be within 0..\\d+ for efficientnet_lite0, got 100000"):
        build_finetune_model(LITE0_64, FinetuneRecipe(head="mlp1000", cutoff=100000), 3)


def test_finetune_lands_in_the_shared_format_and_reruns_identically_decoding_once(dataset, tmp_path, caplog):
    recipe = FinetuneRecipe(head="mlp1000", epochs=1, batch_size=8)
    protocol = Protocol(group_by="patient", folds=2, seed=0)
    caplog.set_level(logging.INFO, logger="featx.features.pixels")
    first = finetune_variant(dataset, LITE0_64, recipe, protocol, cache_dir=tmp_path, progress=False)
    assert f"36 of 36 images decoded (the rest read from {tmp_path / 'pixels' / '64x64-jpeg-draft'})" in caplog.text
    caplog.clear()
    result = load_result(first.result.path)
    assert result.variant.phase == 3 and result.proba.shape == (36, 3)
    assert result.variant.features.image == LITE0_64.image  # the record the folds were trained on
    assert np.allclose(result.proba.sum(axis=1), 1, atol=1e-5)
    assert first["accuracy_3class"] == point_metrics(result.y_true, result.proba, first.task)["accuracy_3class"]
    again = finetune_variant(dataset, LITE0_64, recipe, protocol, cache_dir=tmp_path, refit=True, progress=False)
    assert "0 of 36 images decoded" in caplog.text  # the second run reads every image from the pixel cache
    np.testing.assert_allclose(load_result(again.result.path).proba, result.proba, atol=1e-6)
    assert main(["compare", "--data", str(dataset.root), "--cache", str(tmp_path), "-q"]) == 0


def test_an_image_that_does_not_decode_is_named_before_any_training(small_data, tmp_path):
    import shutil

    folder = shutil.copytree(small_data, tmp_path / "data")
    victim = sorted((folder / "images").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:300])
    broken = load_dataset(folder)
    with pytest.raises(DatasetError, match=f"1 image\\(s\\) cannot be decoded: .*{victim.name}"):
        dataset_pixels(broken, LITE0_64.image, tmp_path / "cache")
