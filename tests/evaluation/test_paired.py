"""Paired comparisons: hand counts, a published DeLong example, statsmodels' Holm, and real stores."""

from dataclasses import replace
from functools import partial
from math import comb

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2, ttest_rel
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from featx.evaluation import metrics
from featx.evaluation.metrics import METRICS, Predictions, percentile_interval
from featx.evaluation.paired import (
    PairedDifference,
    adjust_family,
    compare_paired,
    corrected_resampled_ttest,
    delong_covariance,
    delong_test,
    mcnemar_test,
    paired_difference,
)
from featx.evaluation.results import Result, ResultProvenance, Timings, load_result
from featx.evaluation.splits import Protocol, fold_of_each_image, load_or_make_split, protocol_groups
from featx.evaluation.task import Task
from featx.evaluation.variant import Variant
from featx.exceptions import ParameterError, SplitError, UnknownNameError
from featx.features.identity import StoreKey
from featx.features.store import load_features
from featx.heads import HeadRecipe
from featx.heads.family import out_of_fold_proba
from tests.realdata import LITE0_64

PAPER = Task(classes=("covid", "pneumonia", "normal"), positive="covid")
FIVE = Protocol(group_by="patient", folds=5, seed=0)


def _proba_for(predicted, confidence, n_classes=3):
    """Probabilities whose argmax is ``predicted``, the predicted class holding ``confidence``."""
    proba = np.tile(((1 - confidence) / (n_classes - 1))[:, None], (1, n_classes))
    proba[np.arange(len(predicted)), predicted] = confidence
    return proba


def _correlated_pair(rng, n=400, flips=20):
    """A baseline right on about 75% of the images and a variant that changes the call on ``flips`` of them."""
    y_true = rng.integers(0, 3, n)
    baseline = np.where(rng.random(n) < 0.75, y_true, (y_true + 1) % 3)
    variant = baseline.copy()
    changed = rng.choice(n, flips, replace=False)
    variant[changed] = np.where(variant[changed] == y_true[changed], (y_true[changed] + 2) % 3, y_true[changed])
    confidence = 0.5 + 0.4 * rng.random(n)
    return y_true, _proba_for(baseline, confidence), _proba_for(variant, np.clip(confidence + 0.02, 0, 0.95))


# --- hand-built predictions ----------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["accuracy", "auc_positive"])
def test_paired_interval_is_narrower_than_the_marginal_ones_when_predictions_are_correlated(metric):
    y_true, baseline, variant = _correlated_pair(np.random.default_rng(0))
    marginal = [
        metrics.bootstrap_intervals(y_true, proba, PAPER, n_resamples=500)[metric] for proba in (baseline, variant)
    ]
    paired = paired_difference(metric, y_true, baseline, variant, PAPER, n_resamples=500).interval
    assert all(paired[1] - paired[0] < (high - low) / 2 for low, high in marginal)


def test_a_difference_hidden_by_overlapping_marginal_intervals_is_found_by_pairing():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 3, 300)
    baseline = np.where(rng.random(300) < 0.7, y_true, (y_true + 1) % 3)
    variant = baseline.copy()
    wrong = np.flatnonzero(baseline != y_true)
    variant[wrong[:15]] = y_true[wrong[:15]]  # the variant fixes 15 of the baseline's errors and breaks none
    confidence = np.full(300, 0.8)
    a, b = _proba_for(baseline, confidence), _proba_for(variant, confidence)
    low_b, high_b = metrics.bootstrap_intervals(y_true, b, PAPER)["accuracy"]
    low_a, high_a = metrics.bootstrap_intervals(y_true, a, PAPER)["accuracy"]
    assert low_b < high_a  # side by side, the intervals overlap
    paired = paired_difference("accuracy", y_true, a, b, PAPER)
    assert paired.difference == pytest.approx(15 / 300)
    assert paired.interval[0] > 0
    assert paired.p_value == pytest.approx(2 / 2**15)  # 15 discordant pairs, all one way: 2 * 0.5^15


