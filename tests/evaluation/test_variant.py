"""A variant keeps everything that defines its run: the features request and the recipe it was built from
come back from it, and from the result file it is stored in, equal field for field."""

import json

import pytest

from featx.evaluation.finetune import FinetuneRecipe
from featx.evaluation.results import load_result
from featx.evaluation.splits import Protocol
from featx.evaluation.variant import Variant
from featx.exceptions import ParameterError, RecordError
from featx.features.identity import FeatureSpec
from featx.heads.recipe import HeadRecipe
from tests.test_records import valid_result

PROTOCOL = Protocol(group_by="image", folds=3, seed=4)
FEATURES = (
    FeatureSpec(
        backbone="efficientnet_lite0",
        weights="none",
        input_size=(48, 40),
        mask="lungs",
        precision="mixed_bfloat16",
        decoder="plain",
    ),
    FeatureSpec(backbone="mobilenet_v2", weights="none", input_size=(32, 32)),
)
RECIPES = (
    HeadRecipe(head="mlp16", sampler="smote", epochs=3, batch_size=8, learning_rate=0.01),
    HeadRecipe(head="logreg", sampler="class-weight"),
    FinetuneRecipe(head="softmax", cutoff=5, epochs=2, batch_size=4, precision="mixed_bfloat16", warm_start=True),
)


@pytest.mark.parametrize("features", FEATURES, ids=lambda spec: spec.backbone)
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda recipe: f"{type(recipe).__name__}-{recipe.head}")
def test_a_variant_gives_back_its_features_and_recipe_through_its_result_file(features, recipe):
    phase = 3 if isinstance(recipe, FinetuneRecipe) else 2
    variant = Variant(phase=phase, features=features.key("d0"), recipe=recipe, protocol=PROTOCOL, subset="dataset2")
    assert variant.feature_spec() == features.resolved  # the runtime that ran ("auto" resolved)
    assert variant.recipe == recipe
    stored = Variant.from_record(variant.to_record())
    assert stored == variant
    assert stored.feature_spec() == features.resolved
    assert stored.recipe == recipe
    assert stored.name() == variant.name()


def test_a_variant_of_a_weights_file_needs_the_file_to_give_back_its_features():
    key = FEATURES[1].key("d0")
    variant = Variant(phase=2, features=key.__class__(**{**key.as_attrs(), "weights": "file:w.h5"}), recipe=RECIPES[1])
    with pytest.raises(ParameterError, match="weights needs the weights file.*got 'file:w.h5'"):
        variant.feature_spec()
    assert variant.feature_spec("/models/w.h5").weights == "/models/w.h5"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"head": "no-such-head"}, "no-such-head"),
        ({"head_params": {"epochs": 3, "cutoff": 2}}, "cutoff"),
        ({"phase": 3, "head": "softmax", "head_params": {}, "sampler": "smote"}, "sampler"),
    ],
)
def test_a_result_whose_variant_makes_no_recipe_is_refused_naming_the_file(tmp_path, change, named):
    path = valid_result().save(tmp_path / "result.json").path
    document = json.loads(path.read_text())
    document["variant"].update(change)
    path.write_text(json.dumps(document))
    with pytest.raises(RecordError, match=rf"{path}: not a valid result file: variant: .*{named}"):
        load_result(path)
