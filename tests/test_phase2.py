"""Phase 2 on real features of real radiographs: folds, heads, samplers, fit, compare."""

import hashlib
import json

import numpy as np
import pytest
from imblearn.over_sampling import RandomOverSampler

import cli
from featx.features.store import collect_features
from featx.evaluation.crossval import fit_variant, out_of_fold_proba
from featx.exceptions import CacheError, SplitError, UnknownNameError
from featx.features.extract import store_identity
from featx.heads.dense import available_heads, make_head
from featx.heads.sampling import SAMPLERS, with_strategy
from featx.evaluation.splits import fold_of_each_image, load_or_make_split, make_split

SIZE = (64, 64)
FAST = {"epochs": 2}


@pytest.fixture(scope="module")
def features(feature_data):
    dataset, cache = feature_data
    identity = store_identity(dataset, "efficientnet_lite0", "imagenet", SIZE)
    matrix, missing, _ = collect_features(cache, identity, dataset.table["content_hash"])
    assert not missing.any()
    return matrix, dataset.label_indices()


def _fit(feature_data, **kwargs):
    dataset, cache = feature_data
    options = dict(weights="imagenet", input_size=SIZE, folds=5, cache_dir=cache, progress=False)
    options.update(kwargs)
    return fit_variant(dataset, "efficientnet_lite0", **options)


def test_grouped_folds_never_share_a_patient(feature_data):
    dataset, _ = feature_data
    split = make_split(dataset, "patient", folds=5, seed=0)
    patient = dict(zip(dataset.table["image_id"], dataset.table["patient_id"]))
    seen = {}
    for index, fold in enumerate(split["test_folds"]):
        for image_id in fold:
            assert seen.setdefault(patient[image_id], index) == index
    assert sorted(sum(split["test_folds"], [])) == sorted(dataset.table["image_id"])


def test_missing_patient_ids_and_small_classes_are_explained(feature_data):
    from dataclasses import replace

    dataset, _ = feature_data
    anonymous = replace(dataset, table=dataset.table.assign(patient_id=""))
    with pytest.raises(SplitError, match="needs a patient_id.*--group-by image"):
        make_split(anonymous, "patient", folds=5)
    with pytest.raises(SplitError, match="fewer than --folds 40; use --folds"):
        make_split(dataset, "image", folds=40)


@pytest.mark.parametrize("head", [h for h in available_heads() if h != "paper"])
def test_every_head_spec_fits_and_predicts_real_features(head, features):
    matrix, y = features
    model = make_head(head, **(FAST if head.startswith(("mlp", "softmax")) else {}))
    model.fit(matrix[:70], y[:70])
    proba = model.predict_proba(matrix[70:])
    assert proba.shape == (20, 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert set(model.predict(matrix[70:])) <= {0, 1, 2}


def test_unknown_head_lists_the_valid_specs():
    with pytest.raises(UnknownNameError, match="Unknown head 'mlp'. Available: .*logreg.*mlp1000-750"):
        make_head("mlp")


class RecordingOverSampler(RandomOverSampler):
    """A real RandomOverSampler that also remembers every row it was given."""

    seen = []

    def fit_resample(self, X, y, **params):
        RecordingOverSampler.seen.append(np.array(X, copy=True))
        return super().fit_resample(X, y, **params)


@pytest.mark.parametrize("strategy", ["oversample", "smote", "undersample", "class-weight"])
def test_strategies_train_and_sampler_never_sees_test_rows(strategy, features):
    matrix, y = features
    fold = np.arange(len(y)) % 3
    proba, _ = out_of_fold_proba(matrix, y, fold, lambda: with_strategy(make_head("logreg"), strategy))
    assert np.allclose(proba.sum(axis=1), 1)
    RecordingOverSampler.seen = []
    out_of_fold_proba(matrix, y, fold, lambda: with_strategy(make_head("logreg"), "oversample",
                                                              sampler=RecordingOverSampler(random_state=0)))
    assert len(RecordingOverSampler.seen) == 3
    for k, rows in enumerate(RecordingOverSampler.seen):
        test_rows = {row.tobytes() for row in matrix[fold == k]}
        assert not any(row.tobytes() in test_rows for row in rows)
        assert len(rows) == int((fold != k).sum())


def test_unknown_sampler_is_refused(feature_data):
    with pytest.raises(UnknownNameError, match="Available: " + ", ".join(sorted(SAMPLERS))):
        _fit(feature_data, head="logreg", sampler="adasyn")


def test_variants_share_one_byte_identical_split_and_rerun_reproduces(feature_data):
    first = _fit(feature_data, head="mlp1000-750", epochs=2)
    split_bytes = hashlib.sha256(open(first["split_file"], "rb").read()).hexdigest()
    other = _fit(feature_data, head="logreg", sampler="smote")
    assert other["split_file"] == first["split_file"]
    assert hashlib.sha256(open(first["split_file"], "rb").read()).hexdigest() == split_bytes
    again = _fit(feature_data, head="mlp1000-750", epochs=2, refit=True)
    assert not again["reused"]
    for key in ("accuracy_3class", "accuracy_2class", "sensitivity", "specificity", "auc_covid"):
        assert again[key] == first[key]
    assert _fit(feature_data, head="mlp1000-750", epochs=2)["reused"]


def test_saved_split_lists_test_image_ids_per_fold(feature_data):
    dataset, cache = feature_data
    split, path = load_or_make_split(cache, dataset, "image", folds=5, seed=7)
    saved = json.loads(path.read_text())
    assert saved["test_folds"] == split["test_folds"] and len(saved["test_folds"]) == 5
    fold = fold_of_each_image(saved, dataset.table["image_id"])
    assert np.bincount(fold).min() >= 17


def test_fit_without_a_store_names_the_extract_command(feature_data):
    dataset, cache = feature_data
    with pytest.raises(CacheError, match="python cli.py extract --model efficientnet_lite0 .* --input-size 96x96"):
        fit_variant(dataset, "efficientnet_lite0", "logreg", input_size=(96, 96), folds=5, cache_dir=cache)


def test_cli_fit_json_and_compare_table(feature_data, capsys, tmp_path):
    dataset, cache = feature_data
    base = ["--model", "efficientnet_lite0", "--input-size", "64x64", "--data", str(dataset.root),
            "--cache", str(cache)]
    assert cli.main(["fit", *base, "--head", "logreg", "--folds", "5", "--group-by", "image", "--json", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("accuracy_3class", "accuracy_2class", "sensitivity", "specificity", "auc_covid"):
        assert 0 <= summary[key] <= 1
    assert summary["protocol"] == "image" and json.loads(open(summary["split_file"]).read())["test_folds"]
    csv_path = tmp_path / "compare.csv"
    assert cli.main(["compare", "--data", str(dataset.root), "--cache", str(cache), "--csv", str(csv_path)]) == 0
    table = capsys.readouterr().out
    assert "| logreg | none | image |" in table and "| phase |" in table
    assert csv_path.read_text().count("\n") >= 2
