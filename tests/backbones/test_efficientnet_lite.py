"""The port of the official EfficientNet-Lite ImageNet weights must classify real photos."""

import numpy as np
import pytest
from PIL import Image

from featx.backbones import efficientnet_lite
from featx.backbones.registry import cutoff_for, get_preprocessing, get_spec
from featx.backbones.weights import build_base

skimage_data = pytest.importorskip("skimage.data")
CAT_CLASSES = {281, 282, 283, 284, 285}
ESPRESSO = 967


def _classifier(name):

    from featx.backbones.weights import converted_lite_weights

    size = efficientnet_lite.VARIANTS[name].resolution
    model = efficientnet_lite.build(name, (size, size, 3))
    model.load_weights(str(converted_lite_weights(name)))
    return model, size


def _top1(name, model, size, photo):
    """The class the model ranks first, scaled by featx's own preprocessing of the backbone (so this checks it too)."""
    resized = np.asarray(Image.fromarray(photo).resize((size, size), Image.BICUBIC))
    probabilities = model.predict(get_preprocessing(get_spec(name).preprocessing).host(resized[None]), verbose=0)[0]
    return int(np.argmax(probabilities)), float(np.max(probabilities))


@pytest.mark.parametrize("name", sorted(efficientnet_lite.VARIANTS))
def test_imagenet_port_recognises_a_cat_and_an_espresso(name):
    model, size = _classifier(name)
    cat, _ = _top1(name, model, size, skimage_data.chelsea())
    espresso, confidence = _top1(name, model, size, skimage_data.coffee())
    assert cat in CAT_CLASSES
    assert espresso == ESPRESSO and confidence > 0.5


def test_block_plan_matches_the_checkpoint_depths():
    assert len(efficientnet_lite.block_plan(efficientnet_lite.VARIANTS["efficientnet_lite0"])) == 16
    assert len(efficientnet_lite.block_plan(efficientnet_lite.VARIANTS["efficientnet_lite2"])) == 21


def test_lite_cutoff_leaves_the_last_two_blocks_and_head_trainable():
    spec = get_spec("efficientnet_lite0")
    model, _ = build_base(spec, (64, 64), weights="none")
    cutoff = cutoff_for(spec, model)
    trainable_names = [layer.name for layer in model.layers[cutoff:]]
    assert trainable_names[0].startswith("_blocks.14.")
    assert "_conv_head" in trainable_names
    assert not any(name.startswith("_blocks.13.") for name in trainable_names)