@pytest.mark.parametrize("fixed, broken", [(7, 0), (7, 3)])
def test_a_mean_recall_is_tested_by_sign_flips_that_match_exact_mcnemar_on_balanced_classes(fixed, broken):
    # 100 images per class: the mean recall's difference is the accuracy's, and each discordant image weighs the same
    y_true = np.repeat([0, 1, 2], 100)
    baseline = np.where(np.arange(300) % 4 == 0, (y_true + 1) % 3, y_true)  # wrong on every fourth image
    variant = baseline.copy()
    wrong, right = np.flatnonzero(baseline != y_true), np.flatnonzero(baseline == y_true)
    variant[wrong[:fixed]] = y_true[wrong[:fixed]]
    variant[right[:broken]] = (y_true[right[:broken]] + 2) % 3
    a, b = _proba_for(baseline, np.full(300, 0.8)), _proba_for(variant, np.full(300, 0.8))
    exact = paired_difference("accuracy", y_true, a, b, PAPER, n_resamples=100)
    flipped = paired_difference("balanced_accuracy", y_true, a, b, PAPER, n_resamples=4000)
    assert flipped.test == "sign-flip" and exact.test == "mcnemar"
    assert flipped.difference == pytest.approx(exact.difference) == pytest.approx((fixed - broken) / 300)
    assert flipped.statistic == pytest.approx(flipped.difference)
    assert flipped.p_value == pytest.approx(exact.p_value, abs=0.025)  # 4000 flips: Monte Carlo error ~0.008
    # every patient's images repeated: flipped patient by patient, the same evidence, not more
    patients = np.repeat(np.arange(300), 3)
    repeated = [_proba_for(np.repeat(calls, 3), np.full(900, 0.8)) for calls in (baseline, variant)]
    clustered = paired_difference(
        "balanced_accuracy", np.repeat(y_true, 3), *repeated, PAPER, patients, n_resamples=4000
    )
    assert clustered.p_value == pytest.approx(flipped.p_value, abs=0.025)
    same = paired_difference("balanced_accuracy", y_true, a, a, PAPER, n_resamples=400)
    assert (same.difference, same.statistic, same.p_value, same.interval) == (0, 0, 1, (0, 0))


def test_mcnemar_equals_a_hand_count():
    # the 2x2 discordance table, by hand: both right 50, baseline only 3, variant only 12, both wrong 5
    right_baseline = np.array([True] * 50 + [True] * 3 + [False] * 12 + [False] * 5)
    right_variant = np.array([True] * 50 + [False] * 3 + [True] * 12 + [False] * 5)
    outcome = mcnemar_test(right_baseline, right_variant)
    # exact two-sided: 2 * P(X <= 3), X ~ Binomial(15, 1/2)
    assert outcome.statistic == 3
    assert outcome.p_value == pytest.approx(2 * sum(comb(15, k) for k in range(4)) / 2**15)
    assert mcnemar_test(right_baseline, right_baseline).p_value == 1.0  # no discordant pair


def test_clustered_mcnemar_counts_a_patient_once_however_many_images_it_has():
    rng = np.random.default_rng(14)
    right_baseline, right_variant = rng.random(60) < 0.7, rng.random(60) < 0.8
    one_each = mcnemar_test(right_baseline, right_variant, groups=np.arange(60))
    assert (one_each.test, one_each.p_value) == ("mcnemar", mcnemar_test(right_baseline, right_variant).p_value)
    b, c = int(np.sum(right_baseline & ~right_variant)), int(np.sum(~right_baseline & right_variant))
    asymptotic = mcnemar([[0, b], [c, 0]], exact=False, correction=False)
    for copies in (2, 5):  # every patient's image repeated: the same evidence, not more
        repeated = mcnemar_test(
            np.repeat(right_baseline, copies), np.repeat(right_variant, copies), np.repeat(np.arange(60), copies)
        )
        assert repeated.test == "mcnemar-clustered"
        assert (repeated.statistic, repeated.p_value) == (
            pytest.approx(asymptotic.statistic),
            pytest.approx(asymptotic.pvalue),
        )
        naive = mcnemar_test(np.repeat(right_baseline, copies), np.repeat(right_variant, copies))
        assert naive.p_value < repeated.p_value  # taking the copies as independent overstates the evidence
    # patients with one discordant image each: the discordant images are independent, the exact test holds
    index = np.arange(60)
    patients = np.where(right_baseline != right_variant, [f"d{i}" for i in index], [f"c{i // 3}" for i in index])
    spread_out = mcnemar_test(right_baseline, right_variant, groups=patients)
    assert spread_out.test == "mcnemar" and spread_out.p_value == one_each.p_value
    # by hand: patients (b_i - c_i) = +2, -1, 0, +1 -> X2 = (2 - 1 + 0 + 1)^2 / (4 + 1 + 0 + 1) = 4 / 6
    baseline = np.array([1, 1, 0, 0, 1, 0, 1, 1, 0], dtype=bool)
    variant = np.array([0, 0, 1, 0, 1, 0, 1, 0, 0], dtype=bool)
    groups = np.array(["a", "a", "b", "b", "c", "c", "d", "d", "d"])
    by_hand = mcnemar_test(baseline, variant, groups)
    assert (by_hand.statistic, by_hand.p_value) == (pytest.approx(4 / 6), pytest.approx(chi2.sf(4 / 6, 1)))


