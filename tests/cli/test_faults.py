"""Faults of whole runs: a full disk, killed fit and finetune subprocesses."""

import json
import os
import resource
import signal
import subprocess

import pytest

from tests.processes import kill_at_progress
from tests.realdata import featx_command, requires_data


def _limit_file_size(limit_bytes):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return apply


@requires_data
def test_full_disk_gives_a_clear_error_and_keeps_complete_stores(small_data, tmp_path):
    cache = tmp_path / "cache"
    base = [
        "extract",
        "--model",
        "efficientnet_lite0",
        "--weights",
        "none",
        "--data",
        str(small_data),
        "--cache",
        str(cache),
        "--batch-size",
        "4",
        "--quiet",
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.run(
        featx_command(*base, "--input-size", "64x64", "--json"), capture_output=True, text=True, env=env
    )
    assert first.returncode == 0, first.stderr
    complete = json.loads(first.stdout)["store"]
    before = open(complete, "rb").read()
    full = subprocess.run(
        featx_command(*base, "--input-size", "72x72"),
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=_limit_file_size(150_000),
    )
    assert full.returncode == 1, full.stderr[-2000:]
    assert "error:" in full.stderr and "Traceback" not in full.stderr
    assert open(complete, "rb").read() == before
    assert len(list(cache.rglob("*.h5"))) - len(list(cache.rglob("*.partial.h5"))) == 1


@pytest.mark.slow
def test_killed_finetune_resumes_at_the_next_fold_with_the_same_result(small_data, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = [
        "finetune",
        "--model",
        "efficientnet_lite0",
        "--head",
        "mlp1000",
        "--input-size",
        "64x64",
        "--folds",
        "3",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--data",
        str(small_data),
        "--json",
    ]
    killed = tmp_path / "killed"
    # featx's fold bar shows 1/3 once fold 0's predictions are checkpointed, before fold 1 starts training
    fold_bar = r"folds:[^\r\n]*?(\d+)/3 \["
    kill_at_progress(featx_command(*args, "--cache", str(killed)), fold_bar, lambda seen: max(seen) >= 1, env)
    assert any(killed.rglob("*.partial.json")), "the kill came before the first fold was checkpointed"
    assert not [p for p in killed.rglob("results/*.json") if not p.name.endswith(".partial.json")]
    resumed = subprocess.run(featx_command(*args, "--cache", str(killed)), capture_output=True, text=True, env=env)
    reference = subprocess.run(
        featx_command(*args, "--cache", str(tmp_path / "clean")), capture_output=True, text=True, env=env
    )
    first, second = (json.loads(r.stdout) for r in (resumed, reference))
    for key in ("accuracy_3class", "sensitivity", "specificity", "auc_covid"):
        assert first[key] == pytest.approx(second[key], abs=1e-9)


@requires_data
def test_killed_fit_leaves_no_result_and_a_rerun_matches(feature_data, tmp_path):
    dataset, cache = feature_data
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = [
        "fit",
        "--model",
        "efficientnet_lite0",
        "--input-size",
        "64x64",
        "--data",
        str(dataset.root),
        "--cache",
        str(cache),
        "--folds",
        "5",
        "--head",
        "mlp1024",
        "--epochs",
        "3",
        "--seed",
        "11",
    ]
    results = cache / dataset.id / "results"
    seen = set(results.glob("*")) if results.exists() else set()
    kill_at_progress(featx_command(*args), r"\| (\d+)/5 \[", lambda folds: max(folds) >= 2, env)
    assert {p for p in results.glob("*") if p not in seen and "s11" in p.name} == set()
    runs = [
        subprocess.run(featx_command(*args, "--json", "-q", *extra), capture_output=True, text=True, env=env)
        for extra in ([], ["--refit"])
    ]
    first, second = (json.loads(r.stdout) for r in runs)
    assert first["accuracy_3class"] == second["accuracy_3class"] and first["auc_covid"] == second["auc_covid"]
