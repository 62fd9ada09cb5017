"""Benchmark: peak resident memory of `extract` at 3,000 vs 30,000 images (target: within 10%).

The images are the shared radiographs reused under new names (symlinks).  Each size runs in
a fresh subprocess whose peak RSS is read with getrusage; the model is EfficientNet-Lite0 at
a small input so that the 30,000-image run takes minutes, not hours, on two cores (memory
flatness is a property of the streaming pipeline, not of the input size).

    python bench/scale.py [--sizes 3000 30000] [--input-size 64x64]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cxr"


def folder_of(count: int, data: Path) -> Path:
    """A data folder of ``count`` symlinked images with a manifest, all labels preserved."""
    table = pd.read_csv(data / "metadata.csv", dtype=str, keep_default_na=False)
    folder = Path(tempfile.mkdtemp(prefix=f"featx-scale-{count}-"))
    (folder / "images").mkdir()
    rows = []
    for index in range(count):
        row = table.iloc[index % len(table)].to_dict()
        name = f"images/r{index // len(table)}_{Path(row['filename']).name}"
        os.symlink(data / row["filename"], folder / name)
        rows.append({**row, "filename": name, "patient_id": f"{row['patient_id']}_r{index // len(table)}"})
    pd.DataFrame(rows).to_csv(folder / "metadata.csv", index=False)
    return folder


def peak_rss_mib(count: int, data: Path, input_size: str) -> tuple[float, dict]:
    folder = folder_of(count, data)
    with tempfile.TemporaryDirectory() as cache:
        command = [
            sys.executable,
            "-m",
            "featx",
            "extract",
            "--model",
            "efficientnet_lite0",
            "--data",
            str(folder),
            "--cache",
            cache,
            "--input-size",
            input_size,
            "--batch-size",
            "64",
            "--quiet",
            "--json",
        ]
        result = subprocess.run(
            command, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        )
        if result.returncode != 0:
            raise SystemExit(result.stderr[-2000:])
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, this process's only child
    return peak / 1024, json.loads(result.stdout)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sizes", type=int, nargs="+", default=[3000, 30000])
    parser.add_argument("--input-size", default="64x64")
    args = parser.parse_args(argv)
    print(f"{'images':>8s} {'peak RSS MiB':>13s} {'images/s':>9s}")
    peaks = []
    for count in args.sizes:
        code = (
            f"import sys; sys.path.insert(0, {str(REPO)!r}); from bench.scale import peak_rss_mib; "
            f"from pathlib import Path; import json; "
            f"print(json.dumps(peak_rss_mib({count}, Path({str(args.data)!r}), {args.input_size!r})))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        peak, summary = json.loads(out.strip().splitlines()[-1])
        peaks.append(peak)
        print(f"{count:8d} {peak:13.0f} {summary['images_per_s']:9.1f}", flush=True)
    print(f"ratio of peak RSS, {args.sizes[-1]} vs {args.sizes[0]} images: {peaks[-1] / peaks[0]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
