"""The head and sampler registries: names, builders, the paper's head, recipes; on real features."""

import numpy as np
import pytest

from featx.exceptions import ParameterError, UnknownNameError
from featx.features.store import load_features
from featx.heads import HEADS, SAMPLERS, HeadRecipe, get_head, make_head, resolve_head
from featx.heads.dense import DenseFamily
from tests.realdata import LITE0_64

FAST = {"epochs": 2}
CLASSICAL = sorted(name for name in HEADS if not get_head(name).family.params)  # heads that take no training settings


@pytest.fixture(scope="module")
def features(feature_data):
    dataset, cache = feature_data
    return load_features(cache, LITE0_64.key(dataset.id), dataset).features, dataset.label_indices()


@pytest.mark.parametrize("name", sorted(HEADS))
def test_every_registered_head_fits_and_predicts_real_features(name, features):
    matrix, y = features
    model = make_head(name, **(FAST if "epochs" in get_head(name).family.params else {}))
    model.fit(matrix[:70], y[:70])
    proba = model.predict_proba(matrix[70:])
    assert proba.shape == (20, 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert set(model.predict(matrix[70:])) <= {0, 1, 2}


def test_any_mlp_width_is_a_dense_head_with_those_layers():
    spec = get_head("mlp64-32-16")
    assert spec.family == DenseFamily(hidden=(64, 32, 16)) and spec.family.file_name == "head.npz"
    assert make_head("mlp64-32-16").hidden == (64, 32, 16)


def test_unknown_head_lists_the_registered_names():
    with pytest.raises(UnknownNameError, match="Unknown head 'mlp'. Available: ") as caught:
        make_head("mlp")
    listed = str(caught.value).split("Available: ", 1)[1].split(", ")
    assert listed == sorted(listed) and set(listed) == {*HEADS, "mlpN-M", "paper"}


def test_paper_needs_a_backbone_and_resolves_with_one():
    with pytest.raises(ParameterError, match="head means the paper's head for a backbone"):
        make_head("paper")
    assert resolve_head("paper", "vgg19") == "mlp1024"
    assert make_head("paper", backbone="inception_resnet_v2").hidden == ()


@pytest.mark.parametrize("head", CLASSICAL)
def test_training_settings_are_refused_for_every_classical_head(head):
    for setting, value in (("epochs", 5), ("batch_size", 16), ("learning_rate", 0.01)):
        with pytest.raises(ParameterError, match=f"{setting} does not apply to head '{head}'"):
            HeadRecipe(head=head, **{setting: value})


def test_training_settings_are_checked_and_recorded():
    with pytest.raises(ParameterError, match=r"batch_size must be a whole number within 1\.\.65536, got 0"):
        HeadRecipe(head="mlp1000", batch_size=0)
    with pytest.raises(UnknownNameError, match="Unknown sampler 'adasyn'. Available: " + ", ".join(sorted(SAMPLERS))):
        HeadRecipe(head="logreg", sampler="adasyn")
    assert HeadRecipe(head="mlp1000", batch_size=32).params() == {"batch_size": 32}


def test_batch_size_reaches_the_dense_head():
    recipe = HeadRecipe(head="mlp1000", sampler="class-weight", batch_size=16)
    head = recipe.build(seed=3).head
    assert head.batch_size == 16 and head.random_state == 3


def test_a_strategy_wraps_the_head_it_fits(features):
    matrix, y = features
    for sampler in SAMPLERS:
        fitted = HeadRecipe(head="logreg", sampler=sampler).build(0).fit(matrix, y)
        assert type(fitted.head_).__name__ == "Standardized" and list(fitted.classes_) == [0, 1, 2]


def test_class_weights_are_refused_for_a_head_without_sample_weights():
    with pytest.raises(
        ParameterError, match="sampler weights samples, and head 'knn' takes no sample weights, got 'class-weight'"
    ):
        HeadRecipe(head="knn", sampler="class-weight")
