"""External validation on real radiographs of sources held out of training: figures, overlap, intervals."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from featx.cli import main
from featx.data.dataset import load_dataset
from featx.data.labels import PAPER_CLASSES
from featx.evaluation.metrics import METRICS, point_metrics
from featx.evaluation.task import Task
from featx.features.extract import SkippedImage
from featx.study.validate import validate
from featx.study.validation_report import summary_lines
from tests.realdata import copy_subset, shared_metadata, train_lite0

FIT_KEYS = ("accuracy", "accuracy_3class", "accuracy_2class", "sensitivity", "specificity", "auc_positive", "auc_covid")


@pytest.fixture(scope="module")
def trained(small_data, tmp_path_factory):
    """A logreg model trained on the 36 radiographs of small_data (covid from Cohen, the rest mostly Kermany)."""
    folder = tmp_path_factory.mktemp("validate_models") / "logreg"
    assert (
        train_lite0(small_data, tmp_path_factory.mktemp("validate_cache"), folder, "--head", "logreg", "--folds", "3")
        == 0
    )
    return folder


@pytest.fixture(scope="module")
def external(small_data, tmp_path_factory):
    """Adults from Cohen's collection the model never saw: covid from radiopaedia.org, pneumonia and normal
    from the other Cohen cases; plus one image copied from the training folder."""
    table = shared_metadata()
    training = set(pd.read_csv(small_data / "metadata.csv", dtype=str)["patient_id"])
    cohen = table["source"].str.startswith("ieee8023") & ~table["patient_id"].isin(training)
    covid = table[cohen & (table["label"] == "covid") & table["url"].str.contains("radiopaedia.org")].head(12)
    others = pd.concat([table[cohen & (table["label"] == label)].head(8) for label in ("pneumonia", "normal")])
    folder = copy_subset(pd.concat([covid, others]), tmp_path_factory.mktemp("external"))
    seen = pd.read_csv(small_data / "metadata.csv", dtype=str, keep_default_na=False).iloc[0]
    shutil.copyfile(small_data / seen["filename"], folder / "images" / "seen-in-training.jpg")
    manifest = pd.read_csv(folder / "metadata.csv", dtype=str, keep_default_na=False)
    extra = {**seen.to_dict(), "filename": "images/seen-in-training.jpg", "patient_id": "copied"}
    pd.concat([manifest, pd.DataFrame([extra])]).to_csv(folder / "metadata.csv", index=False)
    return folder


def test_validate_figures_are_the_metrics_of_the_predictions_it_wrote(trained, external, tmp_path, capsys):
    out = tmp_path / "report"
    assert (
        main(["validate", "--model-dir", str(trained), "--data", str(external), "--out", str(out), "--json", "-q"]) == 0
    )
    payload = json.loads(capsys.readouterr().out)
    predictions = pd.read_csv(out / "predictions.csv")
    assert payload["images"] == len(predictions) == 28 and payload["excluded_overlap"] == 1
    assert payload["excluded_images"] == ["images/seen-in-training.jpg"]
    assert "images/seen-in-training.jpg" not in set(predictions["image_id"])
    y_true = predictions["label"].map(PAPER_CLASSES.index).to_numpy()
    proba = predictions[[f"p_{name}" for name in PAPER_CLASSES]].to_numpy()
    expected = point_metrics(y_true, proba, Task(classes=PAPER_CLASSES, positive="covid"))
    for key in FIT_KEYS:
        assert payload["external"][key] == pytest.approx(expected[key], abs=1e-12)
        low, high = payload["external"]["ci95"][key]
        assert low <= payload["external"][key] <= high
        assert set(payload["cv"]) >= {key, "ci95"}
    assert payload["external"]["confusion"] == expected["confusion"]
    assert set(payload["comparison"]) == set(METRICS)
    assert 0 <= payload["external"]["ece_covid"] <= 1 and payload["task"] == {
        "classes": list(PAPER_CLASSES),
        "positive": "covid",
    }
    markdown = (out / "report.md").read_text()
    assert markdown.index("## Summary") < markdown.index("## External figures")
    assert "cross-validation" in markdown and (out / "report.html").exists()
    assert len(list((out / "figures").glob("*.png"))) == 3


def test_a_covid_only_folder_reports_sensitivity_and_says_specificity_cannot_be_computed(trained, external, tmp_path):
    table = pd.read_csv(external / "metadata.csv", dtype=str, keep_default_na=False)
    never_seen = table["filename"] != "images/seen-in-training.jpg"
    covid_only = copy_subset(table[(table["label"] == "covid") & never_seen], tmp_path / "covid")
    validation = validate(trained, load_dataset(covid_only, min_classes=1))
    assert validation.images == 12 and validation.external["sensitivity"] is not None
    for key in ("specificity", "accuracy", "accuracy_2class", "accuracy_3class", "auc_positive", "auc_covid"):
        assert validation.external[key] is None and validation.external["ci95"][key] is None
    assert set(validation.comparison) == {"sensitivity"}
    lines = " ".join(summary_lines(validation))
    assert "Covid specificity cannot be computed here: the folder holds no image other than covid" in lines
    assert validation.external["per_class_recall"] == {"covid": validation.external["sensitivity"]}


def test_undecodable_external_files_are_listed_and_skipped(trained, external, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(external, folder)
    (folder / "images" / "empty.jpg").write_bytes(b"")
    with open(folder / "metadata.csv", "a") as handle:
        handle.write("images/empty.jpg,covid,covid,broken-1,PA,test" + "," * 8 + "\n")
    validation = validate(trained, load_dataset(folder))
    assert validation.skipped == [SkippedImage(image_id="images/empty.jpg", reason="empty file (0 bytes)")]
    assert validation.to_json()["skipped"] == [{"file": "images/empty.jpg", "reason": "empty file (0 bytes)"}]
    assert validation.images == 28 and np.isfinite(validation.external["sensitivity"])


def test_reproduce_external_adds_a_validation_section_per_variant(feature_data, external, tmp_path, capsys):
    dataset, cache = feature_data
    out = tmp_path / "paper"
    args = "reproduce --models efficientnet_lite0 --subsets all --input-size 64x64 --folds 5 --no-audit -q --json"
    assert (
        main(
            [
                *args.split(),
                "--data",
                str(dataset.root),
                "--cache",
                str(cache),
                "--out",
                str(out),
                "--external",
                str(external),
            ]
        )
        == 0
    )
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["external"]) == 2
    assert all(v["images"] + v["excluded_overlap"] == 29 for v in payload["external"])
    markdown = (out / "report.md").read_text()
    assert markdown.count("## External validation: all, efficientnet_lite0 (imagenet) + mlp1000-750") == 2
    assert len(list((out / "models").iterdir())) == 2
