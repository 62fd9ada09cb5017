"""Shared fixtures: real radiographs from ../shared/data/cxr, copied per test session into tmp."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.realdata import HAVE_DATA, LITE0_64, MISSING, copy_subset, pick_rows

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def pytest_configure(config):
    """Under CI a missing data folder is a failure, not a reason to skip half the suite."""
    if os.environ.get("CI") and not HAVE_DATA:
        raise pytest.UsageError(f"CI is set and {MISSING}")


@pytest.fixture(scope="session", autouse=True)
def featx_home(tmp_path_factory):
    """Converted weights go to a per-session folder unless FEATX_HOME is set already."""
    if "FEATX_HOME" not in os.environ:
        os.environ["FEATX_HOME"] = str(tmp_path_factory.mktemp("featx_home"))
    return Path(os.environ["FEATX_HOME"])


def _need_data():
    if not HAVE_DATA:
        pytest.skip(MISSING)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """36 real radiographs: 12 covid, 6 bacterial + 6 viral pneumonia, 12 normal."""
    _need_data()
    rows = pick_rows({"covid": 12, "bacterial": 6, "viral": 6, "normal": 12})
    return copy_subset(rows, tmp_path_factory.mktemp("small_data"))


@pytest.fixture(scope="session")
def small_dataset(small_data):
    """``small_data`` loaded and validated."""
    from featx.data.dataset import load_dataset

    return load_dataset(small_data)


@pytest.fixture(scope="session")
def feature_data(tmp_path_factory):
    """90 real radiographs (30 per class) and a real EfficientNet-Lite0 ImageNet store at 64x64.

    Returns (dataset, cache_dir).
    """
    _need_data()
    from featx.data.dataset import load_dataset
    from featx.features.extract import extract

    rows = pick_rows({"covid": 30, "bacterial": 15, "viral": 15, "normal": 30}, seed=3)
    folder = copy_subset(rows, tmp_path_factory.mktemp("feature_data"))
    cache = tmp_path_factory.mktemp("feature_cache")
    dataset = load_dataset(folder)
    extract(dataset, LITE0_64, batch_size=32, cache_dir=cache, progress=False)
    return dataset, cache
