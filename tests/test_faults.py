"""Faults: hostile bytes fuzzed into the decoder, a full disk, killed fit and finetune runs."""

import json
import os
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featx.data import images
from featx.features.store import open_store
from featx.exceptions import ImageDecodeError

from .conftest import REPO, SHARED_DATA, requires_data

REAL_JPEG = next((SHARED_DATA / "images").glob("kermany_*.jpg"), None) if SHARED_DATA.exists() else None


def _decode_or_featx_error(path):
    try:
        pixels = images.decode(path)
    except ImageDecodeError as error:
        assert error.path == str(path) and error.reason
        return None
    assert pixels.dtype == np.uint8 and pixels.ndim in (2, 3)
    return pixels


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=4096))
def test_random_bytes_decode_or_raise_featx_error(tmp_path, data):
    path = tmp_path / "fuzz.jpg"
    path.write_bytes(data)
    _decode_or_featx_error(path)


@requires_data
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), min_size=1, max_size=20),
       cut=st.one_of(st.none(), st.integers(0, 10**9)))
def test_mutated_real_jpegs_decode_or_raise_featx_error(tmp_path, edits, cut):
    data = bytearray(REAL_JPEG.read_bytes())
    for position, value in edits:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % len(data)]
    path = tmp_path / "mutated.jpg"
    path.write_bytes(bytes(data))
    _decode_or_featx_error(path)


@requires_data
def test_wrong_extension_is_decoded_by_content(tmp_path):
    png_named_jpg = tmp_path / "really_a.png.jpg"
    from PIL import Image

    Image.open(REAL_JPEG).save(png_named_jpg, format="PNG")
    assert images.decode(png_named_jpg).shape == images.decode(REAL_JPEG).shape


def _cli(*args):
    return [sys.executable, str(REPO / "cli.py"), *args]


def _limit_file_size(limit_bytes):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


@requires_data
def test_full_disk_gives_a_clear_error_and_keeps_complete_stores(small_data, tmp_path):
    cache = tmp_path / "cache"
    base = ["extract", "--model", "efficientnet_lite0", "--weights", "none", "--data", str(small_data),
            "--cache", str(cache), "--batch-size", "4", "--quiet"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.run(_cli(*base, "--input-size", "64x64", "--json"), capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr
    complete = json.loads(first.stdout.strip().splitlines()[-1])["store"]
    before = open(complete, "rb").read()
    full = subprocess.run(_cli(*base, "--input-size", "72x72"), capture_output=True, text=True, env=env,
                          preexec_fn=_limit_file_size(150_000))
    assert full.returncode == 1, full.stderr[-2000:]
    assert "error:" in full.stderr and "Traceback" not in full.stderr
    assert open(complete, "rb").read() == before
    assert len(list(cache.rglob("*.h5"))) - len(list(cache.rglob("*.partial.h5"))) == 1


def _run_and_kill(command, wait_for, env, timeout=300):
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None and not wait_for():
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.mark.slow
def test_killed_finetune_resumes_at_the_next_fold_with_the_same_result(small_data, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = ["finetune", "--model", "efficientnet_lite0", "--head", "mlp1000", "--input-size", "64x64", "--folds", "3",
            "--epochs", "1", "--batch-size", "8", "--data", str(small_data), "--quiet", "--json"]
    killed = tmp_path / "killed"
    _run_and_kill(_cli(*args, "--cache", str(killed)), lambda: any(killed.rglob("*.partial.json")), env)
    assert not [p for p in killed.rglob("results/*.json") if not p.name.endswith(".partial.json")]
    resumed = subprocess.run(_cli(*args, "--cache", str(killed)), capture_output=True, text=True, env=env)
    reference = subprocess.run(_cli(*args, "--cache", str(tmp_path / "clean")), capture_output=True, text=True, env=env)
    first, second = (json.loads(r.stdout.strip().splitlines()[-1]) for r in (resumed, reference))
    for key in ("accuracy_3class", "sensitivity", "specificity", "auc_covid"):
        assert first[key] == pytest.approx(second[key], abs=1e-9)


@requires_data
def test_killed_fit_leaves_no_result_and_a_rerun_matches(feature_data, tmp_path):
    dataset, cache = feature_data
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = ["fit", "--model", "efficientnet_lite0", "--input-size", "64x64", "--data", str(dataset.root),
            "--cache", str(cache), "--folds", "5", "--head", "mlp1024", "--epochs", "3", "--seed", "11", "--quiet"]
    results = cache / dataset.id / "results"
    seen = set(results.glob("*")) if results.exists() else set()
    started = time.time()
    _run_and_kill(_cli(*args), lambda: time.time() - started > 12, env)
    assert {p for p in results.glob("*") if p not in seen and "s11" in p.name} == set()
    runs = [subprocess.run(_cli(*args, "--json", *extra), capture_output=True, text=True, env=env)
            for extra in ([], ["--refit"])]
    first, second = (json.loads(r.stdout.strip().splitlines()[-1]) for r in runs)
    assert first["accuracy_3class"] == second["accuracy_3class"] and first["auc_covid"] == second["auc_covid"]
