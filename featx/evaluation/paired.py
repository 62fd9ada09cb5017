"""Paired comparisons of variants evaluated on the same images: which differences are real.

Two variants evaluated on the same folds are correlated: the images one gets wrong the other
tends to get wrong too. Their marginal intervals, set side by side, overlap where the difference
between them is clear, so a comparison is made on the pairs instead:

- the difference of a metric (variant minus baseline) with a **paired bootstrap** interval: each
  resample draws the same patients (or images, under the image protocol) for both variants;
- a **paired test**, chosen by the kind of the metric's statistic: exact McNemar on the pooled
  out-of-fold predictions for the metrics that are a share of images right (accuracy,
  sensitivity, ...), DeLong's test for two correlated ROC AUCs (Sun & Xu's fast form), a sign-flip
  randomization test for a metric no exact paired test fits (balanced accuracy), and the
  Nadeau-Bengio corrected resampled t-test on per-fold scores for repeated folds;
- p-values adjusted over the family of comparisons shown (Holm by default).

When patients hold several images, their images are not independent: the paired bootstrap draws
whole patients, DeLong's test takes Obuchowski's clustered form, and so does McNemar's where a
patient holds several discordant images.

The metrics are those of :data:`featx.evaluation.metrics.METRICS`, resampled by the same bootstrap
(:func:`featx.evaluation.metrics.resample_weights`, ``Metric.values``,
:func:`featx.evaluation.metrics.percentile_interval`) that gives each variant's marginal interval;
:data:`PAIRED_TEST_OF_KIND` says which test pairs each kind of statistic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.stats import chi2, norm, rankdata
from scipy.stats import t as student_t

from featx.evaluation.metrics import (
    METRICS,
    N_RESAMPLES,
    MeanRecall,
    Predictions,
    Proportion,
    RankArea,
    per_fold,
    percentile_interval,
    point_metrics,
    resample_weights,
)
from featx.evaluation.results import Result
from featx.evaluation.task import Task
from featx.exceptions import ParameterError, SplitError, UnknownNameError

ALPHA = 0.05
"""Adjusted p-values below this mark a difference as distinguishable from noise."""
CORRECTIONS = {
    "holm": "Holm's step-down (controls the family-wise error; featx's default)",
    "bonferroni": "Bonferroni (controls the family-wise error; more conservative than Holm)",
    "fdr_bh": "Benjamini-Hochberg (controls the false discovery rate)",
    "none": "no adjustment",
}
"""Adjustments of p-values over a family of comparisons (statsmodels' ``multipletests`` methods)."""
PAIRED_TESTS = {
    "mcnemar": "exact McNemar on the pooled out-of-fold predictions",
    "mcnemar-clustered": "McNemar on the pooled out-of-fold predictions, clustered by patient (Obuchowski), "
    "where a patient holds several discordant images",
    "delong": "DeLong's test for two correlated ROC AUCs",
    "delong-clustered": "DeLong's test for two correlated ROC AUCs, clustered by patient (Obuchowski)",
    "sign-flip": "sign-flip randomization test, the two variants' predictions of a patient swapped at random "
    "(no exact paired test fits the metric)",
    "corrected-t": "Nadeau-Bengio corrected resampled t-test on per-fold scores",
}


@dataclass(frozen=True, kw_only=True)
class PairedTest:
    """The outcome of a paired test.

    Attributes
    ----------
    test : str
        One of :data:`PAIRED_TESTS`.
    statistic : float
        McNemar: the smaller discordant count; DeLong: z; corrected t: t.
    p_value : float
        Two-sided; NaN where the data do not define the test (a class missing).
    """

    test: str
    statistic: float
    p_value: float


@dataclass(frozen=True, kw_only=True)
class PairedDifference:
    """How a variant differs from the baseline in one metric, on the same images.

    Attributes
    ----------
    metric : str
    baseline, variant : str
        The variants' names (:meth:`featx.evaluation.variant.Variant.name`).
    difference : float
        Variant minus baseline, as a fraction.
    interval : tuple of float
        Paired bootstrap percentile interval of the difference, (low, high).
    level : float
        The interval's coverage (default 0.95).
    test : str
        The paired test (see :data:`PAIRED_TESTS`).
    statistic, p_value : float
        The test's statistic and unadjusted two-sided p-value (NaN: undefined).
    p_adjusted : float
        ``p_value`` adjusted over the family (see :func:`adjust_family`; a family of one until then).
    distinguishable : bool
        Whether ``p_adjusted`` is below the family's alpha (default :data:`ALPHA`).
    """

    metric: str
    baseline: str
    variant: str
    difference: float
    interval: tuple[float, float]
    level: float
    test: str
    statistic: float
    p_value: float
    p_adjusted: float
    distinguishable: bool


# --- the tests -------------------------------------------------------------------------------


def _clusters(groups, n_images: int) -> np.ndarray | None:
    """Each image's cluster (0..I-1) when some group holds several images, else None (images independent)."""
    if groups is None:
        return None
    _, unit = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    return unit if unit.max() + 1 < n_images else None


def mcnemar_test(right_baseline, right_variant, groups=None) -> PairedTest:
    """McNemar's test of two variants' right/wrong calls on the same images.

    Exact when the discordant images are independent: no ``groups``, or no patient with more than
    one image that only one of the variants got right. Otherwise Obuchowski's clustered form
    (Statistics in Medicine 17, 1998; Durkalski et al. 2003): ``X2 = (sum_i (b_i - c_i))^2 /
    sum_i (b_i - c_i)^2`` over patients ``i``, where ``b_i`` and ``c_i`` count the patient's
    images only the baseline, or only the variant, got right; chi-square with one degree of
    freedom (with one discordant image per patient it would be McNemar's asymptotic
    ``(b - c)^2 / (b + c)``).

    Parameters
    ----------
    right_baseline, right_variant : array of bool, (N,)
        Whether each variant got each image right.
    groups : array, optional
        Each image's patient (default: none; the images are independent).

    Returns
    -------
    PairedTest
        ``mcnemar``: ``statistic`` the smaller of the two discordant counts, ``p_value`` the exact
        two-sided binomial p-value of the discordant pairs; ``mcnemar-clustered``: ``statistic``
        X2. ``p_value`` is 1 when no image is discordant.
    """
    from statsmodels.stats.contingency_tables import mcnemar

    a, b = np.asarray(right_baseline, dtype=bool), np.asarray(right_variant, dtype=bool)
    unit = _clusters(groups, len(a))
    if unit is None or np.bincount(unit, weights=(a != b).astype(float)).max() <= 1:
        table = [[int(np.sum(a & b)), int(np.sum(a & ~b))], [int(np.sum(~a & b)), int(np.sum(~a & ~b))]]
        outcome = mcnemar(table, exact=True)
        return PairedTest(test="mcnemar", statistic=float(outcome.statistic), p_value=float(outcome.pvalue))
    per_patient = np.bincount(unit, weights=(a & ~b).astype(float) - (~a & b).astype(float))
    spread = float(np.sum(per_patient**2))
    if spread == 0:
        return PairedTest(test="mcnemar-clustered", statistic=0.0, p_value=1.0)
    statistic = float(per_patient.sum() ** 2 / spread)
    return PairedTest(test="mcnemar-clustered", statistic=statistic, p_value=float(chi2.sf(statistic, 1)))


def delong_covariance(is_positive, scores, groups=None) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUCs of several scorings of the same images and DeLong's covariance of them.

    Sun & Xu's fast form (IEEE Signal Processing Letters 21(11), 2014): the structural
    components of DeLong et al. (Biometrics 44, 1988) from mid-ranks within the positives, within
    the negatives and over all images, in O(N log N) per scoring. Ties count half. When patients
    hold several images, the components are summed per patient (Obuchowski, Biometrics 53,
    1997), so that a patient's correlated images do not narrow the variance; with one image per
    patient that is DeLong's covariance again.

    Parameters
    ----------
    is_positive : array of bool, (N,)
    scores : array of float, (K, N)
        K scorings (one per variant) of the same N images.
    groups : array, optional
        Each image's patient (default: none; the images are independent, as with one image per
        patient).

    Returns
    -------
    aucs : numpy.ndarray, (K,)
    covariance : numpy.ndarray, (K, K)
        NaN where fewer than two positives or two negatives (patients with one, when clustered) make
        it undefined.
    """
    is_positive = np.asarray(is_positive, dtype=bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    m, n = int(is_positive.sum()), int((~is_positive).sum())
    undefined = np.full((len(scores), len(scores)), np.nan)
    if m == 0 or n == 0:
        return np.full(len(scores), np.nan), undefined
    overall = rankdata(scores, axis=1)
    # V10: the share of negatives each positive outranks; V01: the share of positives each negative is outranked by
    positive_placements = (overall[:, is_positive] - rankdata(scores[:, is_positive], axis=1)) / n
    negative_placements = 1 - (overall[:, ~is_positive] - rankdata(scores[:, ~is_positive], axis=1)) / m
    aucs = positive_placements.mean(axis=1)
    unit = _clusters(groups, len(is_positive))
    if unit is None:
        if m < 2 or n < 2:
            return aucs, undefined
        return aucs, np.atleast_2d(np.cov(positive_placements)) / m + np.atleast_2d(np.cov(negative_placements)) / n
    patients = int(unit.max()) + 1
    with_positive, with_negative = len(np.unique(unit[is_positive])), len(np.unique(unit[~is_positive]))
    if min(with_positive, with_negative) < 2:
        return aucs, undefined

    def per_patient(placements, members):
        """Each patient's sum of placements minus its images' share of the AUC, (K, patients)."""
        sums = np.zeros((len(scores), patients))
        np.add.at(sums, (slice(None), members), placements)
        return sums - np.bincount(members, minlength=patients)[None, :] * aucs[:, None]

    d10, d01 = per_patient(positive_placements, unit[is_positive]), per_patient(negative_placements, unit[~is_positive])
    s10 = with_positive / (with_positive - 1) * d10 @ d10.T / m
    s01 = with_negative / (with_negative - 1) * d01 @ d01.T / n
    s11 = patients / (patients - 1) * d10 @ d01.T
    return aucs, s10 / m + s01 / n + (s11 + s11.T) / (m * n)


def delong_test(is_positive, score_baseline, score_variant, groups=None) -> PairedTest:
    """DeLong's test that two correlated ROC AUCs of the same images are equal.

    With ``groups`` where patients hold several images, Obuchowski's clustered variance (see
    :func:`delong_covariance`) and the test is named ``delong-clustered``.

    Returns
    -------
    PairedTest
        ``statistic`` z of (variant - baseline); ``p_value`` two-sided from the normal, 1 when both
        AUCs and their variance of the difference are 0 (identical rankings), NaN when a class is
        missing or has one image.
    """
    aucs, covariance = delong_covariance(is_positive, np.vstack([score_baseline, score_variant]), groups)
    name = "delong" if _clusters(groups, len(np.asarray(is_positive))) is None else "delong-clustered"
    difference = aucs[1] - aucs[0]
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    if not np.isfinite(variance):
        return PairedTest(test=name, statistic=float("nan"), p_value=float("nan"))
    if variance <= 0:
        z = 0.0 if difference == 0 else float(np.sign(difference) * np.inf)
    else:
        z = float(difference / np.sqrt(variance))
    return PairedTest(test=name, statistic=z, p_value=float(2 * norm.sf(abs(z))))


def corrected_resampled_ttest(differences, test_fraction: float) -> PairedTest:
    """Nadeau & Bengio's corrected resampled t-test (Machine Learning 52, 2003) on per-fold differences.

    The folds of repeated cross-validation share training images, so their scores are
    correlated and the plain paired t-test is far too confident; the correction inflates the
    variance of the mean by the test-to-training ratio.

    Parameters
    ----------
    differences : array of float, (J,)
        Per fold, variant's score minus baseline's, over every fold of every repeat (J = R * K).
    test_fraction : float
        Test images over training images of a fold: ``1 / (K - 1)`` for K folds; 0 gives the
        plain paired t-test.

    Returns
    -------
    PairedTest
        ``statistic`` t with J - 1 degrees of freedom; ``p_value`` two-sided (1 when every
        difference is 0, NaN with fewer than two finite folds).

    Raises
    ------
    ParameterError
        When ``test_fraction`` is negative.
    """
    if not test_fraction >= 0:
        raise ParameterError("test_fraction", test_fraction, "must be >= 0 (test images over training images)")
    differences = np.asarray(differences, dtype=np.float64)
    differences = differences[np.isfinite(differences)]
    folds = len(differences)
    if folds < 2:
        return PairedTest(test="corrected-t", statistic=float("nan"), p_value=float("nan"))
    mean, variance = differences.mean(), differences.var(ddof=1)
    if variance == 0:
        t = 0.0 if mean == 0 else float(np.sign(mean) * np.inf)
    else:
        t = float(mean / np.sqrt((1 / folds + test_fraction) * variance))
    return PairedTest(test="corrected-t", statistic=t, p_value=float(2 * student_t.sf(abs(t), folds - 1)))


def adjust_family(
    differences: Sequence[PairedDifference], *, correction: str = "holm", alpha: float = ALPHA
) -> tuple[PairedDifference, ...]:
    """The differences with their p-values adjusted over the family they form (the comparisons shown).

    Undefined p-values (NaN) stay out of the family and are never distinguishable.

    Parameters
    ----------
    differences : sequence of PairedDifference
    correction : str
        One of :data:`CORRECTIONS` (default ``holm``).
    alpha : float
        Family-wise level (default :data:`ALPHA`).

    Raises
    ------
    UnknownNameError, ParameterError
        For an unknown correction or an alpha outside (0, 1).
    """
    from statsmodels.stats.multitest import multipletests

    if correction not in CORRECTIONS:
        raise UnknownNameError("correction", correction, CORRECTIONS)
    if not 0 < alpha < 1:
        raise ParameterError("alpha", alpha, "must lie between 0 and 1")
    p_values = np.array([difference.p_value for difference in differences], dtype=np.float64)
    adjusted = p_values.copy()
    defined = np.isfinite(p_values)
    if correction != "none" and defined.any():
        adjusted[defined] = multipletests(p_values[defined], method=correction)[1]
    return tuple(
        replace(difference, p_adjusted=float(p), distinguishable=bool(p < alpha))
        for difference, p in zip(differences, adjusted, strict=True)
    )


# --- each kind of statistic's paired test -------------------------------------------------------


def sign_flip_test(
    baseline: Predictions, variant: Predictions, groups=None, *, n_flips: int = N_RESAMPLES, seed: int = 0
):
    """A paired sign-flip (approximate randomization) test of the difference in mean recall, the metric no
    exact paired test fits.

    Under the null hypothesis the two variants' predictions of a patient are exchangeable: each flip
    swaps them for every patient (every image, without ``groups``) with probability one half, and the
    observed difference is set among the flipped ones. The difference is a sum over images, each
    contributing ``(right_variant - right_baseline) / (images of its class) / (classes present)``, so
    every flip is one matrix product. With balanced classes it is the accuracy's difference, and the
    test approaches the exact McNemar test.

    Parameters
    ----------
    baseline, variant : Predictions
        Of the same images.
    groups : array, optional
        Each image's patient (default: none; images are swapped one by one).
    n_flips, seed : int
        Random flips (default :data:`featx.evaluation.metrics.N_RESAMPLES`) and their seed (0).

    Returns
    -------
    PairedTest
        ``sign-flip``: ``statistic`` the observed difference (variant minus baseline); ``p_value``
        ``(1 + #{|flipped| >= |observed|}) / (1 + n_flips)``, 1 when the variants agree on every image.
    """
    classes = np.arange(baseline.proba.shape[1])
    totals = (baseline.y_true[:, None] == classes).sum(axis=0)
    right = [predictions.predicted == predictions.y_true for predictions in (baseline, variant)]
    share = (right[1].astype(np.float64) - right[0]) / totals[baseline.y_true] / np.count_nonzero(totals)
    unit = np.arange(len(share)) if groups is None else np.unique(np.asarray(groups, dtype=str), return_inverse=True)[1]
    per_unit = np.bincount(unit, weights=share)
    observed = float(per_unit.sum())
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(n_flips, len(per_unit)))
    as_far = np.sum(np.abs(signs @ per_unit) >= abs(observed) - 1e-12)
    return PairedTest(test="sign-flip", statistic=observed, p_value=float((1 + as_far) / (1 + n_flips)))


def _mcnemar_of(statistic: Proportion, baseline: Predictions, variant: Predictions, groups, **_) -> PairedTest:
    """McNemar on the images the share counts (see :func:`mcnemar_test`; p NaN when none is counted)."""
    counted = statistic.counted(baseline)
    if not counted.any():
        return PairedTest(test="mcnemar", statistic=float("nan"), p_value=float("nan"))
    counted_groups = None if groups is None else np.asarray(groups)[counted]
    return mcnemar_test(statistic.succeeds(baseline)[counted], statistic.succeeds(variant)[counted], counted_groups)


def _delong_of(_statistic: RankArea, baseline: Predictions, variant: Predictions, groups, **_) -> PairedTest:
    """DeLong's test on the positive class's probabilities (see :func:`delong_test`)."""
    column = baseline.positive
    return delong_test(baseline.is_positive, baseline.proba[:, column], variant.proba[:, column], groups)


def _sign_flip_of(_statistic: MeanRecall, baseline: Predictions, variant: Predictions, groups, **random) -> PairedTest:
    return sign_flip_test(baseline, variant, groups, **random)


PAIRED_TEST_OF_KIND = {Proportion: _mcnemar_of, RankArea: _delong_of, MeanRecall: _sign_flip_of}
"""How each kind of statistic of :data:`featx.evaluation.metrics.METRICS` is paired on one split set:
``test(statistic, baseline, variant, groups, n_flips=..., seed=...) -> PairedTest`` with the two
variants' :class:`~featx.evaluation.metrics.Predictions` of the same images. Accuracy-type shares:
McNemar on their ``counted``/``succeeds`` masks; rank areas: DeLong; a mean recall, which no exact paired
test fits: the sign-flip randomization test (:func:`sign_flip_test`; the paired bootstrap's own
percentile p-value was tried and is far too small where few images are discordant)."""


@dataclass(frozen=True, kw_only=True)
class ScoredVariant:
    """One variant's predictions over its split sets, scored once for every comparison it is in.

    Attributes
    ----------
    proba : numpy.ndarray, (R, N, C)
        Out-of-fold predictions of R split sets (R = 1: one).
    predictions : tuple of Predictions
        Per split set, the predictions.
    points : tuple of dict
        Per split set, :func:`featx.evaluation.metrics.point_metrics`.
    fold_scores : tuple of dict
        Per split set, :func:`featx.evaluation.metrics.per_fold` (empty with one split set).
    resampled : dict
        Metric name -> (R, n_resamples): the metric in every bootstrap resample of every split set.
    """

    proba: np.ndarray
    predictions: tuple
    points: tuple
    fold_scores: tuple
    resampled: dict

    @classmethod
    def of(cls, proba, y_true, task: Task, weights, metrics: Sequence[str], fold=None) -> ScoredVariant:
        """Score ``proba`` ((N, C) or (R, N, C)) under the bootstrap ``weights``; ``fold`` (R, N) with R > 1."""
        proba = np.asarray(proba, dtype=np.float64)
        proba = proba[None] if proba.ndim == 2 else proba
        predictions = tuple(Predictions.of(y_true, repeat, task) for repeat in proba)
        return cls(
            proba=proba,
            predictions=predictions,
            points=tuple(point_metrics(y_true, repeat, task) for repeat in proba),
            fold_scores=()
            if len(proba) == 1
            else tuple(per_fold(y_true, repeat, folds, task) for repeat, folds in zip(proba, fold, strict=True)),
            resampled={
                metric: np.stack([METRICS[metric].values(repeat, weights) for repeat in predictions])
                for metric in metrics
            },
        )


def paired_difference(
    metric: str,
    y_true,
    proba_baseline,
    proba_variant,
    task: Task,
    groups=None,
    *,
    fold=None,
    names: tuple[str, str] = ("baseline", "variant"),
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> PairedDifference:
    """The difference in ``metric`` between two variants' predictions of the same images.

    With one split set the test is that of the metric's kind (:data:`PAIRED_TEST_OF_KIND`). Over R repeated
    split sets the difference and its interval are averaged over the split sets (each bootstrap
    resample draws the same patients for every split set and both variants) and the test is the
    corrected resampled t-test on the R x K per-fold differences.

    Parameters
    ----------
    metric : str
        One of :data:`featx.evaluation.metrics.METRICS`.
    y_true : array of int, (N,)
    proba_baseline, proba_variant : array of float, (N, len(task.classes)) or (R, N, len(task.classes))
        Out-of-fold predictions of one split set, or of R repeated split sets.
    task : Task
    groups : array, optional
        The bootstrap unit of each image (its patient), also the clusters of McNemar's and DeLong's
        tests; default: each image is its own.
    fold : array of int, (R, N), optional
        Each image's test fold in each split set; needed with more than one split set.
    names : tuple of str
        The baseline's and the variant's names (default ``baseline``, ``variant``).
    n_resamples, seed : int
        Bootstrap resamples (default :data:`featx.evaluation.metrics.N_RESAMPLES`) and their seed (0);
        also the flips of a sign-flip test.
    level : float
        Interval coverage (default 0.95).

    Returns
    -------
    PairedDifference
        Unadjusted (``p_adjusted`` is ``p_value``; see :func:`adjust_family`).

    Raises
    ------
    UnknownNameError
        For a metric not in :data:`featx.evaluation.metrics.METRICS`.
    ParameterError
        When repeated split sets come without ``fold``.
    """
    if metric not in METRICS:
        raise UnknownNameError("metric", metric, METRICS)
    if np.ndim(proba_baseline) == 3 and len(proba_baseline) > 1 and fold is None:
        raise ParameterError("fold", fold, "must give each image's test fold in each of the repeated split sets")
    y_true = np.asarray(y_true)
    weights = resample_weights(len(y_true), groups, n_resamples=n_resamples, seed=seed)
    baseline, variant = (
        ScoredVariant.of(proba, y_true, task, weights, (metric,), fold) for proba in (proba_baseline, proba_variant)
    )
    return scored_difference(
        metric, baseline, variant, groups=groups, names=names, level=level, n_resamples=n_resamples, seed=seed
    )


def scored_difference(
    metric: str,
    baseline: ScoredVariant,
    variant: ScoredVariant,
    *,
    groups,
    names: tuple[str, str],
    level: float,
    n_resamples: int,
    seed: int,
) -> PairedDifference:
    """:func:`paired_difference` of two variants scored under the same bootstrap weights and split sets
    (``groups``: each image's patient, or None; ``n_resamples``, ``seed``: a randomization test's)."""
    pairs = zip(baseline.points, variant.points, strict=True)
    difference = np.mean([after[metric] - before[metric] for before, after in pairs])
    resampled_differences = np.mean(variant.resampled[metric] - baseline.resampled[metric], axis=0)
    if len(baseline.proba) == 1:
        statistic = METRICS[metric].statistic
        outcome = PAIRED_TEST_OF_KIND[type(statistic)](
            statistic, baseline.predictions[0], variant.predictions[0], groups, n_flips=n_resamples, seed=seed
        )
    else:
        fold_differences = [
            np.subtract(after[metric]["values"], before[metric]["values"])
            for before, after in zip(baseline.fold_scores, variant.fold_scores, strict=True)
        ]
        folds = min(len(values) for values in fold_differences)
        outcome = corrected_resampled_ttest(np.concatenate(fold_differences), test_fraction=1 / (folds - 1))
    return PairedDifference(
        metric=metric,
        baseline=names[0],
        variant=names[1],
        difference=float(difference),
        interval=percentile_interval(resampled_differences, level),
        level=level,
        test=outcome.test,
        statistic=outcome.statistic,
        p_value=outcome.p_value,
        p_adjusted=outcome.p_value,
        distinguishable=bool(outcome.p_value < ALPHA),
    )


# --- stored results --------------------------------------------------------------------------


def _mismatch(first: Result, other: Result, *, same_folds: bool) -> str | None:
    """Why two stored results are not of the same images (and, with ``same_folds``, the same folds), or None."""
    mine, theirs = first.variant, other.variant
    same = {
        "dataset": (mine.features.dataset_id, theirs.features.dataset_id),
        "subset": (mine.subset, theirs.subset),
        "classes": (tuple(first.classes), tuple(other.classes)),
        "grouping": (mine.protocol.group_by, theirs.protocol.group_by),
        "number of folds": (mine.protocol.folds, theirs.protocol.folds),
    }
    if same_folds:
        same["protocol"] = (mine.protocol, theirs.protocol)
        same["split file"] = (Path(first.provenance.split_file).name, Path(other.provenance.split_file).name)
    for what, (left, right) in same.items():
        if left != right:
            return f"different {what} ({left} vs {right})"
    if set(first.image_ids) != set(other.image_ids):
        return f"different images ({len(set(first.image_ids) ^ set(other.image_ids))} in one but not the other)"
    order = _aligned(first, other)
    for what in ("y_true", "fold", "groups") if same_folds else ("y_true", "groups"):
        mismatched = np.flatnonzero(getattr(first, what) != getattr(other, what)[order])
        if len(mismatched):
            return f"different {what} for {len(mismatched)} images (first: {first.image_ids[mismatched[0]]})"
    return None


def _aligned(first: Result, other: Result) -> np.ndarray:
    """The rows of ``other`` in the image order of ``first``."""
    row = {image_id: index for index, image_id in enumerate(other.image_ids)}
    return np.array([row[image_id] for image_id in first.image_ids], dtype=int)


def _label(result: Result) -> str:
    return str(result.path or result.variant.name())


def _check_runs(baseline: tuple, run: tuple) -> None:
    """Refuse a variant's results that do not pair, split set by split set, with the baseline's."""
    if not run or len(run) != len(baseline):
        named = _label(run[0]) if run else "a variant"
        raise SplitError(
            f"cannot pair {named} with the baseline {_label(baseline[0])}: results on {len(run)} split sets for "
            f"the baseline's {len(baseline)}; give every variant the same split sets"
        )
    for mine, theirs in zip(baseline, run, strict=True):
        reason = _mismatch(mine, theirs, same_folds=True)
        if reason:
            raise SplitError(
                f"cannot pair {_label(theirs)} with the baseline {_label(mine)}: {reason}; compare variants "
                "fitted on the same dataset, protocol and saved folds"
            )


def _check_repeats(baseline: tuple) -> None:
    """Refuse repeated split sets that are not of the same images and protocol, or that repeat a split file."""
    if not baseline:
        raise ParameterError("baseline", baseline, "must hold at least one result")
    split_files = [Path(result.provenance.split_file).name for result in baseline]
    if len(set(split_files)) != len(split_files):
        raise SplitError(
            f"the baseline's results repeat a split set ({', '.join(split_files)}); repeated cross-validation "
            "needs split sets of different seeds"
        )
    for result in baseline[1:]:
        reason = _mismatch(baseline[0], result, same_folds=False)
        if reason:
            raise SplitError(f"cannot repeat {_label(result)} with {_label(baseline[0])}: {reason}")


def compare_paired(
    variants: Sequence[Result | Sequence[Result]],
    *,
    baseline: Result | Sequence[Result] | None = None,
    metrics: Sequence[str] = tuple(METRICS),
    positive: str | None = None,
    correction: str = "holm",
    alpha: float = ALPHA,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[PairedDifference, ...]:
    """Every variant against the baseline, metric by metric, adjusted over the whole family.

    Parameters
    ----------
    variants : sequence of Result, or of sequences of Result
        Each variant's stored result, or its results over repeated split sets (the same split
        sets, in the same order, for every variant); all of the same dataset and images.
    baseline : Result or sequence of Result, optional
        One of ``variants`` (default: the first).
    metrics : sequence of str
        Names in :data:`featx.evaluation.metrics.METRICS` (default: all of them, in its order).
    positive : str, optional
        The positive class (default: see :mod:`featx.evaluation.task`).
    correction : str
        How p-values are adjusted over the family (variants x metrics); default ``holm``.
    alpha : float
        Default :data:`ALPHA`.
    n_resamples, seed, level
        The paired bootstrap's (see :func:`paired_difference`); the bootstrap resamples the
        baseline's groups (patients, or images under the image protocol).

    Returns
    -------
    tuple of PairedDifference
        Variant by variant (in the order of ``variants``), metric by metric; tested by
        :data:`PAIRED_TEST_OF_KIND` on one split set, by the corrected resampled t-test on several.

    Raises
    ------
    SplitError
        When a variant's results were not evaluated on the baseline's dataset, protocol, split
        files, images, labels, folds or groups (naming both files and the difference), or repeated
        split sets repeat a split file or differ in their images.
    ParameterError
        When ``baseline`` is not one of ``variants``, or fewer than two variants are given.
    UnknownNameError
        For a metric not in :data:`featx.evaluation.metrics.METRICS`.
    """
    variants = list(variants)
    if len(variants) < 2:
        raise ParameterError("variants", len(variants), "must hold a baseline and at least one variant")
    baseline = variants[0] if baseline is None else baseline
    if not any(variant is baseline for variant in variants):
        raise ParameterError("baseline", _label(_runs(baseline)[0]), "must be one of the variants compared")
    for metric in metrics:
        if metric not in METRICS:
            raise UnknownNameError("metric", metric, METRICS)
    others = [_runs(variant) for variant in variants if variant is not baseline]
    baseline = _runs(baseline)
    _check_repeats(baseline)
    for run in others:
        _check_runs(baseline, run)
    first = baseline[0]
    task = Task.of(first.classes, [first.classes[i] for i in first.y_true], positive)
    weights = resample_weights(len(first.y_true), first.groups, n_resamples=n_resamples, seed=seed)
    fold = np.stack([result.fold[_aligned(first, result)] for result in baseline])

    def scored(run):
        proba = np.stack([result.proba[_aligned(first, result)] for result in run])
        return ScoredVariant.of(proba, first.y_true, task, weights, metrics, fold)

    reference = scored(baseline)
    differences = []
    for run in others:
        compared = scored(run)
        names = (first.variant.name(), run[0].variant.name())
        differences += [
            scored_difference(
                metric,
                reference,
                compared,
                groups=first.groups,
                names=names,
                level=level,
                n_resamples=n_resamples,
                seed=seed,
            )
            for metric in metrics
        ]
    return adjust_family(differences, correction=correction, alpha=alpha)


def _runs(variant: Result | Sequence[Result]) -> tuple[Result, ...]:
    """A variant's results, one per split set."""
    return (variant,) if isinstance(variant, Result) else tuple(variant)
