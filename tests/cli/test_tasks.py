"""Any labelling task on real radiographs: a binary task from class folders and a four-class task from the
manifest's subtype, end to end from the command line and from Python, with hand-computed metrics."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from featx.cli import main
from featx.data.dataset import load_dataset
from featx.evaluation.results import load_result
from featx.evaluation.splits import Protocol, make_split
from featx.exceptions import SplitError
from tests.realdata import SHARED_DATA, pick_rows

SIZE = ["--input-size", "64x64"]


@pytest.fixture(scope="module")
def binary_folder(tmp_path_factory):
    """Class sub-folders: 'opacity' (covid and pneumonia radiographs) and 'clear' (normal ones)."""
    rows = pick_rows({"covid": 10, "bacterial": 10, "normal": 16}, seed=5)
    folder = tmp_path_factory.mktemp("binary")
    for row in rows.itertuples():
        target = folder / ("clear" if row.label == "normal" else "opacity") / row.filename.split("/")[-1]
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(SHARED_DATA / row.filename, target)
    return folder


@pytest.fixture(scope="module")
def four_class_folder(tmp_path_factory):
    """A manifest whose label is the subtype: covid, bacterial, viral, normal."""
    rows = pick_rows({"covid": 10, "bacterial": 10, "viral": 10, "normal": 10}, seed=6)
    folder = tmp_path_factory.mktemp("four")
    (folder / "images").mkdir()
    for filename in rows["filename"]:
        shutil.copyfile(SHARED_DATA / filename, folder / filename)
    rows.assign(label=rows["subtype"]).to_csv(folder / "metadata.csv", index=False)
    return folder


def _hand_computed(result, positive: str) -> dict:
    predicted = result.proba.argmax(axis=1)
    truth = result.y_true
    p = result.classes.index(positive)
    tp = np.sum((truth == p) & (predicted == p))
    tn = np.sum((truth != p) & (predicted != p))
    return {
        "accuracy": np.mean(predicted == truth),
        "sensitivity": tp / np.sum(truth == p),
        "specificity": tn / np.sum(truth != p),
        "accuracy_2class": (tp + tn) / len(truth),
    }


def _run(*args, capsys):
    assert main([*args]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("task", ["binary", "four"])
def test_a_task_runs_end_to_end_with_hand_computed_metrics(task, binary_folder, four_class_folder, tmp_path, capsys):
    folder = binary_folder if task == "binary" else four_class_folder
    classes = ("clear", "opacity") if task == "binary" else ("bacterial", "covid", "normal", "viral")
    positive = ["--positive", "opacity"] if task == "binary" else []
    data = ["--data", str(folder), "--cache", str(tmp_path / "cache"), "-q"]
    group = ["--group-by", "image"] if task == "binary" else []  # class folders carry no patient ids
    assert main(["extract", "--model", "efficientnet_lite0", *SIZE, *data]) == 0
    capsys.readouterr()
    for head in ("logreg", "mlp1000"):
        extra = ["--epochs", "3"] if head == "mlp1000" else []
        summary = _run(
            "fit", "--head", head, "--folds", "3", *group, *positive, *SIZE, *data, *extra, "--json", capsys=capsys
        )
        result = load_result(summary["result_file"])
        assert result.classes == classes and summary["task"]["classes"] == list(classes)
        assert summary["task"]["positive"] == ("opacity" if task == "binary" else "covid")
        for key, value in _hand_computed(result, summary["task"]["positive"]).items():
            assert summary[key] == pytest.approx(value, abs=1e-12), key
        assert summary["accuracy_3class"] is None
        assert (summary["auc_covid"] is None) == (task == "binary")
    rows = _run("compare", *positive, *data, "--json", capsys=capsys)["rows"]
    assert {row["head"] for row in rows} == {"logreg", "mlp1000"} and {row["positive"] for row in rows} == {
        summary["task"]["positive"]
    }
    model_dir = tmp_path / "model"
    manifest = _run(
        "train",
        "--model",
        "efficientnet_lite0",
        "--head",
        "logreg",
        "--folds",
        "3",
        *group,
        *positive,
        *data,
        "--model-dir",
        str(model_dir),
        "--json",
        capsys=capsys,
    )
    assert manifest["classes"] == list(classes)
    files = [str(p) for p in sorted(folder.rglob("*.jpg"))[:3]]
    predictions = _run("predict", "--model-dir", str(model_dir), *files, "--json", "-q", capsys=capsys)["rows"]
    assert set(predictions[0]) == {"file", *(f"p_{c}" for c in classes), "predicted", "error"}
    assert all(row["predicted"] in classes for row in predictions)


def test_the_python_api_works_for_a_binary_task(binary_folder, tmp_path):
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import Pipeline

    import featx

    dataset = load_dataset(binary_folder)
    pipeline = Pipeline(
        [
            ("cnn", featx.CNNFeatures(input_size=(64, 64), cache_dir=str(tmp_path))),
            ("head", featx.make_head("mlp1000", epochs=3)),
        ]
    )
    scores = cross_val_score(pipeline, dataset.table["path"], dataset.table["label"], cv=3)
    assert len(scores) == 3 and np.all((0 <= scores) & (scores <= 1))


def test_a_class_with_too_few_patients_is_named(four_class_folder, tmp_path):
    table = pd.read_csv(four_class_folder / "metadata.csv", dtype=str, keep_default_na=False)
    keep = table[(table["label"] != "viral") | (table.index.isin(table.index[table["label"] == "viral"][:2]))]
    folder = tmp_path / "few"
    shutil.copytree(four_class_folder, folder)
    keep.to_csv(folder / "metadata.csv", index=False)
    with pytest.raises(SplitError, match="class 'viral' has only 2 patients, fewer than folds=3"):
        make_split(load_dataset(folder), Protocol(group_by="patient", folds=3))
