"""The metrics module against hand-computed tables and the paper's own Table 3 -> Table 4."""

import numpy as np
import pytest

from featx.evaluation import metrics
from featx.evaluation.task import Task

PAPER = Task(classes=("covid", "pneumonia", "normal"), positive="covid")


@pytest.mark.parametrize(
    "tp, fp, tn, fn, sensitivity, specificity",
    [
        (222, 35, 1169, 2, 99.10, 97.09),  # MobileNetV2, Dataset_1 (paper Tables 3 and 4)
    ],
)
def test_paper_table4_from_table3(tp, fp, tn, fn, sensitivity, specificity):
    covid, other = 0, 2
    y_true = np.repeat([covid, covid, other, other], [tp, fn, fp, tn])
    y_pred = np.repeat([covid, other, covid, other], [tp, fn, fp, tn])
    rates = metrics.point_metrics(y_true, _proba_for(y_pred), PAPER)
    # the paper truncates to two decimals: 222/224 = 99.107 is printed 99.10
    assert int(rates["sensitivity"] * 10000) / 100 == sensitivity
    assert int(rates["specificity"] * 10000) / 100 == specificity
    assert rates["accuracy_2class"] == pytest.approx((tp + tn) / (tp + fp + tn + fn))


def _proba_for(predicted, n_classes=3):
    proba = np.full((len(predicted), n_classes), 0.1)
    proba[np.arange(len(predicted)), predicted] = 0.8
    return proba


def test_hand_computed_three_class_table():
    # classes: 0 covid, 1 pneumonia, 2 normal
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 2, 0, 2, 2, 1])
    result = metrics.point_metrics(y_true, _proba_for(y_pred), PAPER)
    assert result["confusion"] == [[3, 1, 0], [1, 1, 1], [0, 1, 2]]
    assert result["accuracy_3class"] == pytest.approx(6 / 10)
    # covid vs rest: TP 3, FN 1, FP 1, TN 5 -> the pneumonia/normal confusions still count as correct
    assert (result["tp"], result["fn"], result["fp"], result["tn"]) == (3, 1, 1, 5)
    assert result["accuracy_2class"] == pytest.approx(8 / 10)
    assert result["sensitivity"] == pytest.approx(3 / 4) and result["specificity"] == pytest.approx(5 / 6)
    assert result["ppv"] == pytest.approx(3 / 4) and result["npv"] == pytest.approx(5 / 6)


def test_auc_uses_the_covid_probability():
    y_true = np.array([0, 0, 1, 2])
    proba = np.array([[0.9, 0.05, 0.05], [0.4, 0.3, 0.3], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8]])
    # covid scores 0.9, 0.4 vs others 0.5, 0.1: 3 of 4 pairs ordered -> 0.75
    assert metrics.point_metrics(y_true, proba, PAPER)["auc_covid"] == pytest.approx(0.75)


def test_per_fold_mean_and_spread():
    y_true = np.array([0, 1, 0, 1])
    proba = _proba_for(np.array([0, 1, 1, 1]))
    fold = np.array([0, 0, 1, 1])
    spread = metrics.per_fold(y_true, proba, fold, PAPER)
    assert spread["accuracy_3class"]["values"] == [1.0, 0.5]
    assert spread["accuracy_3class"]["mean"] == 0.75 and spread["accuracy_3class"]["std"] == 0.25


def test_bootstrap_interval_brackets_the_estimate_and_narrows_with_data():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 3, 400)
    y_pred = np.where(rng.random(400) < 0.8, y_true, (y_true + 1) % 3)
    proba = _proba_for(y_pred)
    point = metrics.point_metrics(y_true, proba, PAPER)["accuracy_3class"]
    wide = metrics.bootstrap_intervals(y_true[:50], proba[:50], PAPER, n_resamples=300)["accuracy_3class"]
    narrow = metrics.bootstrap_intervals(y_true, proba, PAPER, n_resamples=300)["accuracy_3class"]
    assert narrow[0] <= point <= narrow[1]
    assert narrow[1] - narrow[0] < wide[1] - wide[0]


def test_patient_bootstrap_is_wider_when_patients_repeat():
    rng = np.random.default_rng(2)
    patient_correct = rng.random(40) < 0.7
    y_true = np.zeros(400, dtype=int)
    y_pred = np.repeat(np.where(patient_correct, 0, 1), 10)  # 10 images per patient, all alike
    groups = np.repeat(np.arange(40), 10)
    by_image = metrics.bootstrap_intervals(y_true, _proba_for(y_pred), PAPER, n_resamples=300)["accuracy_3class"]
    by_patient = metrics.bootstrap_intervals(y_true, _proba_for(y_pred), PAPER, groups, n_resamples=300)[
        "accuracy_3class"
    ]
    assert by_patient[1] - by_patient[0] > 2 * (by_image[1] - by_image[0])


def test_rank_auc_equals_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    y_true = rng.integers(0, 3, 300)
    proba = np.round(rng.random((300, 3)), 1)  # many ties
    assert metrics.point_metrics(y_true, proba, PAPER)["auc_covid"] == pytest.approx(
        roc_auc_score(y_true == 0, proba[:, 0])
    )