def test_sensitivity_pairs_the_positives_only_and_specificity_the_negatives():
    # 0 covid (positive), 1 pneumonia, 2 normal; baseline and variant calls, image by image
    y_true = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    baseline = np.array([0, 0, 1, 2, 2, 2, 1, 0, 2, 2, 0, 0])
    variant = np.array([0, 1, 0, 0, 0, 0, 2, 1, 2, 0, 2, 1])
    a, b = _proba_for(baseline, np.full(12, 0.8)), _proba_for(variant, np.full(12, 0.8))
    # positives (0..5): baseline finds 0,1; variant 0,2,3,4,5 -> discordant: 1 baseline only, 2,3,4,5 variant only
    sensitivity = paired_difference("sensitivity", y_true, a, b, PAPER)
    assert sensitivity.difference == pytest.approx(5 / 6 - 2 / 6)
    assert (sensitivity.statistic, sensitivity.p_value) == (1, pytest.approx(2 * (1 + 5) / 2**5))
    # negatives (6..11) called non-covid: baseline 6,8,9; variant 6,7,8,10,11 -> 9 baseline only, 7,10,11 variant only
    specificity = paired_difference("specificity", y_true, a, b, PAPER)
    assert specificity.difference == pytest.approx(5 / 6 - 3 / 6)
    assert (specificity.statistic, specificity.p_value) == (1, pytest.approx(2 * (1 + 4) / 2**4))
    # 3-class accuracy over all 12: baseline right on 0,1,6,8,9; variant on 0,2,3,4,5,7,8,10
    accuracy = paired_difference("accuracy", y_true, a, b, PAPER)
    assert accuracy.difference == pytest.approx(8 / 12 - 5 / 12)
    # discordant: 1,6,9 baseline only; 2,3,4,5,7,10 variant only -> 2 * P(X <= 3), X ~ Binomial(9, 1/2)
    assert (accuracy.statistic, accuracy.p_value) == (3, pytest.approx(2 * sum(comb(9, k) for k in range(4)) / 2**9))


def test_a_metric_the_images_do_not_define_has_no_p_value_and_stays_out_of_the_family():
    y_true = np.array([1, 1, 2, 2, 1, 2])  # no covid: sensitivity and the covid AUC are undefined
    a = _proba_for(np.array([1, 2, 2, 2, 1, 1]), np.full(6, 0.8))
    b = _proba_for(np.array([1, 1, 2, 1, 0, 2]), np.full(6, 0.8))
    for metric in ("sensitivity", "auc_positive"):
        undefined = paired_difference(metric, y_true, a, b, PAPER, n_resamples=50)
        assert np.isnan(undefined.difference) and np.isnan(undefined.p_value) and not undefined.distinguishable
        assert all(np.isnan(undefined.interval))
    results = [_result(y_true, a, fold=np.arange(6) % 5), _result(y_true, b, fold=np.arange(6) % 5)]
    compared = {d.metric: d for d in compare_paired(results, n_resamples=50)}
    family = ("accuracy", "accuracy_2class", "specificity", "balanced_accuracy")
    defined = [compared[name].p_value for name in family]
    assert [compared[name].p_adjusted for name in family] == pytest.approx(
        list(multipletests(defined, method="holm")[1])
    )
    assert np.isnan(compared["sensitivity"].p_adjusted) and np.isnan(compared["auc_positive"].p_adjusted)


# pROC's data set aSAH (Turck et al. 2010; 113 patients with aneurysmal subarachnoid haemorrhage, 41 with a
# poor outcome), and the worked example of pROC's documentation, roc.test(aSAH$outcome, aSAH$s100b,
# aSAH$wfns): AUCs 0.7314 and 0.8237, DeLong's Z = -2.209, p-value = 0.02718.
ASAH_POOR = [
    0, 0, 0, 0, 1, 1, 0, 1, 0, 0, 1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0,
    1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 0, 0,
    0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0,
]  # fmt: skip
ASAH_S100B = [
    0.13, 0.14, 0.1, 0.04, 0.13, 0.1, 0.47, 0.16, 0.18, 0.1, 0.12, 0.1, 0.44, 0.71, 0.04, 0.08, 0.49, 0.04, 0.07,
    0.33, 0.09, 0.09, 0.07, 0.11, 0.07, 0.17, 0.07, 0.11, 0.13, 0.19, 0.05, 0.16, 0.41, 0.14, 0.34, 0.35, 0.48, 0.09,
    0.96, 0.25, 0.5, 0.46, 0.16, 0.07, 0.43, 0.45, 0.11, 0.08, 0.09, 0.86, 0.52, 0.08, 0.06, 0.13, 2.07, 0.1, 0.14,
    0.15, 0.07, 0.06, 0.77, 0.05, 0.09, 0.3, 0.03, 0.09, 0.04, 0.23, 0.7, 0.09, 0.27, 0.71, 0.08, 0.26, 0.08, 0.16,
    0.09, 0.13, 0.1, 0.08, 0.11, 0.33, 0.11, 0.28, 0.07, 0.1, 0.32, 0.22, 0.07, 0.05, 0.24, 0.38, 0.1, 0.15, 0.08,
    0.14, 0.1, 0.07, 0.04, 0.19, 0.56, 0.14, 0.58, 0.32, 0.82, 0.74, 0.15, 0.47, 0.17, 0.44, 0.15, 0.5, 0.48,
]  # fmt: skip
ASAH_WFNS = [
    1, 1, 1, 1, 3, 2, 5, 4, 1, 2, 5, 2, 5, 5, 1, 2, 5, 2, 2, 5, 2, 1, 1, 1, 1, 2, 1, 2, 1, 1, 3, 4, 2, 1, 4, 5, 4, 1,
    4, 2, 5, 5, 1, 1, 2, 4, 1, 1, 2, 5, 5, 2, 1, 2, 5, 1, 2, 2, 2, 1, 5, 1, 1, 2, 5, 2, 1, 4, 5, 2, 4, 4, 1, 4, 1, 2,
    1, 4, 2, 1, 2, 3, 2, 4, 2, 1, 4, 5, 1, 1, 5, 4, 2, 2, 1, 1, 1, 3, 1, 2, 5, 2, 2, 5, 5, 5, 2, 4, 4, 5, 1, 1, 1,
]  # fmt: skip


