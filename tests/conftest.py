"""Shared fixtures: real radiographs from ../shared/data/cxr, copied per test session into tmp, and
synthetic ones (tests/synthetic.py) that need nothing from ../shared.

Two tiers: every test that reads the shared data (through a fixture, a helper of ``tests.realdata``
or ``requires_data``) is marked ``realdata`` at collection; ``pytest -m "not realdata"`` runs the
rest, which must pass with no shared data at all.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import realdata
from tests.realdata import HAVE_DATA, LITE0_64, MISSING, copy_subset, pick_rows, reads_real_data, require_data
from tests.synthetic import write_dataset

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def pytest_configure(config):
    """Under CI a missing data folder is a failure, not a reason to skip half the suite."""
    if os.environ.get("CI") and not HAVE_DATA:
        raise pytest.UsageError(f"CI is set and {MISSING}")


def _reads_real_data(item) -> bool:
    if any(mark.kwargs.get("reason") == MISSING for mark in item.iter_markers("skipif")):
        return True
    fixtures = item._fixtureinfo.name2fixturedefs
    functions = [
        item.function,
        *(definition.func for name in item.fixturenames for definition in fixtures.get(name, ())),
    ]
    return any(reads_real_data(function) for function in functions)


def pytest_collection_modifyitems(config, items):
    """Mark ``realdata`` every test that reads the shared data: itself, through its fixtures, or through
    the test helpers they call (see :func:`tests.realdata.reads_real_data`). Leave out ``slow`` tests
    unless the ``-m`` expression names them (a ``-m`` given on the command line replaces addopts')."""
    for item in items:
        if item.get_closest_marker("realdata") is None and _reads_real_data(item):
            item.add_marker(pytest.mark.realdata)
    if "slow" not in config.option.markexpr:  # -m "not realdata" replaces addopts' -m "not slow"; slow stays out
        slow = [item for item in items if item.get_closest_marker("slow")]
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item.get_closest_marker("slow") is None]


def pytest_runtest_setup(item):
    """Tell :func:`tests.realdata.require_data` whether the test about to run is marked ``realdata``."""
    realdata.marked_realdata = item.get_closest_marker("realdata") is not None


@pytest.fixture(scope="session", autouse=True)
def featx_home(tmp_path_factory):
    """Converted weights go to a per-session folder unless FEATX_HOME is set already."""
    if "FEATX_HOME" not in os.environ:
        os.environ["FEATX_HOME"] = str(tmp_path_factory.mktemp("featx_home"))
    return Path(os.environ["FEATX_HOME"])


def _need_data():
    require_data()


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


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """36 synthetic radiographs (tests/synthetic.py): 12 covid, 6 bacterial + 6 viral pneumonia, 12 normal,
    two per patient, from two sources."""
    return write_dataset(
        tmp_path_factory.mktemp("synthetic_data"), {"covid": 12, "bacterial": 6, "viral": 6, "normal": 12}
    )


@pytest.fixture(scope="session")
def synthetic_external(tmp_path_factory):
    """12 other synthetic radiographs (other seeds and patients) for external validation: 4 per class."""
    folder = tmp_path_factory.mktemp("synthetic_external")
    return write_dataset(folder, {"covid": 4, "bacterial": 2, "viral": 2, "normal": 4}, seed=1, prefix="ext")
