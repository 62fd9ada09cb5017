"""Feeding a backbone uint8 pixels: padded batches, precision is part of the key."""

import numpy as np
import pytest

from featx.data.dataset import load_dataset
from featx.exceptions import CacheError
from featx.features.extract import extract
from featx.features.forward import Forward
from featx.features.identity import FeatureSpec
from featx.features.pixels import PixelBatch
from featx.features.store import open_store


def test_forward_pads_short_batches_and_yields_each_batch_once():
    forward = Forward(FeatureSpec(backbone="efficientnet_lite0", weights="none", input_size=(32, 32)), batch_size=4)
    rng = np.random.default_rng(1)
    full = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    batches = [
        PixelBatch(first=0, last=4, positions=[0, 1, 2, 3], pixels=full, errors=[]),
        PixelBatch(first=4, last=5, positions=[4], pixels=full[:1], errors=[]),
    ]
    batches.append(PixelBatch(first=5, last=6, positions=[], pixels=full[:0], errors=[(5, "empty file (0 bytes)")]))
    out = list(forward.run(iter(batches)))
    assert [batch.first for batch, _ in out] == [0, 4, 5]
    assert [features.shape for _, features in out] == [(4, 1280), (1, 1280), (0, 1280)]
    np.testing.assert_allclose(out[1][1][0], out[0][1][0], rtol=1e-5, atol=1e-5)  # same image, padded batch


def test_a_mixed_bfloat16_store_never_serves_a_float32_request(small_data, tmp_path):
    import keras

    dataset = load_dataset(small_data)
    mixed = FeatureSpec(backbone="efficientnet_lite0", weights="none", input_size=(32, 32), precision="mixed_bfloat16")
    summary = extract(dataset, mixed, batch_size=12, cache_dir=tmp_path, progress=False)
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored after the build
    store = open_store(summary.store, mixed.key(dataset.id))
    assert store.attrs["precision"] == "mixed_bfloat16" and np.isfinite(store.features).all()
    plain = FeatureSpec(backbone="efficientnet_lite0", weights="none", input_size=(32, 32))
    assert plain.key(dataset.id).path(tmp_path) != mixed.key(dataset.id).path(tmp_path)
    with pytest.raises(CacheError, match="provenance does not match.*precision: store has 'mixed_bfloat16'"):
        open_store(summary.store, plain.key(dataset.id))
