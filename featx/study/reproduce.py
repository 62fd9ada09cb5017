"""Rebuild the paper's experiment: Dataset_1 and Dataset_2, each backbone with the paper's head,
under the paper's image-level protocol and the patient-grouped one; reuse every store, split and
result that already exists."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from featx.data.dataset import PAPER_SUBSETS, load_dataset
from featx.data.images import DEFAULT_SIZE
from featx.evaluation.crossval import fit_variant
from featx.evaluation.splits import PROTOCOLS, Protocol
from featx.evaluation.summary import CVSummary
from featx.exceptions import ParameterError, UnknownNameError, WeightsError
from featx.features.extract import extract
from featx.features.identity import FeatureSpec
from featx.heads.recipe import HeadRecipe
from featx.heads.sampling import SAMPLERS
from featx.study.audit import missing_patients_note

FALLBACKS = {
    "skip": "leave the backbone out",
    "random-init": "run the backbone with random weights, labelled random-init everywhere (Keras' random-init "
    "MobileNetV2 and EfficientNets give degenerate features: their rows say so instead of figures)",
}
DEFAULT_FALLBACK = "skip"
"""Genuine backbones only by default: a random-init backbone is not transfer learning, and the BatchNorm
backbones' random-init features vanish (max |feature| about 4e-11), so their figures would be computed
from nothing (see :class:`featx.features.store.FeatureHealth`)."""
DEFAULT_STRATEGIES = tuple(SAMPLERS)
"""The imbalance strategies the main job compares with none on the first backbone's paper head: all of them."""
DEFAULT_REPEATS = 3
"""Split sets and head seeds over which the main job measures the spread of the first backbone's paper head."""
DEFAULT_MODELS = ("efficientnet_lite0", "efficientnet_lite1")
"""The main job's backbones: both have genuine ImageNet weights in an installed package, so they run
without a network (the Keras applications download theirs when online)."""
log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ReproducedRun:
    """One cell of the paper's design: a subset, the features used, and the summary of its variant."""

    subset: str
    features: FeatureSpec
    summary: CVSummary


@dataclass(frozen=True, kw_only=True)
class Spread:
    """How much a variant's figures move with the split and with the head's own seed, apart.

    Attributes
    ----------
    subset : str
    by_split : tuple of CVSummary
        The variant over split sets of seeds ``seed``, ``seed + 1``, ..., its head seeded with ``seed`` in
        each: the spread due to the split alone.
    by_head_seed : tuple of CVSummary
        The variant on the split set of ``seed``, its head seeded with ``seed``, ``seed + 1``, ...: the spread
        due to the head's own seed alone. Both start with the same run.
    """

    subset: str
    by_split: tuple
    by_head_seed: tuple


@dataclass(frozen=True, kw_only=True)
class Reproduction:
    """Everything ``reproduce`` ran or skipped.

    Attributes
    ----------
    data : Path
        The data folder.
    runs : list of ReproducedRun
        One per subset x backbone x protocol.
    skipped : dict
        Backbone -> reason.
    datasets : dict
        Subset -> dataset id.
    notes : tuple of str
        What was left out of the design and why (patient-grouped folds on data without patient ids,
        the audit), in sentences for the report (default: none).
    strategies : tuple of ReproducedRun
        The paper's head under other imbalance strategies, on the same folds as its run in ``runs``
        (default: none; see :func:`reproduce`).
    spread : Spread or None
        The spread of the first backbone's paper head over split sets and over head seeds (default None:
        not measured).
    """

    data: Path
    runs: list
    skipped: dict
    datasets: dict
    notes: tuple = ()
    strategies: tuple = ()
    spread: Spread | None = None


def usable_features(
    data, feature_spec: FeatureSpec, *, cache_dir, fallback: str, progress: bool, engine=None
) -> FeatureSpec | None:
    """Extract the whole folder once with ImageNet weights, or fall back; return the features used.

    Returns
    -------
    FeatureSpec or None
        ``feature_spec`` (ImageNet), the same with ``weights='none'`` (random-init), or None when
        the backbone is skipped.
    """
    dataset = load_dataset(data, "all")
    try:
        extract(dataset, feature_spec, cache_dir=cache_dir, progress=progress, engine=engine)
        return feature_spec
    except WeightsError as error:
        if fallback == "skip":
            log.warning("skipping %s: %s", feature_spec.backbone, error)
            return None
        log.warning(
            "%s: ImageNet weights unavailable here, running it as RANDOM-INIT (labelled so): %s",
            feature_spec.backbone,
            str(error).split(".")[0],
        )
        random_init = replace(feature_spec, weights="none")
        extract(dataset, random_init, cache_dir=cache_dir, progress=progress, engine=engine)
        return random_init


