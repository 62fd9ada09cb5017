"""Feature health: every store records per-dimension statistics when it is made, and a degenerate store
(random-init features that vanish, non-finite values, mostly constant dimensions) is flagged."""

import json

import h5py
import numpy as np
import pandas as pd
import pytest

from featx.cli import main
from featx.features.extract import extract
from featx.features.identity import FeatureSpec
from featx.features.store import (
    CONSTANT_FRACTION_LIMIT,
    HEALTH_DATASETS,
    VANISHING_MAX_ABS,
    FeatureHealth,
    features_health,
    open_store,
)
from tests.realdata import copy_subset, shared_metadata

SIZE = (32, 32)


def test_genuine_features_are_healthy_and_their_statistics_are_recorded(feature_data):
    dataset, cache = feature_data
    (path,) = cache.glob("*/*.h5")
    store = open_store(path)
    health = store.health
    assert not health.degenerate and health.reasons == ()
    assert (health.rows, health.dims) == store.features.shape
    assert health.max_abs == pytest.approx(np.abs(store.features).max())
    assert health.nonfinite_values == 0
    with h5py.File(path, "r") as handle:
        recorded = {name: handle[name][...] for name in HEALTH_DATASETS}
    features = store.features.astype(np.float64)
    np.testing.assert_allclose(recorded["health_mean"], features.mean(axis=0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(recorded["health_std"], features.std(axis=0), rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(recorded["health_min"], features.min(axis=0))
    np.testing.assert_array_equal(recorded["health_max"], features.max(axis=0))
    assert health == FeatureHealth.of_features(store.features)
    key = FeatureSpec(
        backbone="efficientnet_lite0", weights="imagenet", input_size=(64, 64), runtime=store.key.runtime
    ).key(dataset.id)
    assert features_health(cache, key) == health


def test_random_init_features_that_vanish_are_flagged_when_made(small_dataset, tmp_path, caplog):
    features = FeatureSpec(backbone="mobilenet_v2", weights="none", input_size=SIZE)
    with caplog.at_level("WARNING", logger="featx.features.store"):
        summary = extract(small_dataset, features, batch_size=12, cache_dir=tmp_path, progress=False)
    assert "degenerate features (features vanish" in caplog.text
    store = open_store(summary.store)
    assert np.abs(store.features).max() < VANISHING_MAX_ABS  # Keras' random-init MobileNetV2: about 1e-11
    assert store.health.degenerate and summary.degenerate == list(store.health.reasons)
    assert features_health(tmp_path, features.key(small_dataset.id)).degenerate
    assert (
        features_health(tmp_path, FeatureSpec(backbone="vgg19", weights="none", input_size=SIZE).key(small_dataset.id))
        is None
    )


def test_a_store_made_before_health_was_recorded_gets_it_from_its_features(small_dataset, tmp_path):
    summary = extract(
        small_dataset, FeatureSpec(backbone="vgg19", weights="none", input_size=SIZE), batch_size=12, cache_dir=tmp_path
    )
    recorded = open_store(summary.store).health
    with h5py.File(summary.store, "r+") as handle:
        for name in [name for name in handle.attrs if name.startswith("health_")]:
            del handle.attrs[name]
        for name in HEALTH_DATASETS:
            del handle[name]
    old = open_store(summary.store, load_features=False)
    assert "health_rows" not in old.attrs
    assert old.health == recorded
    assert not recorded.degenerate  # VGG19 has no BatchNorm: its random-init features do not vanish


def test_non_finite_values_and_constant_dimensions_make_features_degenerate():
    rng = np.random.default_rng(0)
    healthy = rng.normal(size=(20, 10)).astype(np.float32)
    assert not FeatureHealth.of_features(healthy).degenerate
    broken = healthy.copy()
    broken[3, 4] = np.nan
    broken[5, 6] = np.inf
    health = FeatureHealth.of_features(broken)
    assert health.nonfinite_values == 2 and health.reasons == ("2 non-finite values",)
    constant = healthy.copy()
    dead = int(CONSTANT_FRACTION_LIMIT * 10) + 1
    constant[:, :dead] = 0.5
    health = FeatureHealth.of_features(constant)
    assert health.constant_dims == dead and health.reasons == (f"{dead} of 10 dimensions constant",)
    few_dead = healthy.copy()
    few_dead[:, :2] = 0.0  # dead ReLU channels: normal in real features
    assert FeatureHealth.of_features(few_dead).constant_dims == 2 and not FeatureHealth.of_features(few_dead).degenerate
    one_row = FeatureHealth.of_features(healthy[:1])
    assert one_row.constant_dims == 0 and not one_row.degenerate
    assert FeatureHealth.of_features(healthy[:0]).reasons == ("no rows",)


@pytest.fixture(scope="module")
def degenerate_store(small_data, tmp_path_factory):
    """A random-init MobileNetV2 store at 32x32 (its features vanish) beside a genuine Lite0 one at 64x64,
    and a logreg head fitted on each over two patient folds; returns (data folder, cache, common options)."""
    cache = tmp_path_factory.mktemp("degenerate_cache")
    common = ["--data", str(small_data), "--cache", str(cache), "-q"]
    assert main(["extract", "--model", "mobilenet_v2", "--weights", "none", "--input-size", "32x32", *common]) == 0
    assert main(["extract", "--model", "efficientnet_lite0", "--input-size", "64x64", *common]) == 0
    assert main(["fit", "--head", "logreg", "--folds", "2", *common]) == 0
    return small_data, cache, common


def test_fit_marks_a_variant_of_degenerate_features_instead_of_printing_its_figures(degenerate_store, capsys):
    _, _, common = degenerate_store
    fit = ["fit", "--head", "logreg", "--folds", "2", *common]
    capsys.readouterr()
    assert main(fit) == 0
    lines = capsys.readouterr().out.splitlines()
    random_init = lines[lines.index(next(line for line in lines if line.startswith("mobilenet_v2 (random-init)"))) + 1]
    genuine = lines[lines.index(next(line for line in lines if line.startswith("efficientnet_lite0 (imagenet)"))) + 1]
    assert random_init.startswith("degenerate features (features vanish (max |feature| ")
    assert random_init.endswith("): not a result") and "%" not in random_init
    assert "degenerate" not in genuine and "AUC" in genuine and "%" in genuine
    (marked,) = [line for line in lines if line.startswith("| 2 | mobilenet_v2 |")]
    (healthy,) = [line for line in lines if line.startswith("| 2 | efficientnet_lite0 |")]
    assert "degenerate features (features vanish" in marked and "[" not in marked
    assert "degenerate" not in healthy and "[" in healthy

    assert main([*fit, "--model", "mobilenet_v2", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["degenerate"] is True
    assert len(payload["degenerate_reasons"]) == 1 and payload["degenerate_reasons"][0].startswith("features vanish")
    assert main([*fit, "--model", "efficientnet_lite0", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["degenerate"] is False and payload["degenerate_reasons"] == []


def test_compare_marks_the_rows_of_degenerate_features(degenerate_store, capsys):
    _, _, common = degenerate_store
    capsys.readouterr()
    assert main(["compare", *common, "--json"]) == 0
    rows = {row["backbone"]: row for row in json.loads(capsys.readouterr().out)["rows"]}
    assert rows["mobilenet_v2"]["degenerate"] is True and rows["efficientnet_lite0"]["degenerate"] is False
    assert rows["mobilenet_v2"]["degenerate_reasons"].startswith("features vanish (max |feature| ")
    assert main(["compare", *common]) == 0
    table = capsys.readouterr().out.splitlines()
    (marked,) = [line for line in table if "| mobilenet_v2 |" in line]
    (genuine,) = [line for line in table if "| efficientnet_lite0 |" in line]
    assert "degenerate features (features vanish" in marked and "[" not in marked
    assert "degenerate" not in genuine and "[" in genuine


def test_validate_marks_figures_computed_from_degenerate_features(degenerate_store, tmp_path, capsys):
    data, _, common = degenerate_store
    training = set(pd.read_csv(data / "metadata.csv", dtype=str)["patient_id"])
    table = shared_metadata()
    unseen = table[~table["patient_id"].isin(training)]
    rows = pd.concat([unseen[unseen["label"] == label].head(3) for label in ("covid", "normal")])
    external = copy_subset(rows, tmp_path / "external")
    out = tmp_path / "report"
    for backbone, weights, size, degenerate in (
        ("mobilenet_v2", "none", "32x32", True),
        ("efficientnet_lite0", "imagenet", "64x64", False),
    ):
        model = tmp_path / backbone
        train = ["train", "--model", backbone, "--weights", weights, "--input-size", size, "--head", "logreg"]
        assert main([*train, "--folds", "2", "--model-dir", str(model), *common]) == 0
        capsys.readouterr()
        validate = ["validate", "--model-dir", str(model), "--data", str(external), "--out", str(out / backbone)]
        assert main([*validate, "--json"]) == 0
        payload = json.loads(capsys.readouterr().out)
        assert payload["degenerate"] is degenerate
        assert main(validate) == 0
        lines = capsys.readouterr().out.splitlines()
        report = (out / backbone / "report.md").read_text()
        if degenerate:
            assert payload["degenerate_reasons"][0].startswith("features vanish (max |feature| ")
            assert lines[1].startswith("External figures: degenerate features (features vanish")
            assert len(lines) == 3 and "not a result" in report and "externally vs" not in report
        else:
            assert payload["degenerate_reasons"] == [] and "not a result" not in report
