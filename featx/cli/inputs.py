"""From parsed arguments to featx's records: the data folder, the dataset, features, protocol."""

from __future__ import annotations

import logging
from pathlib import Path

from featx.cli.options import OptionError
from featx.data.dataset import DATA_ENV, default_data_dir
from featx.evaluation.splits import Protocol
from featx.exceptions import DatasetError
from featx.features.identity import FeatureSpec

log = logging.getLogger("featx")


def data_folder(args) -> Path:
    """``--data``, else ``$FEATX_DATA``, else ``data/cxr``; refused with what to do when missing.

    Raises
    ------
    DatasetError
    """
    folder = Path(args.data) if args.data else default_data_dir()
    if not folder.is_dir():
        origin = "--data" if args.data else f"the default (${DATA_ENV}, else data/cxr)"
        raise DatasetError(
            f"data folder {folder} not found ({origin}); pass --data DIR, or make it with "
            f"`featx data fetch --dest {folder}`"
        )
    return folder


def dataset(args, subset: str | None = None):
    """Load and validate the data folder and subset; say on stderr what was loaded."""
    from featx.data.dataset import load_dataset

    loaded = load_dataset(data_folder(args), subset or getattr(args, "subset", "all"))
    log.info("%s", loaded.describe())
    return loaded


def features(args) -> FeatureSpec:
    """``--model``, ``--weights``, ``--input-size`` as a :class:`FeatureSpec`."""
    return FeatureSpec(args.model, args.weights, args.input_size)


def protocol(args) -> Protocol:
    """``--group-by``, ``--folds``, ``--seed`` as a :class:`Protocol`."""
    return Protocol(args.group_by, args.folds, args.seed)


def engine(args):
    """The phase-1 engine that ``--engine``, ``--workers``, ``--address`` and ``--gpus-per-worker`` describe."""
    if args.engine == "ray":
        from featx.features.ray_engine import RayEngine

        return RayEngine(address=args.address, workers=args.workers, gpus_per_worker=args.gpus_per_worker)
    from featx.features.engine import LocalEngine

    if args.address or args.gpus_per_worker:
        raise OptionError("--address and --gpus-per-worker apply to --engine ray")
    return LocalEngine(args.workers)


def progress(args) -> bool:
    """Whether to show progress bars (not under ``-q``)."""
    return not args.quiet