def test_delong_reproduces_the_published_proc_example():
    poor = np.array(ASAH_POOR) == 1
    assert (len(poor), int(poor.sum())) == (113, 41)
    aucs, _ = delong_covariance(poor, np.vstack([ASAH_S100B, ASAH_WFNS]))
    assert aucs == pytest.approx([0.7314, 0.8237], abs=5e-5)
    outcome = delong_test(poor, ASAH_WFNS, ASAH_S100B)  # z of s100b - wfns, as roc.test(s100b, wfns)
    assert outcome.statistic == pytest.approx(-2.209, abs=5e-4)
    assert outcome.p_value == pytest.approx(0.02718, abs=5e-6)
    swapped = delong_test(poor, ASAH_S100B, ASAH_WFNS)
    assert (swapped.statistic, swapped.p_value) == (pytest.approx(-outcome.statistic), pytest.approx(outcome.p_value))


def _slow_delong(is_positive, scores):
    """DeLong et al. (1988) from the definition: every positive against every negative, O(N^2)."""
    covariances, aucs = [], []
    v10, v01 = [], []
    for score in scores:
        positives, negatives = score[is_positive], score[~is_positive]
        psi = (positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :])
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
        aucs.append(psi.mean())
    m, n = int(is_positive.sum()), int((~is_positive).sum())
    covariances = np.cov(np.array(v10)) / m + np.cov(np.array(v01)) / n
    return np.array(aucs), covariances


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_delong_equals_the_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    is_positive = rng.random(151) < 0.35
    first = np.round(is_positive * 0.8 + rng.normal(0, 1, 151), 1)  # rounded: ties within and across classes
    scores = np.vstack([first, np.round(0.6 * first + rng.normal(0, 0.7, 151), 1), np.round(rng.normal(0, 1, 151))])
    aucs, covariance = delong_covariance(is_positive, scores)
    slow_aucs, slow_covariance = _slow_delong(is_positive, scores)
    np.testing.assert_allclose(aucs, slow_aucs, atol=1e-12)
    np.testing.assert_allclose(covariance, slow_covariance, rtol=1e-10, atol=1e-15)
    assert aucs[0] == pytest.approx(metrics.auc(is_positive, first))


def _slow_clustered_delong(is_positive, scores, groups):
    """Obuchowski (1997) from the definition: placements from every positive-negative pair, summed per patient."""
    patients = sorted(set(groups))
    groups = np.asarray(groups)
    m, n, count = int(is_positive.sum()), int((~is_positive).sum()), len(patients)
    with_positive, with_negative = len(set(groups[is_positive])), len(set(groups[~is_positive]))
    d10, d01 = np.zeros((len(scores), count)), np.zeros((len(scores), count))
    for k, score in enumerate(scores):
        positives, negatives = score[is_positive], score[~is_positive]
        psi = (positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :])
        auc = psi.mean()
        for i, patient in enumerate(patients):
            mine = groups == patient
            d10[k, i] = psi.mean(axis=1)[mine[is_positive]].sum() - mine[is_positive].sum() * auc
            d01[k, i] = psi.mean(axis=0)[mine[~is_positive]].sum() - mine[~is_positive].sum() * auc
    s10 = with_positive / ((with_positive - 1) * m) * d10 @ d10.T
    s01 = with_negative / ((with_negative - 1) * n) * d01 @ d01.T
    s11 = count / (count - 1) * d10 @ d01.T
    return s10 / m + s01 / n + (s11 + s11.T) / (m * n)


