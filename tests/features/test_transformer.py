"""CNNFeatures: image paths to cached features, inside scikit-learn pipelines and searches."""

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.pipeline import Pipeline

import featx
from featx.data.dataset import dataset_from_paths
from featx.features.extract import extract
from featx.features.identity import FeatureSpec
from featx.features.store import open_store
from featx.heads.registry import make_head

RANDOM_64 = FeatureSpec(backbone="efficientnet_lite0", weights="none", input_size=(64, 64))


def _paths(dataset):
    return dataset.table["path"].to_numpy()


def test_cnnfeatures_parameters_clone_and_not_fitted(tmp_path):
    transformer = featx.CNNFeatures(backbone="efficientnet_lite0", input_size=(64, 64), cache_dir=str(tmp_path))
    copy = clone(transformer)
    assert copy.get_params() == transformer.get_params() and copy is not transformer
    copy.set_params(backbone="mobilenet_v2", batch_size=8)
    assert copy.get_params()["backbone"] == "mobilenet_v2" and transformer.backbone == "efficientnet_lite0"
    with pytest.raises(NotFittedError):
        transformer.transform(["x.png"])
    with pytest.raises(featx.FeatxError, match="image file paths"):
        transformer.fit([1.5, 2.5])


def test_cnnfeatures_reads_the_store_in_pipelines_and_grid_search(feature_data):
    dataset, cache = feature_data
    X, y = _paths(dataset), dataset.table["label"].to_numpy()
    features = featx.CNNFeatures(input_size=(64, 64), cache_dir=str(cache))
    out = features.fit_transform(X)
    assert out.shape == (len(X), 1280) and np.isfinite(out).all()
    pipeline = Pipeline([("cnn", features), ("head", make_head("logreg"))])
    scores = cross_validate(pipeline, X, y, cv=3)
    assert len(scores["test_score"]) == 3 and scores["test_score"].mean() > 0.5
    search = GridSearchCV(pipeline, {"head__estimator__C": [0.01, 0.1]}, cv=3).fit(X, y)
    assert search.best_params_["head__estimator__C"] in (0.01, 0.1)
    imbalanced = featx.with_strategy(make_head("logreg"), "smote")
    assert cross_validate(imbalanced, out, y, cv=3)["test_score"].mean() > 0.5


def test_cnnfeatures_extracts_new_images_once_and_round_trips_joblib(feature_data, tmp_path, small_data):
    dataset, cache = feature_data
    new_images = sorted((small_data / "images").glob("*.jpg"))[:5]
    transformer = featx.CNNFeatures(input_size=(64, 64), cache_dir=str(cache)).fit(new_images)
    first = transformer.transform(new_images)
    stores_after_first = sorted(cache.rglob("*.h5"))
    again = transformer.transform(new_images)
    assert sorted(cache.rglob("*.h5")) == stores_after_first  # nothing extracted twice
    np.testing.assert_array_equal(first, again)
    joblib.dump(transformer, tmp_path / "t.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "t.joblib").transform(new_images), first)


def test_extract_reuses_the_features_cnnfeatures_computed_and_they_match_bit_for_bit(small_data, tmp_path):
    images = sorted((small_data / "images").glob("*.jpg"))[:6]
    cache = tmp_path / "cache"
    transformer = featx.CNNFeatures(weights="none", input_size=(64, 64), batch_size=4, cache_dir=str(cache))
    seen = transformer.fit(images[:4]).transform(images[:4])
    summary = extract(dataset_from_paths(images), RANDOM_64, batch_size=4, cache_dir=cache, pixel_cache=False)
    assert (summary.reused_images, summary.computed_images, summary.decoded_images) == (4, 2, 2)
    assert open_store(summary.store).features[:4].tobytes() == seen.tobytes()
    np.testing.assert_array_equal(transformer.transform(images), open_store(summary.store).features)


def test_cnnfeatures_names_undecodable_files(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    transformer = featx.CNNFeatures(input_size=(64, 64), cache_dir=str(tmp_path / "cache")).fit([bad])
    with pytest.raises(featx.FeatxError, match="bad.png: empty file"):
        transformer.transform([bad])
