"""The reproduce report's "which differences are real" section on a real store: the paper's head under
imbalance strategies against none, paired, with a forest plot and a closing note."""

import shutil

import numpy as np
from PIL import Image

from featx.cli import main
from featx.data.labels import PAPER_CLASSES
from featx.evaluation.metrics import METRICS
from featx.evaluation.paired import ALPHA, PairedDifference, compare_paired
from featx.evaluation.results import list_results
from featx.evaluation.splits import Protocol
from featx.evaluation.summary import CVSummary
from featx.evaluation.task import Task
from featx.study.compare import difference_cells, difference_legend
from featx.study.document import markdown_text


def test_the_report_says_which_imbalance_strategies_differ_from_none(feature_data, tmp_path):
    dataset, shared = feature_data
    cache, out = tmp_path / "cache", tmp_path / "report"
    shutil.copytree(shared, cache)
    argv = "reproduce --models efficientnet_lite0 --subsets all --input-size 64x64 --folds 5 --no-audit -q".split()
    argv += ["--strategies", "none", "class-weight", "oversample", "--repeats", "2"]
    assert main([*argv, "--data", str(dataset.root), "--cache", str(cache), "--out", str(out)]) == 0
    markdown = (out / "report.md").read_text()
    assert "## Which differences are real: imbalance strategies" in markdown
    assert "### all, efficientnet_lite0 + mlp1000-750, patient folds" in markdown
    # the table's cells are the paired differences of the stored predictions
    stored = [
        result
        for result in list_results(cache, dataset.id)
        if result.variant.head == "mlp1000-750"
        and result.variant.protocol == Protocol(group_by="patient", folds=5, seed=0)
        and result.variant.head_seed is None
    ]
    by_sampler = {result.variant.sampler: result for result in stored}
    assert set(by_sampler) == {"none", "class-weight", "oversample"}
    differences = compare_paired([by_sampler[name] for name in ("none", "class-weight", "oversample")])
    unit = METRICS["accuracy"].unit
    for difference in differences:
        if difference.metric == "accuracy":
            low, high = (unit.difference(end, suffix=False) for end in difference.interval)
            cell = f"{unit.difference(difference.difference, suffix=False)} [{low}, {high}]"
            assert markdown_text(cell) in markdown
    note = next(
        line
        for line in markdown.splitlines()
        if line.startswith("all, efficientnet_lite0 + mlp1000-750, patient folds:")
    )
    assert all(sampler in note for sampler in ("class-weight", "oversample"))  # each said to differ or not
    assert ("differ from none:" in note) == any(d.distinguishable for d in differences)
    # 30 images per class: weighting or oversampling the classes changes nothing, and the report says so
    assert all(d.difference == 0 and d.p_adjusted == 1 for d in differences)
    assert "no variant differs from none" in note
    forest = next((out / "figures").glob("differences-all-*.png"))
    with Image.open(forest) as picture:
        assert picture.size[0] > 300 and picture.getextrema() != ((255, 255), (255, 255), (255, 255), (255, 255))
    # the spread: the same variant over the split sets of seeds 0 and 1 (head seed 0) and under head seeds 0 and 1
    spread = [
        result
        for result in list_results(cache, dataset.id)
        if result.variant.head == "mlp1000-750" and result.variant.head_seed is not None
    ]
    assert sorted((r.variant.protocol.seed, r.variant.head_seed) for r in spread) == [(0, 1), (1, 0)]
    by_seeds = {(r.variant.protocol.seed, r.variant.seed_of_head): r for r in [*spread, by_sampler["none"]]}
    section = markdown.split("## How much the figures move: the split or the head's seed")[1].split("\n## ")[0]
    name = METRICS["accuracy"].abbreviation_for(CVSummary.of(by_sampler["none"], reused=True).task)
    accuracy = next(line for line in section.splitlines() if line.startswith(f"| {name} |"))
    cells = [cell.strip() for cell in accuracy.strip("|").split("|")]
    unit = METRICS["accuracy"].unit
    split_values = [CVSummary.of(by_seeds[seeds], reused=True).metrics["accuracy"] for seeds in ((0, 0), (1, 0))]
    seed_values = [CVSummary.of(by_seeds[seeds], reused=True).metrics["accuracy"] for seeds in ((0, 0), (0, 1))]
    assert cells[1] == ", ".join(unit.figure(value) for value in split_values)
    assert cells[2] == unit.figure(np.std(split_values))
    assert cells[3] == ", ".join(unit.figure(value) for value in seed_values)
    assert "Head seeds against head seed 0, paired:" in section


def test_an_interval_that_excludes_zero_without_an_adjusted_p_below_alpha_is_marked_apart():
    task = Task(classes=PAPER_CLASSES, positive="covid")

    def difference(variant, interval, p_adjusted):
        return PairedDifference(
            metric="accuracy",
            baseline="none",
            variant=variant,
            difference=sum(interval) / 2,
            interval=interval,
            level=0.95,
            test="mcnemar",
            statistic=1.0,
            p_value=p_adjusted / 3,
            p_adjusted=p_adjusted,
            distinguishable=p_adjusted < ALPHA,
        )

    differences = (
        difference("real", (0.01, 0.03), 0.001),
        difference("unadjusted-only", (0.005, 0.02), 0.09),
        difference("noise", (-0.01, 0.02), 0.8),
    )
    _, rows = difference_cells(differences, task)
    marks = {row[0]: row[1].rsplit("]", 1)[1] for row in rows}
    assert marks == {"real": "", "unadjusted-only": " ~*", "noise": " ~"}
    assert any(
        line.startswith("~ : not distinguishable") and "~* : the same" in line
        for line in difference_legend(differences, task)
    )
