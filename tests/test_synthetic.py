"""The whole user path on synthetic radiographs (tests/synthetic.py), needing no shared data:
extract -> fit (every registered head) -> train -> predict -> validate, through the CLI in this process.

A random-init MobileNetV2 at 64x64 keeps it fast; the synthetic classes differ in their lung fields,
so even random features let a head learn them.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from featx.cli import main
from featx.data.dataset import load_dataset
from featx.evaluation.splits import Protocol
from featx.features.identity import FeatureSpec
from featx.features.store import load_features
from featx.heads import HEADS, get_head
from featx.heads.recipe import HeadRecipe
from featx.models.folder import ModelManifest
from tests.synthetic import SOURCES, write_dataset

SPEC = FeatureSpec(backbone="mobilenet_v2", weights="none", input_size=(64, 64))
BACKBONE = ["--model", "mobilenet_v2", "--weights", "none", "--input-size", "64x64"]
FOLDS = ["--folds", "3"]


def _run(capsys, *argv) -> dict:
    """``featx *argv --json -q`` in this process: exit 0 and its JSON."""
    code = main([*argv, "--json", "-q"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def _probabilities(table: pd.DataFrame, classes) -> np.ndarray:
    return table[[f"p_{name}" for name in classes]].to_numpy(dtype=float)


def test_synthetic_data_is_a_valid_dataset_drawn_from_its_seed_alone(synthetic_data, tmp_path):
    dataset = load_dataset(synthetic_data)
    assert len(dataset) == 36 and dataset.classes == ("covid", "pneumonia", "normal")
    assert dataset.table["label"].value_counts().to_dict() == {"covid": 12, "pneumonia": 12, "normal": 12}
    assert dataset.has_patient_ids and dataset.table["patient_id"].nunique() == 18
    assert {source.split(":")[0] for source in dataset.table["source"]} == set(SOURCES)
    assert dataset.table["content_hash"].nunique() == 36
    again = load_dataset(write_dataset(tmp_path, {"covid": 12, "bacterial": 6, "viral": 6, "normal": 12}))
    assert again.id == dataset.id  # the same bytes, image for image


@pytest.fixture(scope="module")
def store(synthetic_data, tmp_path_factory):
    """The synthetic images extracted once: (data folder, cache)."""
    cache = tmp_path_factory.mktemp("synthetic_cache")
    assert main(["extract", *BACKBONE, "--data", str(synthetic_data), "--cache", str(cache), "-q"]) == 0
    return synthetic_data, cache


def test_extract_stores_one_finite_row_per_image(store):
    data, cache = store
    dataset = load_dataset(data)
    stored = load_features(cache, SPEC.key(dataset.id), dataset)
    assert stored.features.shape == (36, SPEC.backbone_spec.feature_dim) and np.isfinite(stored.features).all()
    assert stored.features.std(axis=0).max() > 0  # the images differ, so do their features


def test_fit_learns_the_synthetic_classes_out_of_fold(store, capsys):
    data, cache = store
    summary = _run(capsys, "fit", *BACKBONE, "--head", "logreg", *FOLDS, "--data", str(data), "--cache", str(cache))
    assert summary["accuracy_3class"] > 0.5  # chance is 1/3: the head learned the lung fields
    result = json.loads(open(summary["result_file"]).read())
    proba = np.array(result["proba"])
    assert proba.shape == (36, 3) and np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1, atol=1e-6)
    folds = pd.DataFrame({"patient": result["groups"], "fold": result["fold"]})
    assert sorted(set(result["fold"])) == [0, 1, 2] and (folds.groupby("patient")["fold"].nunique() == 1).all()
    assert sorted(result["image_ids"]) == sorted(load_dataset(data).table["image_id"])


@pytest.mark.parametrize("head", sorted(HEADS))
def test_every_registered_head_cross_validates_on_the_synthetic_store(head, store, capsys):
    data, cache = store
    training = ["--epochs", "2"] if "epochs" in get_head(head).family.params else []
    argv = ["fit", *BACKBONE, "--head", head, *training, *FOLDS, "--data", str(data), "--cache", str(cache)]
    summary = _run(capsys, *argv)
    assert summary["variant"]["head"] == head
    proba = np.array(json.loads(open(summary["result_file"]).read())["proba"])
    assert proba.shape == (36, 3) and np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert 0 <= summary["accuracy_3class"] <= 1 and np.isfinite(summary["auc_macro"])


def test_select_estimates_the_choice_among_candidates_by_nested_cross_validation(store, capsys):
    data, cache = store
    argv = ["select", *BACKBONE, "--head", "logreg", "knn", "--sampler", "none", "oversample", *FOLDS]
    found = _run(capsys, *argv, "--inner-folds", "2", "--data", str(data), "--cache", str(cache))
    assert len(found["candidates"]) == 4 and [outer["fold"] for outer in found["outer_folds"]] == [0, 1, 2]
    for outer in found["outer_folds"]:
        assert outer["inner_figures"][outer["chosen"]] == max(outer["inner_figures"].values())
    low, high = found["nested_ci95"]
    assert 0 <= low <= found["nested_estimate"] <= high <= 1 and found["metric"] == "accuracy"
    assert found["optimism"] == pytest.approx(found["best_candidate_figure"] - found["nested_estimate"])
    code = main([*argv, "--inner-folds", "9", "--data", str(data), "--cache", str(cache), "-q"])
    assert code == 1 and "inner folds=9" in capsys.readouterr().err
    one = ["select", *BACKBONE, "--head", "logreg", "--sampler", "none", "--data", str(data), "--cache", str(cache)]
    assert main([*one, "-q"]) == 1
    assert "at least two candidates, got 1 (mobilenet_v2 + logreg (none))" in capsys.readouterr().err


@pytest.fixture(scope="module")
def model(store, tmp_path_factory):
    """A logreg model folder trained on the synthetic store."""
    data, cache = store
    folder = tmp_path_factory.mktemp("synthetic_model") / "logreg"
    argv = ["train", *BACKBONE, "--head", "logreg", *FOLDS, "--data", str(data), "--cache", str(cache)]
    assert main([*argv, "--model-dir", str(folder), "-q"]) == 0
    return folder


def test_the_model_predicts_its_training_images_as_the_head_fitted_on_the_stored_features(model, store, capsys):
    data, cache = store
    dataset = load_dataset(data)
    out = model.parent / "training-predictions.csv"
    payload = _run(capsys, "predict", "--model-dir", str(model), str(data / "images"), "--out", str(out))
    assert payload["files"] == 36 and payload["failed"] == 0
    table = pd.read_csv(out, keep_default_na=False)
    table.index = [Path(file).relative_to(data).as_posix() for file in table["file"]]
    table = table.loc[dataset.table["image_id"]]
    served = _probabilities(table, dataset.classes)
    assert np.isfinite(served).all() and np.allclose(served.sum(axis=1), 1, atol=1e-6)
    assert (table["error"] == "").all() and set(table["predicted"]) <= set(dataset.classes)
    stored = load_features(cache, SPEC.key(dataset.id), dataset).features
    fitted = HeadRecipe(head="logreg").build(Protocol().seed).fit(stored, dataset.label_indices()).predict_proba(stored)
    np.testing.assert_allclose(served, fitted, atol=1e-4)  # the pixels and the head of phase 1 and 2
    assert list(table["predicted"]) == [dataset.classes[k] for k in fitted.argmax(axis=1)]
    cv = ModelManifest.read(model).cross_validation
    fit = _run(capsys, "fit", *BACKBONE, "--head", "logreg", *FOLDS, "--data", str(data), "--cache", str(cache))
    assert fit["reused"] and cv.figures["accuracy_3class"] == fit["accuracy_3class"]
    assert cv.result_file == fit["result_file"]


def test_validate_scores_other_images_with_the_model_that_predicts(model, synthetic_external, capsys):
    report = model.parent / "validate-report"
    argv = ["validate", "--model-dir", str(model), "--data", str(synthetic_external), "--out", str(report)]
    payload = _run(capsys, *argv)
    assert payload["images"] == 12 and payload["excluded_overlap"] == 0 and payload["skipped"] == []
    external = payload["external"]
    assert all(0 <= external[key] <= 1 for key in ("accuracy_3class", "sensitivity", "specificity", "auc_positive"))
    assert payload["cv"]["accuracy_3class"] == ModelManifest.read(model).cross_validation.figures["accuracy_3class"]
    assert {path.name for path in report.iterdir()} >= {"report.md", "report.html", "predictions.csv"}
    validated = pd.read_csv(report / "predictions.csv", keep_default_na=False).set_index("image_id")
    classes = payload["task"]["classes"]
    assert (
        len(validated) == 12
        and (validated["predicted"] == [classes[k] for k in _probabilities(validated, classes).argmax(axis=1)]).all()
    )
    assert external["accuracy_3class"] == pytest.approx((validated["predicted"] == validated["label"]).mean())
    files = [str(synthetic_external / image_id) for image_id in validated.index]
    predicted = _run(capsys, "predict", "--model-dir", str(model), *files)
    served = pd.DataFrame(predicted["rows"]).set_index("file").loc[files]
    np.testing.assert_allclose(_probabilities(served, classes), _probabilities(validated, classes), atol=1e-6)


def test_validate_refuses_a_folder_of_training_images(model, synthetic_data, capsys):
    argv = ["validate", "--model-dir", str(model), "--data", str(synthetic_data), "--out", str(model.parent / "none")]
    assert main([*argv, "-q"]) == 1
    err = capsys.readouterr().err
    assert "36 were seen in training" in err and "Traceback" not in err
    assert not (model.parent / "none").exists()
