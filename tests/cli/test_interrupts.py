"""Ctrl-C and SIGTERM during training end the process cleanly: exit 130 / 143, one line, no
traceback, no crash in the interpreter's teardown, no model folder and no result left half-made."""

from __future__ import annotations

import os
import shutil
import signal

import pytest

from tests.processes import kill_at_progress
from tests.realdata import LITE0_64, featx_command


@pytest.mark.parametrize(("signal_number", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_training_exits_cleanly(feature_data, tmp_path, signal_number, status):
    dataset, features_cache = feature_data
    cache = tmp_path / "cache"
    shutil.copytree(features_cache, cache)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = ["train", "--model", LITE0_64.backbone, "--input-size", "64x64", "--data", str(dataset.root)]
    args += ["--cache", str(cache), "--folds", "5", "--head", "mlp1024", "--epochs", "3", "--seed", "7"]
    args += ["--model-dir", str(tmp_path / "model")]
    stopped = kill_at_progress(
        featx_command(*args), r"\| (\d+)/5 \[", lambda folds: max(folds) >= 1, env, signal_number
    )
    assert stopped.returncode == status, stopped.stderr[-2000:]
    assert "Traceback" not in stopped.stderr and "Segmentation" not in stopped.stderr, stopped.stderr[-2000:]
    assert stopped.stderr.rstrip().splitlines()[-1].startswith(("interrupted", "terminated"))
    assert not (tmp_path / "model").exists()
    assert not [path for path in cache.rglob("results/*.json") if "s7" in path.name]