def test_binary_task_figures_are_about_its_positive_class():
    task = Task(classes=("clear", "opacity"), positive="opacity")
    y_true = np.array([1, 1, 1, 0, 0, 0, 0])
    y_pred = np.array([1, 0, 1, 0, 0, 1, 0])
    result = metrics.point_metrics(y_true, _proba_for(y_pred, 2), task)
    assert (result["tp"], result["fn"], result["fp"], result["tn"]) == (2, 1, 1, 3)
    assert result["sensitivity"] == pytest.approx(2 / 3) and result["specificity"] == pytest.approx(3 / 4)
    assert result["accuracy"] == result["accuracy_2class"] == pytest.approx(5 / 7)
    assert result["accuracy_3class"] is None and result["auc_covid"] is None
    assert result["per_class_recall"] == {"clear": pytest.approx(3 / 4), "opacity": pytest.approx(2 / 3)}


def test_four_class_task_reads_the_positive_class_off_the_confusion_matrix():
    task = Task(classes=("bacterial", "covid", "normal", "viral"), positive="covid")
    y_true = np.array([0, 1, 1, 2, 3, 3])
    y_pred = np.array([3, 1, 0, 2, 0, 3])
    result = metrics.point_metrics(y_true, _proba_for(y_pred, 4), task)
    assert result["accuracy"] == pytest.approx(3 / 6) and result["accuracy_3class"] is None
    assert (result["tp"], result["fn"], result["fp"], result["tn"]) == (1, 1, 0, 4)
    assert result["auc_covid"] == result["auc_positive"]


def test_unknown_positive_class_lists_the_classes():
    from featx.exceptions import UnknownNameError

    with pytest.raises(UnknownNameError, match="Unknown positive class 'tb'. Available: clear, opacity"):
        Task(classes=("clear", "opacity"), positive="tb")


def test_default_positive_is_covid_else_the_least_frequent_class():
    assert Task.of(("covid", "normal"), ["normal"] * 9 + ["covid"]).positive == "covid"
    assert Task.of(("healthy", "tb"), ["healthy"] * 5 + ["tb"] * 2).positive == "tb"


def test_vectorised_bootstrap_equals_resampling_the_rows_one_by_one():
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 3, 120)
    proba = np.round(rng.random((120, 3)), 1)
    groups = rng.integers(0, 40, 120)
    weights = metrics.resample_weights(120, groups, n_resamples=50, seed=4)
    intervals = metrics.bootstrap_intervals(y_true, proba, PAPER, groups, n_resamples=50, seed=4, level=0.5)
    one_by_one = {name: [] for name in metrics.METRICS}
    for row in weights.astype(int):
        chosen = np.repeat(np.arange(120), row)
        point = metrics.point_metrics(y_true[chosen], proba[chosen], PAPER)
        for name in metrics.METRICS:
            one_by_one[name].append(point[name])
    for name in metrics.METRICS:
        expected = [np.nanpercentile(one_by_one[name], 25), np.nanpercentile(one_by_one[name], 75)]
        np.testing.assert_allclose(intervals[name], expected, rtol=1e-12)


def test_point_auc_is_the_rank_sum_statistic_bit_for_bit():
    from scipy.stats import rankdata

    rng = np.random.default_rng(6)
    y_true = rng.integers(0, 3, 500)
    proba = np.round(rng.random((500, 3)), 2)  # ties
    positive = y_true == 0
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    rank_sum = (rankdata(proba[:, 0])[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    assert metrics.point_metrics(y_true, proba, PAPER)["auc_positive"] == rank_sum


@pytest.mark.parametrize("classes, positive", [(("covid", "pneumonia", "normal"), "covid"), (("clear", "tb"), "tb")])
def test_each_metric_names_the_positive_class_exactly_when_it_is_about_it(classes, positive):
    task = Task(classes=classes, positive=positive)
    for metric in metrics.METRICS.values():
        assert (positive in metric.label_for(task)) == metric.needs.about_positive, metric.name


def test_the_classes_present_decide_which_figures_are_defined():
    only_positive = metrics.defined_figures({0}, PAPER)
    assert [name for name, defined in only_positive.items() if defined] == ["sensitivity"]
    no_pneumonia = metrics.defined_figures({0, 2}, PAPER)
    assert not no_pneumonia["accuracy"] and not no_pneumonia["accuracy_3class"]
    assert no_pneumonia["auc_positive"] and no_pneumonia["auc_covid"] and no_pneumonia["specificity"]
    assert all(metrics.defined_figures({0, 1, 2}, PAPER).values())
    assert not metrics.defined_figures({0, 1}, Task(classes=("clear", "tb"), positive="tb"))["auc_covid"]


def test_balanced_accuracy_is_sklearns_mean_recall():
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(8)
    y_true = rng.choice(3, 200, p=[0.1, 0.3, 0.6])  # imbalanced, as the paper's data
    proba = rng.dirichlet(np.ones(3), 200)
    point = metrics.point_metrics(y_true, proba, PAPER)["balanced_accuracy"]
    assert point == pytest.approx(balanced_accuracy_score(y_true, proba.argmax(axis=1)), abs=1e-15)
