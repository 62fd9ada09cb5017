"""Benchmark: the main job (the README's first line after the install) with a fresh cache, timed.

Runs ``featx reproduce --data DATA --models efficientnet_lite0 efficientnet_lite1`` (the main job's
backbones, :data:`featx.study.reproduce.DEFAULT_MODELS`) as a subprocess in
a fresh temporary folder (new cache, new report), ``--repeats`` times one after another, and
measures each run's wall time, the cores it used on average (user + system CPU seconds of the
command and its children over the wall time) and its peak resident memory. Targets on the
2-core CPU: <= 240 s and >= 1.7 cores (set before the main job compared the imbalance strategies
and measured the spread over split sets and head seeds). Ends with one JSON line of the figures.

    python bench/main_job.py [--repeats 3] [--data ../shared/data/cxr] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.extract import SHARED  # noqa: E402
from featx.study.reproduce import DEFAULT_MODELS as MODELS  # noqa: E402


def one_run(data: Path, keep: Path | None = None) -> dict:
    """One fresh ``reproduce``: wall seconds, cores used on average, peak RSS in MB; in a temporary folder, or
    in ``keep`` (a new folder that keeps its cache and report for reading)."""
    command = [sys.executable, "-m", "featx", "reproduce", "--data", str(data.resolve()), "--models", *MODELS, "-q"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with contextlib.ExitStack() as stack:
        folder = keep if keep is not None else stack.enter_context(tempfile.TemporaryDirectory())
        started = time.perf_counter()
        subprocess.run(command, cwd=folder, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 1), "cores": round(cpu / wall, 2), "peak_rss_mb": round(after.ru_maxrss / 1024)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "cxr")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="a new folder where the last run keeps its cache and report")
    args = parser.parse_args(argv)
    if args.keep is not None:
        args.keep.mkdir(parents=True)  # refused when it exists: every run starts from a fresh cache
    runs = []
    for repeat in range(args.repeats):
        runs.append(one_run(args.data, args.keep if repeat == args.repeats - 1 else None))
        print(f"run {repeat + 1}: {runs[-1]}", flush=True)
    walls = [run["wall_s"] for run in runs]
    figures = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "models": list(MODELS),
        "runs": runs,
        "wall_s_median": statistics.median(walls),
        "wall_s_max": max(walls),
        "cores_median": statistics.median(run["cores"] for run in runs),
        "meets_240_s": statistics.median(walls) <= 240,
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
