"""Nested cross-validation: an estimate of choosing the best of several variants, not of the one chosen.

Choosing the variant with the best cross-validated figure out of N, on the folds that measure it, flatters
the one chosen: its figure is the largest of N noisy ones. Nested cross-validation estimates the whole
procedure instead. For each outer fold (the saved folds every variant shares), the candidates are
cross-validated again on that fold's training images only (inner folds, grouped as the outer ones), the
one with the best inner figure is chosen, and the outer fold's images are predicted by it, trained on
every training image of the fold. The outer folds' predictions together estimate what "train every
candidate, keep the best" gives on new patients.

A candidate's plain out-of-fold predictions of an outer fold are that candidate trained on every other fold:
the outer predictions are the chosen candidate's stored predictions of that fold, so only the inner
cross-validations are new work.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from featx import limits
from featx.evaluation.crossval import fit_variant
from featx.evaluation.metrics import METRICS, Predictions, summarize
from featx.evaluation.splits import Protocol, assign_folds, fold_of_each_image, load_or_make_split, protocol_groups
from featx.evaluation.summary import CVSummary
from featx.evaluation.variant import Variant
from featx.exceptions import ParameterError, UnknownNameError
from featx.features.store import load_features
from featx.heads.registry import get_head

FIRST_METRIC = next(iter(METRICS))
"""The figure a selection maximises unless told: the registry's first headline figure (``accuracy``)."""


@dataclass(frozen=True, kw_only=True)
class OuterFold:
    """One outer fold of a nested selection.

    Attributes
    ----------
    fold : int
        The outer fold (a fold of the saved split).
    chosen : str
        The name of the candidate chosen on its training images.
    inner_figures : tuple of float
        Each candidate's inner cross-validated figure (in the candidates' order; NaN where undefined).
    """

    fold: int
    chosen: str
    inner_figures: tuple[float, ...]

    @property
    def chosen_figure(self) -> float:
        """The chosen candidate's inner figure: the largest (an undefined one never chosen)."""
        return float(np.nanmax(self.inner_figures))


@dataclass(frozen=True, kw_only=True, eq=False)
class NestedSelection:
    """What nested cross-validation found.

    Attributes
    ----------
    candidates : tuple of CVSummary
        Each candidate's plain cross-validation over the saved folds (stored, as ``featx fit`` makes it).
    metric : str
        The figure the choice maximises (a key of :data:`featx.evaluation.metrics.METRICS`).
    inner_folds : int
    outer : tuple of OuterFold
        Per outer fold, the inner figures and the choice.
    proba : numpy.ndarray, (N, n_classes)
        The outer predictions: each image predicted by the candidate chosen without it.
    metrics : dict
        :func:`featx.evaluation.metrics.summarize` of the outer predictions: the estimate of the whole
        procedure, with intervals resampling the protocol's groups.
    """

    candidates: tuple[CVSummary, ...]
    metric: str
    inner_folds: int
    outer: tuple[OuterFold, ...]
    proba: np.ndarray
    metrics: dict

    @property
    def best_of_candidates(self) -> CVSummary:
        """The candidate with the best plain cross-validated figure: the figure selection flatters."""
        figures = [_figure(summary.metrics[self.metric]) for summary in self.candidates]
        return self.candidates[int(np.argmax(figures))]

    @property
    def best_inner(self) -> float:
        """The chosen candidates' inner figures, averaged over the outer folds: each the largest of the
        candidates' figures on the images it was chosen on, so selection flatters it too."""
        return float(np.mean([outer.chosen_figure for outer in self.outer]))

    @property
    def estimate(self) -> float:
        """The nested estimate of the figure chosen by."""
        return self.metrics[self.metric]

    @property
    def optimism(self) -> float:
        """How far the best candidate's plain figure lies above the nested estimate (positive: flattered)."""
        return self.best_of_candidates.metrics[self.metric] - self.estimate

    def to_json(self) -> dict:
        """The estimate with its interval, the best candidate's plain figure, each outer fold's choice."""
        best = self.best_of_candidates
        names = [summary.result.variant.name() for summary in self.candidates]
        return {
            "metric": self.metric,
            "inner_folds": self.inner_folds,
            "candidates": names,
            "nested_estimate": self.estimate,
            "nested_ci95": list(self.metrics["ci95"][self.metric]),
            "nested_metrics": {key: self.metrics[key] for key in METRICS},
            "best_inner_figure": self.best_inner,
            "best_candidate": best.result.variant.name(),
            "best_candidate_figure": best.metrics[self.metric],
            "optimism": self.optimism,
            "outer_folds": [
                {
                    "fold": outer.fold,
                    "chosen": outer.chosen,
                    "inner_figures": dict(zip(names, outer.inner_figures, strict=True)),
                }
                for outer in self.outer
            ],
            "protocol": best.result.variant.protocol.group_by,
            "split_file": best.result.provenance.split_file,
        }