def reproduce(
    data,
    models,
    *,
    phase: int = 2,
    input_size=DEFAULT_SIZE,
    folds: int = 10,
    seed: int = 0,
    epochs: int = 10,
    subsets=PAPER_SUBSETS,
    fallback: str = DEFAULT_FALLBACK,
    cache_dir="cache",
    engine=None,
    progress: bool = True,
    strategies=DEFAULT_STRATEGIES,
    repeats: int = DEFAULT_REPEATS,
) -> Reproduction:
    """Run (or reuse) every variant of the paper's design.

    Parameters
    ----------
    data : str or Path
        The data folder.
    models : sequence of str
        Backbones.
    phase : int
        2 (the paper's frozen backbone) or 3 (fine-tuned, ``epochs`` per fold).
    input_size : tuple of int
    folds, seed : int
    epochs : int
        Phase 3 only.
    subsets : sequence of str
    fallback : str
        What to do when ImageNet weights are unavailable (see :data:`FALLBACKS`); default
        :data:`DEFAULT_FALLBACK` (skip the backbone).
    cache_dir : str or Path
    engine : optional
        What extracts phase 1 (see :func:`featx.features.extract.extract`; default local).
    progress : bool
    strategies : sequence of str
        Imbalance strategies (:data:`featx.heads.SAMPLERS`) besides ``none`` to fit the paper's head
        with in phase 2, for the first backbone that runs, on the patient-grouped folds where they run
        (else the image-level ones), so that the report can say which differ from ``none`` (default
        :data:`DEFAULT_STRATEGIES`: all of them; ``()`` or ``("none",)`` fits none).
    repeats : int
        Phase 2: split sets and head seeds over which the first backbone's paper head is fitted on the last
        subset (its first protocol), to set the spread due to the split beside the spread due to the head's
        seed (:class:`Spread`; default :data:`DEFAULT_REPEATS`, 3; 1 leaves it out).

    Returns
    -------
    Reproduction
        Any labels run (the paper's comparison is made where its classes are present); on data
        without a patient id for every image only the image-level protocol runs, said in ``notes``.

    Raises
    ------
    DatasetError
        Before any extraction or fit, when the data folder or a subset cannot be loaded (the paper's
        subsets need its three labels).
    """
    if phase not in (2, 3):
        raise ParameterError("phase", phase, "must be 2 or 3")
    if fallback not in FALLBACKS:
        raise UnknownNameError("fallback", fallback, FALLBACKS)
    Protocol(folds=folds, seed=seed).repeated(repeats)  # a seed past the largest is refused before any work
    loaded = {subset: load_dataset(data, subset) for subset in subsets}
    protocols = {subset: protocols_for(dataset) for subset, dataset in loaded.items()}
    notes = tuple(
        f"{subset}: {missing_patients_note(dataset)}. Only the image-level protocol ran."
        for subset, dataset in loaded.items()
        if "patient" not in protocols[subset]
    )
    runs, skipped, datasets, strategy_runs, spread, first = [], {}, {}, [], None, None
    for backbone in models:
        features = usable_features(
            data,
            FeatureSpec(backbone=backbone, weights="imagenet", input_size=input_size),
            cache_dir=cache_dir,
            fallback=fallback,
            progress=progress,
            engine=engine,
        )
        if features is None:
            skipped[backbone] = (
                "ImageNet weights unavailable here (Keras downloads them when online); --fallback random-init runs "
                "it with random weights, not transfer learning"
            )
            continue
        head = features.backbone_spec.paper_head
        first = first or backbone  # the strategies and the spread are measured on the first that runs
        for subset, dataset in loaded.items():
            datasets[subset] = dataset.id
            recipes = [(paper_recipe(head, phase, epochs), group_by) for group_by in protocols[subset]]
            strategy_recipes = [  # on the first protocol: patient-grouped where it runs (PROTOCOLS order)
                (HeadRecipe(head=head, sampler=sampler), protocols[subset][0])
                for sampler in (strategies if phase == 2 and backbone == first else ())
                if sampler != "none"
            ]
            for recipe, group_by in recipes + strategy_recipes:
                log.info(
                    "%s (%s) %s %s-level folds, head %s (%s)",
                    *(backbone, features.weights, subset, group_by, recipe.head, recipe.sampler),
                )
                protocol = Protocol(group_by=group_by, folds=folds, seed=seed)
                summary = evaluate(dataset, features, recipe, protocol, cache_dir=cache_dir, progress=progress)
                made = ReproducedRun(subset=subset, features=features, summary=summary)
                (runs if (recipe, group_by) in recipes else strategy_runs).append(made)
        if backbone == first and phase == 2 and repeats > 1:
            subset = list(loaded)[-1]
            base = next(run.summary for run in runs if run.subset == subset and run.features == features)
            spread = measure_spread(
                loaded[subset], features, base, repeats, subset=subset, cache_dir=cache_dir, progress=progress
            )
    return Reproduction(
        data=Path(data),
        runs=runs,
        skipped=skipped,
        datasets=datasets,
        notes=notes,
        strategies=tuple(strategy_runs),
        spread=spread,
    )


