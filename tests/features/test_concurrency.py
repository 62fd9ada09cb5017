"""Concurrency and signals on real radiographs and real Keras models: two processes on one store,
SIGTERM / Ctrl-C during extraction, the decode pool inside joblib workers, and the Python door."""

import json
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline

from featx import CNNFeatures
from featx.data.pool import DecodePool, default_workers
from featx.exceptions import ParameterError
from featx.heads.dense import DenseHeadClassifier
from tests.processes import Child, descendants, kill_at_progress
from tests.realdata import featx_command

TINY = ("--model", "mobilenet_v2", "--weights", "none", "--input-size", "32x32", "--batch-size", "4")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TQDM_MININTERVAL": "0"}  # a progress line per batch
PROGRESS = r"(\d+)/36"
UNCLEAN = ("resource_tracker", "leaked", "Traceback")


def _extract(data, cache, *extra) -> list:
    return featx_command("extract", *TINY, "--data", str(data), "--cache", str(cache), "--json", *extra)


@pytest.mark.parametrize(
    "timeout, waits", [(None, True), ("0", False)], ids=["default-timeout-waits", "timeout-0-fails"]
)
def test_second_process_on_a_store_waits_for_the_first_then_reuses_its_store(small_data, tmp_path, timeout, waits):
    cache = tmp_path / "cache"
    first = Child(_extract(small_data, cache), ENV)
    first.wait_for(r"\b4/36")  # a batch is done: the first holds the store's lock
    os.kill(first.process.pid, signal.SIGSTOP)  # and keeps it until the second has said what it does
    try:
        second = Child(_extract(small_data, cache, *(["--lock-timeout", timeout] if timeout else [])), ENV)
        if waits:
            second.wait_for(r"waiting for another featx process extracting \S+\.h5 \(lock \S+\); --lock-timeout 3600")
        else:
            assert second.finish() == 1
    finally:
        os.kill(first.process.pid, signal.SIGCONT)
    assert first.finish() == 0, first.stderr
    made = json.loads(first.stdout)
    assert not made["cached"] and made["images"] == 36
    if waits:
        assert second.finish() == 0, second.stderr
        reused = json.loads(second.stdout)
        assert reused["cached"] and reused["store"] == made["store"] and reused["images"] == 36
    else:
        assert "another featx process is extracting this store (lock " in second.stderr
        assert "give --lock-timeout S to wait for it" in second.stderr and "Traceback" not in second.stderr
    assert os.listdir(Path(made["store"]).parent) == [Path(made["store"]).name]


@pytest.mark.parametrize("whole_group", [False, True], ids=["process", "process-group"])
@pytest.mark.parametrize("signal_number, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"])
def test_signal_during_extraction_exits_cleanly_and_a_rerun_resumes(
    small_data, tmp_path, signal_number, status, whole_group
):
    cache = tmp_path / "cache"
    stopped = kill_at_progress(
        _extract(small_data, cache), PROGRESS, lambda done: max(done) >= 8, ENV, signal_number, whole_group
    )
    assert stopped.returncode == status, stopped.stderr[-2000:]
    assert not [word for word in UNCLEAN if word in stopped.stderr], stopped.stderr[-3000:]
    assert stopped.descendants, "the decode workers had not started; the signal came too early to test them"
    assert stopped.survivors() == []
    rerun = Child(_extract(small_data, cache, "--quiet"), ENV)
    assert rerun.finish() == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["images"] == 36 and summary["resumed_images"] >= 8 and not summary["cached"]


def _decode_in_this_worker(paths):
    """Inside a joblib worker: decode real images with a default pool, report what it started."""
    threads_before = {thread.ident for thread in threading.enumerate()}
    with DecodePool((32, 32)) as pool:
        decoded = pool.submit(paths).result()
        decoders = [t for t in threading.enumerate() if t.ident not in threads_before and "featx-decode" in t.name]
        started = descendants(os.getpid())
    return sum(pixels is not None for pixels, _ in decoded), len(decoders), started, default_workers()


