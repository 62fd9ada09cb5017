"""The real radiographs in ../shared/data/cxr: where they are, and small copies of them for tests.

``FEATX_TEST_DATA`` names another folder (a folder that does not exist hides the data, to check that
the fast tier needs none). Under CI (``CI`` set) a missing data folder fails the run (see
``conftest.pytest_configure``); elsewhere the tests that need it skip with the reason. Which tests
need it is found from their code (:func:`reads_real_data`); ``conftest`` marks them ``realdata``.
"""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from featx.features.identity import FeatureSpec

REPO = Path(__file__).resolve().parents[1]
DATA_ENV = "FEATX_TEST_DATA"
SHARED_DATA = Path(os.environ.get(DATA_ENV) or REPO / ".." / "shared" / "data" / "cxr").resolve()
HAVE_DATA = (SHARED_DATA / "metadata.csv").exists()
MISSING = f"real chest X-ray data not found at {SHARED_DATA} (../shared/data/cxr beside the repo, or ${DATA_ENV})"
requires_data = pytest.mark.skipif(not HAVE_DATA, reason=MISSING)
LITE0_64 = FeatureSpec(
    backbone="efficientnet_lite0", weights="imagenet", input_size=(64, 64)
)  # real ImageNet weights, a small input
DATA_NAMES = frozenset({"SHARED_DATA", "shared_metadata", "pick_rows", "copy_subset", "require_data", "_need_data"})
"""Names whose use in a test, its fixtures or the test helpers they call means the test reads the shared data."""
marked_realdata = False
"""Whether the test being set up is marked ``realdata`` (set by ``conftest.pytest_runtest_setup``)."""


def require_data() -> None:
    """Skip the running test when the shared data is missing; fail it when it is not marked ``realdata``
    (then :func:`reads_real_data` missed it, and the fast tier would not run without the data)."""
    if HAVE_DATA:
        return
    if not marked_realdata:
        pytest.fail(f"{MISSING}; this test reads it but is not marked realdata: mark it @pytest.mark.realdata")
    pytest.skip(MISSING)


def reads_real_data(function, seen=None) -> bool:
    """Whether ``function`` names the shared data (:data:`DATA_NAMES`), itself or through the functions
    of the test modules it calls (followed by name through its globals, nested functions included)."""
    function = inspect.unwrap(getattr(function, "__func__", function))
    code = getattr(function, "__code__", None)
    seen = set() if seen is None else seen
    if code is None or code in seen:
        return False
    seen.add(code)
    names, codes = set(), [code]
    while codes:
        current = codes.pop()
        names.update(current.co_names)
        codes += [const for const in current.co_consts if inspect.iscode(const)]
    if names & DATA_NAMES:
        return True
    called = (function.__globals__.get(name) for name in names)
    return any(
        inspect.isfunction(callee) and callee.__module__.startswith("tests.") and reads_real_data(callee, seen)
        for callee in called
    )


def shared_metadata() -> pd.DataFrame:
    require_data()
    return pd.read_csv(SHARED_DATA / "metadata.csv", dtype=str, keep_default_na=False)


def copy_subset(rows: pd.DataFrame, target: Path) -> Path:
    """Copy the rows' images and a metadata.csv for them into ``target``."""
    (target / "images").mkdir(parents=True, exist_ok=True)
    for filename in rows["filename"]:
        shutil.copyfile(SHARED_DATA / filename, target / filename)
    rows.to_csv(target / "metadata.csv", index=False)
    return target


def pick_rows(per_subtype: dict, seed: int = 0) -> pd.DataFrame:
    """Sample rows by subtype: ``per_subtype`` maps subtype -> number of images wanted."""
    table = shared_metadata()
    chosen = []
    for subtype, count in per_subtype.items():
        pool = table[table["subtype"] == subtype].sample(frac=1.0, random_state=seed)
        chosen.append(pool.head(count))
    return pd.concat(chosen)


def featx_command(*args) -> list[str]:
    """The command line that runs featx in a subprocess, from this checkout."""
    return [sys.executable, "-m", "featx", *args]


def run_featx(*args, **kwargs) -> subprocess.CompletedProcess:
    """Run featx in a subprocess (text output captured) from the repository root."""
    return subprocess.run(featx_command(*args), capture_output=True, text=True, cwd=kwargs.pop("cwd", REPO), **kwargs)


def train_lite0(data, cache, model_dir, *options) -> int:
    """``featx train`` of EfficientNet-Lite0 (ImageNet) at 64x64 in this process; returns the exit status."""
    from featx.cli import main

    common = f"train --model efficientnet_lite0 --input-size 64x64 -q --data {data} --cache {cache}"
    return main([*common.split(), "--model-dir", str(model_dir), *options])
