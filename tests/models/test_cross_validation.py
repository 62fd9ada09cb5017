"""The cross-validated figures a model folder records: a record in memory, flat in the manifest, and the
manifests earlier featx versions wrote still read."""

from __future__ import annotations

import json

import pytest
from pydantic import TypeAdapter, ValidationError

from featx.evaluation.splits import Protocol
from featx.evaluation.variant import Variant
from featx.features.identity import FeatureSpec
from featx.heads.recipe import HeadRecipe
from featx.models.folder import FIGURE_NAMES, CrossValidation, CrossValidationFigures, NotCrossValidated

VARIANT = Variant(
    phase=2,
    features=FeatureSpec(backbone="efficientnet_lite0", weights="none", input_size=(64, 64), decoder="plain").key("d0"),
    recipe=HeadRecipe(head="mlp8", sampler="oversample", epochs=2),
    protocol=Protocol(group_by="patient", folds=2, seed=0),
)
EARLIER_FEATX = {  # the cross_validation of a format-2 manifest as featx wrote it before it was a record
    "accuracy": 0.75,
    "accuracy_3class": 0.75,
    "accuracy_2class": 0.875,
    "sensitivity": 0.5,
    "specificity": None,
    "auc_positive": 0.9,
    "auc_covid": 0.9,
    "auc_macro": 0.85,
    "ppv": 1.0,
    "npv": 0.8,
    "ece_positive": 0.1,
    "ece_covid": 0.1,
    "per_class_recall": {"covid": 0.5, "pneumonia": 1.0, "normal": 0.75},
    "confusion": [[1, 1, 0], [0, 2, 0], [0, 1, 3]],
    "ci95": {"accuracy": [0.5, 1.0], "sensitivity": [None, None]},
    "positive": "covid",
    "protocol": "patient",
    "variant": VARIANT.to_dict(),
    "result_file": "cache/d0/results/r.json",
}
READ = TypeAdapter(CrossValidation)


def test_an_earlier_manifest_reads_into_the_record_and_is_written_back_the_same():
    record = READ.validate_json(json.dumps(EARLIER_FEATX))
    assert isinstance(record, CrossValidationFigures)
    assert record.figures == {name: EARLIER_FEATX[name] for name in FIGURE_NAMES if name in EARLIER_FEATX}
    assert set(FIGURE_NAMES) - set(EARLIER_FEATX) == {"balanced_accuracy"}  # added since: absent, not refused
    assert Variant.from_record(record.variant) == VARIANT
    assert record.ci95["sensitivity"] == (None, None) and record.confusion[2] == (0, 1, 3)
    assert json.loads(json.dumps(record.to_json())) == EARLIER_FEATX
    assert READ.validate_json(json.dumps(record.to_json())) == record


def test_a_note_reads_and_writes_as_before():
    note = READ.validate_json(json.dumps({"note": "not cross-validated"}))
    assert note == NotCrossValidated(note="not cross-validated") and note.to_json() == {"note": "not cross-validated"}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"ppv": 1.5}, "ppv"),
        ({"f1": 0.5}, "f1"),
        ({"variant": {**VARIANT.to_dict(), "folds": 1}}, "variant.folds"),
        ({"note": "both"}, "note"),
    ],
)
def test_a_cross_validation_record_out_of_its_schema_is_refused_naming_the_field(change, named):
    with pytest.raises(ValidationError, match=named):
        READ.validate_json(json.dumps({**EARLIER_FEATX, **change}))
