"""From parsed arguments to featx's records: the data folder, the dataset, features, protocol, recipes."""

from __future__ import annotations

import logging
from pathlib import Path

from featx.cli.options import OptionError
from featx.data.dataset import DATA_ENV, default_data_dir
from featx.data.images import DEFAULT_SIZE
from featx.evaluation.splits import Protocol
from featx.exceptions import DatasetError, MissingFeaturesError
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
    return FeatureSpec(backbone=args.model, weights=args.weights, input_size=args.input_size)


def protocol(args) -> Protocol:
    """``--group-by``, ``--folds``, ``--seed`` as a :class:`Protocol`."""
    return Protocol(group_by=args.group_by, folds=args.folds, seed=args.seed)


def head_recipe(args, backbone: str, head: str | None = None, sampler: str | None = None):
    """``--head`` (``paper`` resolved for ``backbone``), ``--sampler``, ``--epochs``, ``--batch-size``, ``--lr``
    as a :class:`~featx.heads.recipe.HeadRecipe`; ``head`` and ``sampler`` stand in for the options where
    given (default None: the options'), for commands that take several."""
    from featx.heads.recipe import HeadRecipe
    from featx.heads.registry import resolve_head

    return HeadRecipe(
        head=resolve_head(head or args.head, backbone),
        sampler=sampler or args.sampler,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
    )


def chosen_features(args, dataset) -> list:
    """The extracted features to fit on: every store covering the dataset, narrowed by ``--model``,
    ``--weights`` and ``--input-size`` where given; the missing store named when ``--model`` finds none.

    Raises
    ------
    MissingFeaturesError
        When no store covers the dataset and no ``--model`` names one.
    """
    from featx.features.store import extracted_features

    found = [
        spec
        for spec in extracted_features(args.cache, dataset.table["content_hash"])
        if args.model in (None, spec.backbone)
        and args.input_size in (None, spec.input_size)
        and args.weights in (None, spec.weights)
    ]
    if found:
        return found
    if args.model is not None:  # name the store that is missing, with the weights and size asked for
        return [
            FeatureSpec(
                backbone=args.model, weights=args.weights or "imagenet", input_size=args.input_size or DEFAULT_SIZE
            )
        ]
    raise MissingFeaturesError(
        f"No feature store in {args.cache} holds the {len(dataset)} images of {dataset.root} [{dataset.subset}]"
    )


def finetune_recipe(args):
    """The :class:`~featx.evaluation.finetune.FinetuneRecipe` the options describe (settings not given
    keep the recipe's defaults).

    Raises
    ------
    OptionError
        When ``--sampler`` names a strategy: fine-tuning trains on each fold as it is.
    """
    from featx.evaluation.finetune import FinetuneRecipe
    from featx.heads.registry import resolve_head

    sampler = getattr(args, "sampler", "none")
    if sampler != "none":
        raise OptionError(
            f"--sampler {sampler} applies to heads on cached features; fine-tuning trains on each fold as it is "
            "(leave out --sampler, or --finetune)"
        )
    given = {
        "cutoff": getattr(args, "cutoff", None),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "precision": getattr(args, "precision", None),
        "warm_start": getattr(args, "warm_start", None),
    }
    return FinetuneRecipe(head=resolve_head(args.head, args.model), **{k: v for k, v in given.items() if v is not None})


def engine(args):
    """The phase-1 engine that ``--engine``, ``--workers``, ``--address`` and ``--gpus-per-worker`` describe."""
    from featx.features.engine import make_engine

    return make_engine(args.engine, workers=args.workers, address=args.address, gpus_per_worker=args.gpus_per_worker)


def progress(args) -> bool:
    """Whether to show progress bars (not under ``-q``)."""
    return not args.quiet
