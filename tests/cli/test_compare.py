"""``featx compare --baseline`` on real stores: paired differences, their intervals and adjusted p-values,
in the table, the CSV and ``--json``; refusals of variants that do not pair."""

import csv
import json
import math
import shutil

import pytest

from featx.cli import main
from featx.cli.output import finite
from featx.evaluation.metrics import METRICS
from featx.evaluation.paired import PairedDifference
from featx.study.compare import difference_record
from tests.realdata import LITE0_64

STORE = ["--model", LITE0_64.backbone, "--input-size", "64x64", "--folds", "5", "-q"]


def _strict_json(text: str) -> dict:
    """JSON that holds no NaN or infinity (Python's reader would accept them)."""

    def refuse(constant):
        raise AssertionError(f"non-finite number {constant} in the JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def fitted(feature_data, tmp_path_factory):
    """The real Lite0 store of 90 radiographs in a cache of its own, with a random forest fitted under head
    seeds 0 (the folds' seed) and 1, and a logistic regression, all on the same saved 5-fold patient split."""
    dataset, cache = feature_data
    target = tmp_path_factory.mktemp("compare") / "cache"
    # the store only: the results and splits other modules leave in the shared cache are not this test's variants
    shutil.copytree(cache, target, ignore=shutil.ignore_patterns("results", "splits"))
    data = ["--data", str(dataset.root), "--cache", str(target)]
    for head in (["--head", "rf"], ["--head", "rf", "--head-seed", "1"], ["--head", "logreg"]):
        assert main(["fit", *head, *STORE, *data]) == 0
    return data, target


def _compare(data, capsys, *options):
    assert main(["compare", *data, "--json", *options]) == 0
    captured = capsys.readouterr()
    return _strict_json(captured.out), captured.err


def test_compare_with_a_baseline_shows_paired_differences_in_the_table_the_csv_and_the_json(fitted, capsys, tmp_path):
    data, _ = fitted
    payload, table = _compare(data, capsys, "--baseline", "--csv", str(tmp_path / "c.csv"))
    names = [row["variant"] for row in payload["rows"]]
    assert len(names) == 3 and "-logreg-" in names[0]
    assert payload["baseline"] == names[0] and payload["correction"] == "holm"  # the first shown
    differences = payload["differences"]
    assert [(d["variant"], d["metric"]) for d in differences] == [(n, m) for n in names[1:] for m in METRICS]
    for record in differences:
        assert record["baseline"] == names[0]
        assert set(record) == {field for field in PairedDifference.__dataclass_fields__}
        low, high = record["interval"]
        assert low <= record["difference"] <= high
        assert record["p_value"] <= record["p_adjusted"] <= 1  # Holm never lowers a p-value
        assert record["distinguishable"] == (record["p_adjusted"] < 0.05)
    tests = {d["metric"]: d["test"] for d in differences}
    assert tests["accuracy"].startswith("mcnemar") and tests["auc_positive"].startswith("delong")
    assert tests["balanced_accuracy"] == "sign-flip"
    # the rows carry them too, and the CSV: the baseline's own difference is 0
    assert payload["rows"][0]["accuracy_vs_baseline"] == 0
    by_name = {row["variant"]: row for row in csv.DictReader(open(tmp_path / "c.csv"))}
    first = differences[0]
    assert float(by_name[first["variant"]]["accuracy_vs_baseline"]) == pytest.approx(first["difference"])
    assert float(by_name[first["variant"]]["accuracy_p_adjusted"]) == pytest.approx(first["p_adjusted"])
    # the table: one row per compared variant, a difference [interval] and an adjusted p per headline figure
    header = next(line for line in table.splitlines() if line.startswith("| variant |"))
    assert "| 3-class acc vs baseline [95%] | p adj 3-class acc |" in header
    assert header.count("vs baseline [95%]") == len(METRICS)
    assert len([line for line in table.splitlines() if line.startswith("| p2-")]) == 2
    assert "Holm" in table and "not distinguishable from noise" in table
    assert "optimistic (selection)" in table and payload["best"]["out_of"] == 3


def test_the_same_forest_under_two_head_seeds_is_not_distinguishable(fitted, capsys):
    data, _ = fitted
    payload, table = _compare(data, capsys, "--baseline", "rf-none-patient-k5-s0-h1")
    rows = {row["variant"]: row for row in payload["rows"]}
    seeded = payload["baseline"]
    assert "-h1-" in seeded and "| rf (head seed 1) |" in table
    other_forest = next(name for name in rows if "-rf-" in name and name != seeded)
    against = [d for d in payload["differences"] if d["variant"] == other_forest]
    assert any(d["difference"] != 0 for d in against)  # the head seed does change the forest
    assert len(against) == len(METRICS)
    assert all(not d["distinguishable"] and d["p_adjusted"] > 0.05 for d in against)
    line = next(line for line in table.splitlines() if line.startswith(f"| {other_forest} |"))
    assert line.count(" ~") == len(METRICS)


def test_baseline_names_that_match_none_or_several_variants_are_refused(fitted, capsys):
    data, _ = fitted
    assert main(["compare", *data, "--baseline", "rf-none-patient-k5-s0-"]) == 1
    err = capsys.readouterr().err
    assert "--baseline" in err and "names several variants" in err and "Traceback" not in err
    assert main(["compare", *data, "--baseline", "svm"]) == 1
    assert "names none of the variants shown" in capsys.readouterr().err


def test_variants_on_another_split_set_are_refused_with_both_named(fitted, capsys, tmp_path):
    data, cache = fitted
    mixed = tmp_path / "cache"
    shutil.copytree(cache, mixed)
    data = [data[0], data[1], "--cache", str(mixed)]
    assert main(["fit", "--head", "logreg", *STORE[:-3], "--folds", "3", "-q", *data]) == 0
    capsys.readouterr()
    assert main(["compare", *data]) == 0  # side by side, as before
    capsys.readouterr()
    assert main(["compare", *data, "--baseline", "logreg-none-patient-k5"]) == 1
    err = capsys.readouterr().err
    assert "cannot pair" in err and "different number of folds (5 vs 3)" in err and "saved folds" in err
    assert "Traceback" not in err


def test_undefined_and_infinite_numbers_of_a_difference_are_written_as_null():
    undefined = PairedDifference(
        metric="sensitivity",
        baseline="a",
        variant="b",
        difference=math.nan,
        interval=(math.nan, math.nan),
        level=0.95,
        test="delong",
        statistic=math.inf,
        p_value=math.nan,
        p_adjusted=math.nan,
        distinguishable=False,
    )
    record = finite(difference_record(undefined))
    assert record["p_value"] is None and record["statistic"] is None and record["interval"] == [None, None]
    assert _strict_json(json.dumps(record, allow_nan=False))["metric"] == "sensitivity"


def test_repeated_cross_validation_is_fitted_once_per_split_set_and_compared_by_the_corrected_t(
    fitted, capsys, tmp_path
):
    data, cache = fitted
    repeated = tmp_path / "cache"
    shutil.copytree(cache, repeated)
    data = [data[0], data[1], "--cache", str(repeated)]
    for head in ("logreg", "rf"):
        assert main(["fit", "--head", head, *STORE, "--repeats", "3", *data]) == 0
    splits = sorted(path.name for path in repeated.rglob("splits/*.json"))
    assert splits == ["patient-k5-s0.json", "patient-k5-s1.json", "patient-k5-s2.json"]  # each saved once, shared
    capsys.readouterr()
    payload, table = _compare(data, capsys, "--repeats", "3", "--baseline")
    names = [row["variant"] for row in payload["rows"]]
    assert len(names) == 2 and all("-s0-" in name for name in names)  # the head-seed forest is on one split set only
    assert "Left out (not on all 3 split sets)" in table and "head seed 1" in table
    assert {d["test"] for d in payload["differences"]} == {"corrected-t"}
    assert len(payload["differences"]) == len(METRICS)
    for row in payload["rows"]:
        assert row["repeats"] == 3 and row["accuracy_repeat_std"] > 0  # the split moves the figure
    assert main(["compare", *data, "--repeats", "4"]) == 1
    assert "featx fit --seed 0 --repeats 4" in capsys.readouterr().err
    later, _ = _compare(data, capsys, "--repeats", "2", "--seed", "1", "--baseline")  # split sets 1 and 2
    assert all("-s1-" in row["variant"] and row["repeats"] == 2 for row in later["rows"])
    assert main(["compare", *data, "--seed", "1"]) == 1
    assert "give --repeats R with it" in capsys.readouterr().err