def test_clustered_delong_equals_the_definition_and_counts_a_patient_once():
    rng = np.random.default_rng(15)
    groups = rng.integers(0, 40, 120).astype(str)  # 40 patients, 0 to 8 images each, of both classes
    is_positive = rng.random(120) < 0.4
    first = np.round(is_positive * 0.8 + rng.normal(0, 1, 120), 1)
    scores = np.vstack([first, np.round(0.6 * first + rng.normal(0, 0.7, 120), 1)])
    aucs, covariance = delong_covariance(is_positive, scores, groups)
    np.testing.assert_allclose(covariance, _slow_clustered_delong(is_positive, scores, groups), rtol=1e-10)
    assert aucs == pytest.approx(delong_covariance(is_positive, scores)[0])
    assert delong_test(is_positive, scores[0], scores[1], groups).test == "delong-clustered"
    # one image per patient: Obuchowski's form is DeLong's
    one_each = _slow_clustered_delong(is_positive, scores, np.arange(120).astype(str))
    np.testing.assert_allclose(delong_covariance(is_positive, scores)[1], one_each, rtol=1e-10)
    # every image of every patient repeated: the clustered covariance does not move, the naive one shrinks
    for copies in (2, 3):
        repeated = delong_covariance(
            np.repeat(is_positive, copies), np.repeat(scores, copies, axis=1), np.repeat(np.arange(120), copies)
        )[1]
        np.testing.assert_allclose(repeated, one_each, rtol=1e-10)
    naive = delong_covariance(np.repeat(is_positive, 3), np.repeat(scores, 3, axis=1))[1]
    assert np.all(np.diag(naive) < np.diag(one_each) / 2)


def test_delong_without_a_class_is_undefined_and_identical_rankings_are_no_difference():
    assert np.isnan(delong_test(np.ones(5, dtype=bool), np.arange(5.0), np.arange(5.0)).p_value)
    is_positive = np.array([True, False, True, False, True, False])
    score = np.array([0.9, 0.1, 0.7, 0.4, 0.3, 0.6])
    assert delong_test(is_positive, score, score * 2).p_value == 1.0


def test_holm_matches_statsmodels_by_hand_and_over_a_family_of_stored_results():
    family = [
        PairedDifference(
            metric="accuracy",
            baseline="a",
            variant=f"v{i}",
            difference=0.0,
            interval=(0.0, 0.0),
            level=0.95,
            test="mcnemar",
            statistic=0.0,
            p_value=p,
            p_adjusted=p,
            distinguishable=p < 0.05,
        )
        for i, p in enumerate([0.01, 0.04, 0.03, 0.5, float("nan")])
    ]
    adjusted = adjust_family(family)
    # by hand: sorted 0.01, 0.03, 0.04, 0.5 times 4, 3, 2, 1, kept non-decreasing -> 0.04, 0.09, 0.09, 0.5
    assert [d.p_adjusted for d in adjusted[:4]] == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert np.isnan(adjusted[4].p_adjusted) and not adjusted[4].distinguishable
    assert [d.distinguishable for d in adjusted] == [True, False, False, False, False]
    assert [d.p_adjusted for d in adjust_family(family, correction="none")][:4] == [0.01, 0.04, 0.03, 0.5]

    rng = np.random.default_rng(4)
    y_true, baseline, variant = _correlated_pair(rng, n=200, flips=30)
    results = [_result(y_true, proba) for proba in (baseline, variant, _correlated_pair(rng, n=200)[2])]
    compared = compare_paired(results, n_resamples=200)
    assert len(compared) == 2 * len(METRICS)
    raw = [d.p_value for d in compared]
    assert [d.p_adjusted for d in compared] == pytest.approx(list(multipletests(raw, method="holm")[1]))


def test_the_corrected_resampled_t_test_by_hand_and_against_scipy():
    rng = np.random.default_rng(5)
    baseline_scores = 0.8 + 0.03 * rng.standard_normal(30)  # 3 repeats of 10 folds
    variant_scores = baseline_scores + 0.01 + 0.02 * rng.standard_normal(30)
    differences = variant_scores - baseline_scores
    plain = corrected_resampled_ttest(differences, test_fraction=0)
    reference = ttest_rel(variant_scores, baseline_scores)
    assert (plain.statistic, plain.p_value) == (pytest.approx(reference.statistic), pytest.approx(reference.pvalue))
    corrected = corrected_resampled_ttest(differences, test_fraction=1 / 9)
    by_hand = differences.mean() / np.sqrt((1 / 30 + 1 / 9) * differences.var(ddof=1))
    assert corrected.statistic == pytest.approx(by_hand)
    assert corrected.p_value > plain.p_value  # the correction widens: folds share training images
    with pytest.raises(ParameterError, match="test_fraction"):
        corrected_resampled_ttest(differences, test_fraction=-0.1)