def measure_spread(dataset, features, base: CVSummary, repeats: int, *, subset: str, cache_dir, progress) -> Spread:
    """The variant of ``base`` over ``repeats`` split sets with its head's seed fixed, and over ``repeats``
    head seeds with its split fixed (see :class:`Spread`); ``base`` is the first of both."""
    variant = base.result.variant
    seeds = variant.protocol.repeated(repeats)

    def fitted(protocol, head_seed):
        return fit_variant(
            dataset, features, variant.recipe, protocol, cache_dir=cache_dir, progress=progress, head_seed=head_seed
        )

    return Spread(
        subset=subset,
        by_split=(base, *(fitted(protocol, variant.protocol.seed) for protocol in seeds[1:])),
        by_head_seed=(base, *(fitted(variant.protocol, protocol.seed) for protocol in seeds[1:])),
    )


def evaluate(dataset, feature_spec: FeatureSpec, recipe, protocol: Protocol, *, cache_dir, progress: bool):
    """The cross-validated summary of ``recipe``: a head on cached features, or fine-tuned (phase 3)."""
    from featx.evaluation.finetune import FinetuneRecipe, finetune_variant

    if isinstance(recipe, FinetuneRecipe):
        return finetune_variant(dataset, feature_spec, recipe, protocol, cache_dir=cache_dir, progress=progress)
    return fit_variant(dataset, feature_spec, recipe, protocol, cache_dir=cache_dir, progress=progress)


def paper_recipe(head: str, phase: int, epochs: int):
    """The paper's recipe for ``head``: on cached features (phase 2), or fine-tuned for ``epochs`` (phase 3)."""
    if phase == 3:
        from featx.evaluation.finetune import FinetuneRecipe

        return FinetuneRecipe(head=head, epochs=epochs)
    return HeadRecipe(head=head)


def protocols_for(dataset) -> tuple[str, ...]:
    """The protocols ``dataset`` allows: both, or only the image-level one without patient ids."""
    return tuple(name for name in PROTOCOLS if name != "patient" or dataset.has_patient_ids)


def validate_externally(
    reproduction: Reproduction, external, *, models_dir, cache_dir="cache", progress: bool = True
) -> list:
    """Train each phase-2 variant of ``reproduction`` on all its data and validate it on ``external``.

    Parameters
    ----------
    reproduction : Reproduction
    external : featx.data.Dataset
        A labelled folder from other sources.
    models_dir : str or Path
        Where the model folders are written, one per variant (named after it).
    cache_dir : str or Path
    progress : bool

    Returns
    -------
    list of (ReproducedRun, featx.study.validate.Validation)
        Phase-3 runs are left out: training a fine-tuned model per variant is hours on a CPU.
    """
    from featx.models.train import train_model
    from featx.study.validate import validate

    validated = []
    for run in reproduction.runs:
        variant = run.summary.result.variant
        if variant.phase != 2:
            log.warning(
                "%s: fine-tuned variants are not validated externally here; train one with featx train "
                "--finetune and run featx validate on it",
                variant.name(),
            )
            continue
        folder = Path(models_dir) / variant.name()
        train_model(
            load_dataset(reproduction.data, run.subset),
            variant.feature_spec(),
            variant.recipe,
            variant.protocol,
            model_dir=folder,
            cache_dir=cache_dir,
            progress=progress,
        )
        validated.append((run, validate(folder, external)))
    return validated
