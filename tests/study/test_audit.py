"""The audit's checks and its prose on small hand-made tables with known answers."""

import json

import numpy as np
import pandas as pd
import pytest

from featx.evaluation.task import Task
from featx.study.audit import (
    AdultCheck,
    Audit,
    ClassCalls,
    LungsMaskedControl,
    SiteSensitivity,
    SourceProbe,
    adult_check,
    image_sites,
    image_sources,
    leave_one_site_out,
    source_probe,
)
from featx.study.audit_report import add_audit_section, audit_summary
from featx.study.document import Document

PAPER = Task(classes=("covid", "pneumonia", "normal"), positive="covid")


def _table(rows):
    return pd.DataFrame(rows, columns=["label", "source", "url", "patient_id"])


def test_sources_and_sites_are_read_from_source_and_url():
    table = _table(
        [
            ["covid", "ieee8023/covid-chestxray-dataset@abc:images/1.png", "https://www.radiopaedia.org/case/1", "p1"],
            ["covid", "ieee8023/covid-chestxray-dataset@abc:images/2.png", "", "p2"],
            ["normal", "kermany (CC BY)", "", "k1"],
            ["normal", "", "", "k2"],
        ]
    )
    assert list(image_sources(table)) == [
        "ieee8023/covid-chestxray-dataset",
        "ieee8023/covid-chestxray-dataset",
        "kermany",
        "unknown",
    ]
    assert list(image_sites(table)) == ["radiopaedia.org", "ieee8023/covid-chestxray-dataset", "kermany", "unknown"]


def test_adult_check_counts_non_covid_images_of_covid_sources():
    table = _table(
        [
            ["covid", "cohen@1:a", "", "c1"],
            ["covid", "cohen@1:b", "", "c2"],
            ["pneumonia", "cohen@1:c", "", "c3"],
            ["normal", "cohen@1:d", "", "c4"],
            ["normal", "cohen@1:e", "", "c5"],
            ["pneumonia", "kermany", "", "k1"],
            ["normal", "kermany", "", "k2"],
        ]
    )
    called = np.eye(3)[[0, 0, 0, 0, 2, 0, 2]]  # columns covid, pneumonia, normal
    result = adult_check(table, called, PAPER)
    assert result.images == 3 and result.called_positive == 2
    assert result.fraction_called_positive == pytest.approx(2 / 3)
    assert result.by_class == {
        "pneumonia": ClassCalls(images=1, called_positive=1, total=2),
        "normal": ClassCalls(images=2, called_positive=1, total=3),
    }


def test_source_probe_finds_a_source_written_into_the_features():
    rng = np.random.default_rng(0)
    n = 40
    table = _table([["normal", "kermany" if i % 2 else "cohen@x:y", "", f"p{i}"] for i in range(n)])
    features = rng.normal(size=(n, 5))
    features[:, 0] += 4 * (np.arange(n) % 2)  # the source is visible in one feature
    visible = source_probe(features, table, "normal", folds=4)
    assert visible.auc > 0.95 and visible.sources == {"cohen": 20, "kermany": 20}
    hidden = source_probe(rng.normal(size=(n, 5)), table, "normal", folds=4)
    assert 0.2 < hidden.auc < 0.8
    single = source_probe(features, table.assign(source="kermany"), "normal")
    assert single.auc is None and single.to_json()["note"] == single.note


def test_leave_one_site_out_tests_each_large_site_on_its_own_images():
    rng = np.random.default_rng(1)
    rows, features = [], []
    for site, n in (("a.org", 20), ("b.org", 20), ("tiny.org", 3)):
        for i in range(n):
            rows.append(["covid", "cohen@1:x", f"https://{site}/{i}", f"{site}{i}"])
            features.append(rng.normal(size=4) + [6, 0, 0, 0])
    for i in range(40):
        rows.append(["normal", "kermany", "", f"k{i}"])
        features.append(rng.normal(size=4))
    result = leave_one_site_out(np.array(features), _table(rows), PAPER, min_positive=15)
    assert [row.site for row in result] == ["a.org", "b.org"]  # tiny.org has too few covid images
    assert all(row.positive_images == 20 and row.sensitivity > 0.8 for row in result)


@pytest.fixture
def audit():
    return Audit(
        task=PAPER,
        backbone="efficientnet_lite0",
        weights="imagenet",
        input_size=(64, 64),
        head="logreg",
        protocol="patient",
        folds=5,
        split_file="s.json",
        dataset="d [all]: 10 images",
        source_probe=(
            SourceProbe(label="normal", sources={"kermany": 8, "cohen": 2}, auc=0.98, compared=("kermany", "cohen")),
            SourceProbe(label="pneumonia", sources={"kermany": 9}, auc=None, note="one source"),
        ),
        lungs_masked=LungsMaskedControl(
            accuracy=0.9, accuracy_masked=0.8, auc_positive=0.95, auc_positive_masked=0.9, chance=0.5
        ),
        leave_one_site_out=(SiteSensitivity(site="a.org", positive_images=20, sensitivity=0.75),),
        adult_check=AdultCheck(
            images=4,
            called_positive=3,
            fraction_called_positive=0.75,
            by_class={
                "pneumonia": ClassCalls(images=2, called_positive=2, total=9),
                "normal": ClassCalls(images=2, called_positive=1, total=5),
            },
        ),
    )


def test_summary_says_what_each_check_found(audit):
    lines = audit_summary(audit)
    assert len(lines) == 3  # the one-source class has no probe sentence
    assert "tell kermany from cohen images apart with ROC AUC 0.980" in lines[0]
    assert "accuracy is 80.0% (vs 90.0% with the lungs; majority-class chance 50.0%)" in lines[1]
    assert "Of 4 radiographs of other classes from the sources that hold the covid images" in lines[2]
    assert "calls 3 (75.0%) covid" in lines[2]
    assert "WARNING" in lines[2]


def test_section_renders_every_table(audit, tmp_path):
    doc = Document("t")
    add_audit_section(doc, audit)
    markdown = doc.markdown(tmp_path)
    assert "| normal | kermany (8), cohen (2) | 0.980 |" in markdown
    assert "| pneumonia | kermany (9) | n/a |" in markdown
    assert "| central lung field blacked out | 80.0 | 0.900 |" in markdown
    assert "| a.org | 20 | 75.0 |" in markdown
    assert "| normal | 2 | 1 | 5 |" in markdown
    payload = json.loads(json.dumps(audit.to_json()))  # the JSON keeps the form audit --json always printed
    assert payload["input_size"] == [64, 64]
    assert payload["source_probe"] == [
        {"class": "normal", "sources": {"kermany": 8, "cohen": 2}, "auc": 0.98, "compared": ["kermany", "cohen"]},
        {"class": "pneumonia", "sources": {"kermany": 9}, "auc": None, "note": "one source"},
    ]
    assert payload["leave_one_site_out"] == [{"site": "a.org", "positive_images": 20, "sensitivity": 0.75}]
    assert payload["adult_check"]["by_class"]["normal"] == {"images": 2, "called_positive": 1, "total": 5}
    assert payload["lungs_masked"]["chance"] == 0.5
