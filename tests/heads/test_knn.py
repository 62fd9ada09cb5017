"""The k-NN head, added as one file and one registry line: the CLI lists it and fits, trains and predicts
with it end to end on real features."""

import json
import shutil

import numpy as np
import pytest

from featx.cli import main
from featx.features.store import load_features
from featx.heads.knn import NEIGHBOURS
from featx.models.predict import LoadedModel
from tests.realdata import LITE0_64, train_lite0


def test_the_cli_offers_knn(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["fit", "--help"])
    assert stopped.value.code == 0 and "knn" in capsys.readouterr().out


def test_fit_train_and_predict_with_knn(feature_data, tmp_path, capsys):
    dataset, shared_cache = feature_data
    cache = shutil.copytree(shared_cache, tmp_path / "cache")
    argv = ["--data", str(dataset.root), "--cache", str(cache), "--model", LITE0_64.backbone, "--input-size", "64x64"]
    assert main(["fit", "--head", "knn", "--folds", "3", *argv, "--json", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["variant"]["head"] == "knn" and 1 / 3 < summary["accuracy_3class"] <= 1

    assert train_lite0(dataset.root, cache, tmp_path / "model", "--head", "knn", "--folds", "3") == 0
    assert "model saved to" in capsys.readouterr().out
    model = LoadedModel(tmp_path / "model")
    assert (
        model.manifest.model_file == "head.skops"
        and model.manifest.cross_validation.figures["accuracy_3class"] == (summary["accuracy_3class"])
    )
    x = load_features(cache, LITE0_64.key(dataset.id), dataset).features
    # every training row is its own nearest neighbour: it holds one of the NEIGHBOURS votes for its class
    proba = model.head.predict_proba(x)
    assert (proba[np.arange(len(x)), dataset.label_indices()] >= 1 / NEIGHBOURS).all()

    files = list(dataset.table["path"].iloc[:3])
    assert main(["predict", "--model-dir", str(tmp_path / "model"), *files, "--json", "-q"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert len(rows) == 3 and all(row["error"] == "" for row in rows)