def test_decode_pool_inside_a_joblib_worker_uses_its_share_in_threads(small_data):
    from joblib import Parallel, delayed

    paths = sorted(str(path) for path in (small_data / "images").iterdir())[:6]
    share = max(1, (os.cpu_count() or 1) // 2)
    reports = Parallel(n_jobs=2, backend="loky")(delayed(_decode_in_this_worker)(paths[i::2]) for i in range(2))
    for decoded, decoders, started, cores in reports:
        assert decoded == 3 and started == [] and cores == share and 1 <= decoders <= share


def _search(kind, cache):
    pipe = make_pipeline(
        CNNFeatures("mobilenet_v2", weights="none", input_size=(32, 32), batch_size=8, cache_dir=str(cache)),
        LogisticRegression(max_iter=500),
    )
    if kind == "cross_val_score":
        return lambda X, y: cross_val_score(pipe, X, y, cv=2, n_jobs=2)
    grid = GridSearchCV(pipe, {"logisticregression__C": [0.1, 1.0]}, cv=2, n_jobs=2)
    return lambda X, y: grid.fit(X, y).cv_results_["mean_test_score"]


@pytest.mark.parametrize("kind", ["cross_val_score", "GridSearchCV"])
def test_cnnfeatures_in_parallel_folds_on_a_fresh_cache(small_data, tmp_path, kind):
    import pandas as pd

    table = pd.read_csv(small_data / "metadata.csv").iloc[::3]  # 12 images, covid / pneumonia / normal
    X = [str(small_data / name) for name in table["filename"]]
    y = table["label"].to_numpy()
    scores = _search(kind, tmp_path / "cache")(X, y)
    assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()
    assert list((tmp_path / "cache").rglob("*.h5")), "the folds extracted nothing"


def test_cnnfeatures_takes_bytes_and_pathlike_paths_as_their_text(small_data, tmp_path):
    images = sorted((small_data / "images").iterdir())[:3]
    transformer = CNNFeatures("mobilenet_v2", weights="none", input_size=(32, 32), cache_dir=str(tmp_path))
    as_text = transformer.fit_transform([str(path) for path in images])
    for paths in ([os.fsencode(path) for path in images], images):
        np.testing.assert_array_equal(transformer.fit_transform(paths), as_text)


@pytest.mark.parametrize("n_jobs", [0, 1.5, "2", True])
def test_cnnfeatures_refuses_an_n_jobs_scikit_learn_refuses(n_jobs):
    with pytest.raises(ParameterError, match=f"n_jobs must be a whole number other than 0.*got {n_jobs!r}"):
        CNNFeatures("mobilenet_v2", weights="none", input_size=(32, 32), n_jobs=n_jobs).fit(["a.jpg"])


def _features(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(24, 5)).astype(np.float32)
    return X, np.where(X[:, 0] > 0, "covid", "normal")


@pytest.mark.parametrize(
    "random_state", [None, np.random.RandomState(7), 7, np.int64(7)], ids=["None", "RandomState", "int", "np.int64"]
)
def test_keras_head_takes_every_random_state_scikit_learn_takes(random_state):
    X, y = _features()
    head = DenseHeadClassifier(hidden=(4,), epochs=2, batch_size=8, random_state=random_state)
    proba = clone(head).fit(X, y).predict_proba(X)
    assert proba.shape == (24, 2) and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


def test_keras_head_with_an_int_random_state_repeats_itself():
    X, y = _features()
    runs = [DenseHeadClassifier(hidden=(4,), epochs=2, random_state=3).fit(X, y).predict_proba(X) for _ in range(2)]
    np.testing.assert_array_equal(*runs)


@pytest.mark.parametrize("random_state", [-1, 2**32, "seven", 1.5])
def test_keras_head_refuses_a_random_state_scikit_learn_refuses(random_state):
    X, y = _features()
    with pytest.raises(ValueError, match="seed|Seed"):
        DenseHeadClassifier(hidden=(4,), epochs=1, random_state=random_state).fit(X, y)


@pytest.mark.parametrize("label", ["covid", 0, 2.0])
def test_keras_head_fitted_on_one_class_is_refused_as_scikit_learn_does(label):
    X, _ = _features()
    with pytest.raises(ValueError, match=f"at least 2 classes.*only one class: {label!r}"):
        DenseHeadClassifier(hidden=(4,), epochs=1).fit(X, [label] * len(X))


@pytest.mark.parametrize("value, status", [("-1", 1), ("nan", 1), ("-inf", 1), ("soon", 2)])
def test_lock_timeout_out_of_range_is_refused_before_any_work(small_data, tmp_path, capsys, value, status):
    from featx.cli import main

    args = ["extract", *TINY, "--data", str(small_data), "--cache", str(tmp_path / "cache"), f"--lock-timeout={value}"]
    if status == 2:  # not a number at all: argparse's usage error
        with pytest.raises(SystemExit) as stopped:
            main(args)
        assert stopped.value.code == 2
    else:
        assert main(args) == 1
    assert "lock-timeout" in capsys.readouterr().err and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("lock_timeout", [-1, float("nan"), "60", None, True])
def test_extract_refuses_a_lock_timeout_that_is_not_seconds(small_dataset, tmp_path, lock_timeout):
    from featx.features.extract import extract
    from featx.features.identity import FeatureSpec

    features = FeatureSpec(backbone="mobilenet_v2", weights="none", input_size=(32, 32))
    with pytest.raises(ParameterError, match=r"lock_timeout must be a finite number within 0\.\.1e\+07"):
        extract(small_dataset, features, cache_dir=tmp_path / "cache", progress=False, lock_timeout=lock_timeout)
    assert not (tmp_path / "cache").exists()