def test_the_paired_resamples_are_the_marginal_bootstrap_of_the_metrics_module():
    rng = np.random.default_rng(6)
    y_true, proba, _ = _correlated_pair(rng, n=120)
    groups = rng.integers(0, 40, 120).astype(str)
    weights = metrics.resample_weights(120, groups, n_resamples=300, seed=3)
    marginal = metrics.bootstrap_intervals(y_true, proba, PAPER, groups, n_resamples=300, seed=3)
    for name, metric in METRICS.items():
        assert percentile_interval(metric.values(Predictions.of(y_true, proba, PAPER), weights), 0.95) == pytest.approx(
            tuple(marginal[name])
        )


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(12, 80), metric=st.sampled_from(sorted(METRICS)))
def test_swapping_baseline_and_variant_negates_the_difference_and_keeps_p(seed, n, metric):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 3, n)
    a, b = rng.dirichlet(np.ones(3), n), rng.dirichlet(np.ones(3), n)
    groups = rng.integers(0, max(2, n // 3), n)
    forward = paired_difference(metric, y_true, a, b, PAPER, groups, n_resamples=100, seed=seed % 1000)
    backward = paired_difference(metric, y_true, b, a, PAPER, groups, n_resamples=100, seed=seed % 1000)
    assert backward.difference == pytest.approx(-forward.difference, nan_ok=True)
    assert backward.interval == pytest.approx((-forward.interval[1], -forward.interval[0]), nan_ok=True)
    assert backward.p_value == pytest.approx(forward.p_value, nan_ok=True)
    assert abs(backward.statistic) == pytest.approx(abs(forward.statistic), nan_ok=True)


# --- stored results ------------------------------------------------------------------------------

HAND_KEY = StoreKey(
    dataset_id="hand-built",
    backbone="efficientnet_lite0",
    weights="random-init",
    weights_sha256="",
    preprocessing="efficientnet_lite",
    input_size=(64, 64),
    decoder="plain",
    precision="float32",
)


def _result(y_true, proba, *, head="logreg", protocol=FIVE, split_file=None, fold=None, groups=None):
    images = len(y_true)
    return Result(
        variant=Variant(phase=2, features=HAND_KEY, recipe=HeadRecipe(head=head), protocol=protocol),
        classes=PAPER.classes,
        image_ids=tuple(f"img{i:04d}" for i in range(images)),
        groups=np.array([f"p{i // 2}" for i in range(images)] if groups is None else groups),
        y_true=np.asarray(y_true),
        fold=np.arange(images) % protocol.folds if fold is None else fold,
        proba=np.asarray(proba, dtype=np.float64),
        timings=Timings(),
        provenance=ResultProvenance(
            featx_version="test",
            split_file=split_file or f"cache/hand-built/splits/{protocol.file_name}",
            stores=(),
            created="2026-01-01T00:00:00+00:00",
        ),
    )


def test_compare_paired_refuses_results_not_on_the_same_images_and_folds():
    rng = np.random.default_rng(7)
    y_true, baseline, variant = _correlated_pair(rng, n=40)
    base = _result(y_true, baseline)
    unpaired = {
        "different grouping": _result(y_true, variant, protocol=Protocol(group_by="image", folds=5, seed=0)),
        "different protocol": _result(y_true, variant, protocol=Protocol(group_by="patient", folds=5, seed=1)),
        "different split file": _result(y_true, variant, split_file="elsewhere/patient-k10-s0.json"),
        "different fold for 2 images": _result(y_true, variant, fold=np.r_[np.arange(38) % 5, 4, 3]),
        "different y_true": _result((y_true + 1) % 3, variant),
        "different groups": _result(y_true, variant, groups=[f"p{i}" for i in range(40)]),
    }
    for reason, result in unpaired.items():
        with pytest.raises(SplitError, match=f"cannot pair .*: {reason}"):
            compare_paired([base, result], n_resamples=50)
    fewer_images = replace(_result(y_true[:-1], variant[:-1]), fold=np.arange(39) % 5)
    with pytest.raises(SplitError, match="different images"):
        compare_paired([base, fewer_images], n_resamples=50)
    with pytest.raises(UnknownNameError, match="ppv"):
        compare_paired([base, _result(y_true, variant)], metrics=["ppv"])
    with pytest.raises(ParameterError, match="baseline"):
        compare_paired([base, _result(y_true, variant)], baseline=_result(y_true, baseline))


def test_under_the_image_protocol_images_are_the_unit_and_the_tests_are_the_exact_ones():
    rng = np.random.default_rng(16)
    y_true, baseline, variant = _correlated_pair(rng, n=80)
    by_image = Protocol(group_by="image", folds=5, seed=0)
    images = [f"img{i:04d}" for i in range(80)]
    results = [_result(y_true, proba, protocol=by_image, groups=images) for proba in (baseline, variant)]
    compared = {d.metric: d for d in compare_paired(results, n_resamples=100)}
    assert compared["accuracy"].test == "mcnemar" and compared["auc_positive"].test == "delong"
    alone = paired_difference("auc_positive", y_true, baseline, variant, PAPER, n_resamples=100)
    assert (compared["auc_positive"].interval, compared["auc_positive"].p_value) == (alone.interval, alone.p_value)


def test_compare_paired_aligns_images_stored_in_another_order():
    rng = np.random.default_rng(8)
    y_true, baseline, variant = _correlated_pair(rng, n=60)
    base, other = _result(y_true, baseline), _result(y_true, variant)
    order = rng.permutation(60)
    shuffled = replace(
        other,
        image_ids=tuple(np.array(other.image_ids)[order]),
        groups=other.groups[order],
        y_true=other.y_true[order],
        fold=other.fold[order],
        proba=other.proba[order],
    )
    assert compare_paired([base, shuffled], n_resamples=100) == compare_paired([base, other], n_resamples=100)


# --- real stores ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored_folds(feature_data, tmp_path_factory):
    """The real Lite0 features of 90 radiographs and a maker of results on their saved patient splits."""
    dataset, cache = feature_data
    gathered = load_features(cache, LITE0_64.key(dataset.id), dataset)
    y = dataset.label_indices()
    folder = tmp_path_factory.mktemp("paired_results")

    def stored(name, features, recipe, head_seed, protocol=FIVE):
        """Train ``recipe`` (its own randomness seeded by ``head_seed``) on the saved folds; save and reload."""
        split, split_file = load_or_make_split(cache, dataset, protocol)
        fold = fold_of_each_image(split, dataset.table["image_id"])
        proba, seconds = out_of_fold_proba(
            features, y, fold, partial(recipe.build, head_seed), n_classes=len(dataset.classes), jobs=1
        )
        result = Result(
            variant=Variant.of(2, dataset, LITE0_64, recipe, protocol),
            classes=dataset.classes,
            image_ids=tuple(dataset.table["image_id"]),
            groups=protocol_groups(dataset, protocol.group_by).to_numpy(),
            y_true=y,
            fold=fold,
            proba=proba,
            timings=Timings(fold_seconds=tuple(seconds), total_seconds=sum(seconds)),
            provenance=ResultProvenance(
                featx_version="test", split_file=str(split_file), stores=tuple(gathered.sources), created="now"
            ),
        )
        return load_result(result.save(folder / f"{name}-s{protocol.seed}.json").path)

    return gathered.features, stored


def test_the_same_variant_under_two_head_seeds_is_not_distinguishable(stored_folds):
    features, stored = stored_folds
    recipe = HeadRecipe(head="rf")
    first, second = stored("rf-seed0", features, recipe, 0), stored("rf-seed1", features, recipe, 1)
    assert not np.allclose(first.proba, second.proba)  # the seeds do change the forest
    compared = compare_paired([first, second])
    assert [d.metric for d in compared] == list(METRICS)
    assert all(d.p_value > 0.05 and not d.distinguishable for d in compared)


def test_logreg_on_real_features_is_distinguishable_from_logreg_on_constant_features(stored_folds):
    features, stored = stored_folds
    recipe = HeadRecipe(head="logreg")
    real = stored("logreg", features, recipe, 0)
    degenerate = stored("logreg-constant", np.ones_like(features), recipe, 0)
    compared = {d.metric: d for d in compare_paired([real, degenerate])}
    for metric in ("accuracy", "auc_positive"):
        assert compared[metric].difference < 0
        assert compared[metric].interval[1] < 0
        assert compared[metric].p_adjusted < 0.001 and compared[metric].distinguishable
    assert len(set(real.groups)) < len(real.groups)  # some patients have several radiographs: clustered DeLong
    assert compared["auc_positive"].test == "delong-clustered"


def _repeated(y_true, proba_by_repeat, head="logreg"):
    """Results of one variant over split sets of seeds 0, 1, ...: folds shuffled by the seed."""
    return [
        _result(
            y_true,
            proba,
            head=head,
            protocol=Protocol(group_by="patient", folds=5, seed=seed),
            fold=np.random.default_rng(seed).permutation(np.arange(len(y_true)) % 5),
        )
        for seed, proba in enumerate(proba_by_repeat)
    ]


def test_repeated_split_sets_average_the_difference_and_test_the_folds_with_the_corrected_t():
    rng = np.random.default_rng(9)
    y_true = rng.integers(0, 3, 150)
    pairs = [_correlated_pair(np.random.default_rng(seed), n=150)[1:] for seed in (10, 11, 12)]
    baseline = _repeated(y_true, [pair[0] for pair in pairs])
    variant = _repeated(y_true, [pair[1] for pair in pairs], head="svm")
    compared = {d.metric: d for d in compare_paired([baseline, variant], n_resamples=200)}
    accuracy = compared["accuracy"]
    per_repeat = [
        metrics.point_metrics(y_true, b.proba, PAPER)["accuracy"]
        - metrics.point_metrics(y_true, a.proba, PAPER)["accuracy"]
        for a, b in zip(baseline, variant, strict=True)
    ]
    assert accuracy.difference == pytest.approx(np.mean(per_repeat))
    fold_differences = np.concatenate(
        [
            np.subtract(
                metrics.per_fold(y_true, b.proba, b.fold, PAPER)["accuracy"]["values"],
                metrics.per_fold(y_true, a.proba, a.fold, PAPER)["accuracy"]["values"],
            )
            for a, b in zip(baseline, variant, strict=True)
        ]
    )
    expected = corrected_resampled_ttest(fold_differences, test_fraction=1 / 4)  # 5 folds: 1 test to 4 training
    assert (accuracy.test, accuracy.statistic, accuracy.p_value) == (
        "corrected-t",
        pytest.approx(expected.statistic),
        pytest.approx(expected.p_value),
    )
    assert accuracy.interval[0] <= accuracy.difference <= accuracy.interval[1]
    # one split set of the three is the single-split comparison, tested by McNemar (two images per patient: clustered)
    single = {d.metric: d for d in compare_paired([baseline[0], variant[0]], n_resamples=200)}
    assert single["accuracy"].test == "mcnemar-clustered"
    assert single["accuracy"].difference == pytest.approx(per_repeat[0])


def test_repeated_split_sets_are_refused_when_they_do_not_pair():
    rng = np.random.default_rng(13)
    y_true, baseline, variant = _correlated_pair(rng, n=40)
    three = _repeated(y_true, [baseline] * 3)
    with pytest.raises(SplitError, match="on 2 split sets for the baseline's 3"):
        compare_paired([three, _repeated(y_true, [variant] * 2)], n_resamples=50)
    with pytest.raises(SplitError, match="repeat a split set"):
        compare_paired([[three[0], three[0]], _repeated(y_true, [variant] * 2)], n_resamples=50)
    ten = Protocol(group_by="patient", folds=10, seed=1)
    ten_folds = replace(three[1], variant=replace(three[1].variant, protocol=ten))
    with pytest.raises(SplitError, match="cannot repeat .*: different number of folds"):
        compare_paired([[three[0], ten_folds], _repeated(y_true, [variant] * 2)], n_resamples=50)
    shuffled = _repeated(y_true, [variant] * 3)[::-1]  # split sets in another order
    with pytest.raises(SplitError, match="different protocol"):
        compare_paired([three, shuffled], n_resamples=50)


def test_repeated_split_sets_are_saved_once_and_differ_by_seed(feature_data):
    dataset, cache = feature_data
    protocols = FIVE.repeated(3)
    assert [protocol.seed for protocol in protocols] == [0, 1, 2]
    made = [load_or_make_split(cache, dataset, protocol) for protocol in protocols]
    assert len({path for _, path in made}) == 3
    assignments = [tuple(split.test_folds) for split, _ in made]
    assert len(set(assignments)) == 3  # three different fold assignments of the same images
    written = [path.stat().st_mtime_ns for _, path in made]
    again = [load_or_make_split(cache, dataset, protocol) for protocol in protocols]
    assert [split for split, _ in again] == [split for split, _ in made]
    assert [path.stat().st_mtime_ns for _, path in again] == written  # shared, not made again
    with pytest.raises(ParameterError, match="repeats must be >= 1"):
        FIVE.repeated(0)


def test_repeated_cross_validation_on_a_real_store_tells_real_features_from_constant_ones(stored_folds):
    features, stored = stored_folds
    recipe = HeadRecipe(head="logreg")
    protocols = FIVE.repeated(3)
    real = [stored("logreg", features, recipe, 0, protocol) for protocol in protocols]
    degenerate = [stored("logreg-constant", np.ones_like(features), recipe, 0, protocol) for protocol in protocols]
    compared = {d.metric: d for d in compare_paired([real, degenerate])}
    assert {d.test for d in compared.values()} == {"corrected-t"}
    for metric in ("accuracy", "auc_positive"):
        assert compared[metric].difference < 0 and compared[metric].interval[1] < 0
        assert compared[metric].p_adjusted < 0.001 and compared[metric].distinguishable
