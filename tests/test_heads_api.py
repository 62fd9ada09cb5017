"""scikit-learn conformance of the heads and of CNNFeatures, and the Python API in pipelines."""

import pickle

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

import featx
from featx.heads.dense import make_head

STOCHASTIC_WEIGHTS = "sample weights are not equivalent to repeated rows for a randomised or float32 learner"
EXPECTED_FAILURES = {
    "svm": {"check_sample_weight_equivalence_on_dense_data": STOCHASTIC_WEIGHTS,
            "check_estimators_pickle": "libsvm needs writable buffers after a read-only memmap load"},
    "rf": {"check_sample_weight_equivalence_on_dense_data": STOCHASTIC_WEIGHTS,
           "check_sample_weight_equivalence_on_sparse_data": STOCHASTIC_WEIGHTS},
    "xgb": {"check_sample_weight_equivalence_on_dense_data": STOCHASTIC_WEIGHTS},
    "mlp1000-750": {"check_sample_weight_equivalence_on_dense_data": STOCHASTIC_WEIGHTS,
                    "check_methods_sample_order_invariance": "float32 matrix products differ in the last bit with row order"},
}
SMALL = {"rf": {"n_estimators": 20}, "xgb": {"n_estimators": 20}}  # the API, not the accuracy, is checked here
CLASSICAL = {spec: make_head(spec).set_params(**SMALL.get(spec, {})) for spec in ("logreg", "svm", "rf", "xgb")}


def _expected(estimator):
    for spec, instance in {**CLASSICAL, "mlp1000-750": None}.items():
        if instance is not None and type(estimator) is type(instance) and repr(estimator) == repr(instance):
            return EXPECTED_FAILURES.get(spec, {})
    return EXPECTED_FAILURES["mlp1000-750"] if type(estimator).__name__ == "KerasMLPClassifier" else {}


@parametrize_with_checks(list(CLASSICAL.values()), expected_failed_checks=_expected)
def test_classical_heads_pass_sklearn_checks(estimator, check):
    check(estimator)


@pytest.mark.slow
@parametrize_with_checks([make_head("mlp1000-750", epochs=2)], expected_failed_checks=_expected)
def test_keras_head_passes_sklearn_checks(estimator, check):
    check(estimator)


def test_keras_head_clones_pickles_and_predicts_the_same(feature_data):
    from featx.features.store import collect_features
    from featx.features.extract import store_identity

    dataset, cache = feature_data
    identity = store_identity(dataset, "efficientnet_lite0", "imagenet", (64, 64))
    X, _, _ = collect_features(cache, identity, dataset.table["content_hash"])
    y = dataset.table["label"].to_numpy()
    head = make_head("mlp1000-750", epochs=2)
    assert clone(head).get_params() == head.get_params()
    with pytest.raises(NotFittedError):
        head.predict(X)
    head.fit(X, y)
    restored = pickle.loads(pickle.dumps(head))
    np.testing.assert_array_equal(restored.predict_proba(X), head.predict_proba(X))
    assert set(head.predict(X)) <= {"covid", "normal", "pneumonia"}


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


def test_cnnfeatures_names_undecodable_files(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    transformer = featx.CNNFeatures(input_size=(64, 64), cache_dir=str(tmp_path / "cache")).fit([bad])
    with pytest.raises(featx.FeatxError, match="bad.png: empty file"):
        transformer.transform([bad])