def _figure(value: float) -> float:
    """A figure to maximise: an undefined one (NaN) never wins."""
    return -np.inf if value != value else value


def nested_select(
    dataset,
    candidates,
    protocol: Protocol = Protocol(),
    *,
    metric: str = FIRST_METRIC,
    inner_folds: int = 5,
    cache_dir="cache",
    positive: str | None = None,
    jobs: int | None = None,
    progress: bool = True,
) -> NestedSelection:
    """Nested cross-validation of choosing the best of ``candidates`` by ``metric``.

    Parameters
    ----------
    dataset : featx.data.Dataset
    candidates : sequence of (FeatureSpec, HeadRecipe)
        The variants to choose among (at least two), each on cached features of ``dataset``.
    protocol : Protocol
        The outer folds (the saved split every variant shares; default :class:`Protocol`'s defaults).
    metric : str
        The figure the choice maximises (default :data:`FIRST_METRIC`, ``accuracy``; a key of
        :data:`featx.evaluation.metrics.METRICS`).
    inner_folds : int
        Folds of the inner cross-validation on each outer fold's training images (default 5), grouped
        and seeded as the outer ones.
    cache_dir : str or Path
        Where the stores are and the candidates' plain results are stored or reused (default ``cache``).
    positive : str, optional
        The class the binary figures are about (default: see :mod:`featx.evaluation.task`).
    jobs : int, optional
        Folds trained at once (default: one per core; see :func:`featx.evaluation.crossval.fit_variant`).
    progress : bool
        Progress on stderr (default True).

    Returns
    -------
    NestedSelection

    Raises
    ------
    ParameterError
        For fewer than two candidates, one given twice, ``inner_folds`` outside its domain
        (:mod:`featx.limits`), or a figure no candidate defines.
    UnknownNameError
        For a ``metric`` outside the registry.
    SplitError
        When an outer fold's training images hold a class with fewer groups than ``inner_folds``.
    """
    if metric not in METRICS:
        raise UnknownNameError("metric", metric, METRICS)
    if len(candidates) < 2:
        raise ParameterError("candidates", len(candidates), "nested selection needs at least two to choose among")
    names = [Variant.of(2, dataset, spec, recipe, protocol).name() for spec, recipe in candidates]
    if len(set(names)) < len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        raise ParameterError("candidates", ", ".join(twice), "each candidate must be given once")
    inner_folds = limits.check("inner_folds", inner_folds)
    split, _ = load_or_make_split(cache_dir, dataset, protocol)
    fold = fold_of_each_image(split, dataset.table["image_id"])
    y, groups = dataset.label_indices(), protocol_groups(dataset, protocol.group_by).to_numpy()
    inner_of = {  # before any training: too many inner folds for an outer fold's patients is said at once
        int(k): assign_folds(
            y[fold != k],
            groups[fold != k],
            replace(protocol, folds=inner_folds),
            dataset.classes,
            what="inner folds",
            where=f" among outer fold {k}'s training images",
        )
        for k in np.unique(fold)
    }
    summaries = tuple(
        fit_variant(
            dataset, spec, recipe, protocol, cache_dir=cache_dir, positive=positive, jobs=jobs, progress=progress
        )
        for spec, recipe in candidates
    )
    features = {  # each store read once, however many candidates share it
        key: load_features(cache_dir, key, dataset).features
        for key in dict.fromkeys(summary.result.variant.features for summary in summaries)
    }
    outer, proba = [], np.zeros_like(summaries[0].result.proba)
    for k, inner in inner_of.items():
        train = fold != k
        figures = tuple(
            _inner_figure(summary, features[summary.result.variant.features][train], y[train], inner, metric, jobs)
            for summary in summaries
        )
        if not np.isfinite(figures).any():
            raise ParameterError("metric", metric, f"is undefined for every candidate in outer fold {k}")
        chosen = summaries[int(np.argmax([_figure(value) for value in figures]))]
        proba[fold == k] = chosen.result.proba[fold == k]
        outer.append(OuterFold(fold=int(k), chosen=chosen.result.variant.name(), inner_figures=figures))
    return NestedSelection(
        candidates=summaries,
        metric=metric,
        inner_folds=inner_folds,
        outer=tuple(outer),
        proba=proba,
        metrics=summarize(y, proba, fold, summaries[0].task, groups),
    )


def _inner_figure(summary: CVSummary, features, y, inner, metric: str, jobs) -> float:
    """A candidate's figure over the inner folds of one outer fold's training images."""
    variant = summary.result.variant
    out_of_fold = get_head(variant.head).family.out_of_fold(
        features,
        y,
        inner,
        variant.recipe,
        seed=variant.seed_of_head,
        n_classes=len(summary.result.classes),
        jobs=jobs,
        progress=False,
    )
    return METRICS[metric].point(Predictions.of(y, out_of_fold.proba, summary.task))
