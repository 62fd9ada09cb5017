"""Shared fixtures: real radiographs from ../shared/data/cxr, copied per test session into tmp."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data" / "cxr").resolve()
requires_data = pytest.mark.skipif(
    not (SHARED_DATA / "metadata.csv").exists(),
    reason=f"real chest X-ray data not found at {SHARED_DATA} (../shared/data/cxr beside the repo)",
)


@pytest.fixture(scope="session", autouse=True)
def featx_home(tmp_path_factory):
    """Converted weights go to a per-session folder unless FEATX_HOME is set already."""
    if "FEATX_HOME" not in os.environ:
        os.environ["FEATX_HOME"] = str(tmp_path_factory.mktemp("featx_home"))
    return Path(os.environ["FEATX_HOME"])


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
    """Sample whole patients: ``per_subtype`` maps subtype -> number of images wanted."""
    table = shared_metadata()
    chosen = []
    for subtype, count in per_subtype.items():
        pool = table[table["subtype"] == subtype].sample(frac=1.0, random_state=seed)
        chosen.append(pool.head(count))
    return pd.concat(chosen)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """36 real radiographs: 12 covid, 6 bacterial + 6 viral pneumonia, 12 normal."""
    if not (SHARED_DATA / "metadata.csv").exists():
        pytest.skip(f"real chest X-ray data not found at {SHARED_DATA}")
    rows = pick_rows({"covid": 12, "bacterial": 6, "viral": 6, "normal": 12})
    return copy_subset(rows, tmp_path_factory.mktemp("small_data"))


@pytest.fixture(scope="session")
def feature_data(tmp_path_factory):
    """90 real radiographs (30 per class) and a real EfficientNet-Lite0 ImageNet store at 64x64.

    Returns (dataset, cache_dir).
    """
    if not (SHARED_DATA / "metadata.csv").exists():
        pytest.skip(f"real chest X-ray data not found at {SHARED_DATA}")
    from featx.data.dataset import load_dataset
    from featx.features.extract import extract

    rows = pick_rows({"covid": 30, "bacterial": 15, "viral": 15, "normal": 30}, seed=3)
    folder = copy_subset(rows, tmp_path_factory.mktemp("feature_data"))
    cache = tmp_path_factory.mktemp("feature_cache")
    dataset = load_dataset(folder)
    extract(dataset, "efficientnet_lite0", "imagenet", (64, 64), batch_size=32, cache_dir=cache, progress=False)
    return dataset, cache
