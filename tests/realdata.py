"""The real radiographs in ../shared/data/cxr: where they are, and small copies of them for tests.

Under CI (``CI`` set) a missing data folder fails the run (see ``conftest.pytest_configure``);
elsewhere the tests that need it skip with the reason.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from featx.features.identity import FeatureSpec

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data" / "cxr").resolve()
HAVE_DATA = (SHARED_DATA / "metadata.csv").exists()
MISSING = f"real chest X-ray data not found at {SHARED_DATA} (../shared/data/cxr beside the repo)"
requires_data = pytest.mark.skipif(not HAVE_DATA, reason=MISSING)
LITE0_64 = FeatureSpec("efficientnet_lite0", "imagenet", (64, 64))  # real ImageNet weights, a small input


def shared_metadata() -> pd.DataFrame:
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
