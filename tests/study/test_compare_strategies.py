"""The reproduce report's "which differences are real" section on a real store: the paper's head under
imbalance strategies against none, paired, with a forest plot and a closing note."""

import shutil

from PIL import Image

from featx.cli import main
from featx.evaluation.metrics import METRICS
from featx.evaluation.paired import compare_paired
from featx.evaluation.results import list_results
from featx.study.document import markdown_text


def test_the_report_says_which_imbalance_strategies_differ_from_none(feature_data, tmp_path):
    dataset, shared = feature_data
    cache, out = tmp_path / "cache", tmp_path / "report"
    shutil.copytree(shared, cache)
    argv = "reproduce --models efficientnet_lite0 --subsets all --input-size 64x64 --folds 5 --no-audit -q".split()
    argv += ["--strategies", "none", "class-weight", "oversample"]
    assert main([*argv, "--data", str(dataset.root), "--cache", str(cache), "--out", str(out)]) == 0
    markdown = (out / "report.md").read_text()
    assert "## Which differences are real: imbalance strategies" in markdown
    assert "### all, efficientnet_lite0 + mlp1000-750, patient folds" in markdown
    # the table's cells are the paired differences of the stored predictions
    stored = [
        result
        for result in list_results(cache, dataset.id)
        if result.variant.head == "mlp1000-750" and result.variant.protocol.group_by == "patient"
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
    assert "no strategy differs from none" in note
    forest = next((out / "figures").glob("differences-all-*.png"))
    with Image.open(forest) as picture:
        assert picture.size[0] > 300 and picture.getextrema() != ((255, 255), (255, 255), (255, 255), (255, 255))
