"""`reproduce` + audit + report on a small real subset, a fast backbone and a small input."""

import json
from html.parser import HTMLParser

import pytest
from PIL import Image

from featx.cli import main
from featx.data.labels import PAPER_CLASSES
from featx.evaluation.metrics import summarize
from featx.evaluation.results import load_result
from featx.evaluation.task import Task
from featx.study.document import markdown_text


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.images, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def _reproduce_args(dataset, cache, out) -> list:
    return [
        *"reproduce --models efficientnet_lite0 --subsets all --input-size 64x64 --folds 5 -q".split(),
        "--data",
        str(dataset.root),
        "--cache",
        str(cache),
        "--out",
        str(out),
    ]


@pytest.fixture(scope="module")
def report(feature_data, tmp_path_factory):
    dataset, cache = feature_data
    out = tmp_path_factory.mktemp("report")
    code = main(_reproduce_args(dataset, cache, out) + ["--json"])
    assert code == 0
    return out, cache, dataset


def test_reproduce_json_names_the_report_and_every_run(report, capsys, tmp_path):
    _, cache, dataset = report
    out = tmp_path / "again"
    assert main(_reproduce_args(dataset, cache, out) + ["--no-audit", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["report_md"] == str(out / "report.md") and len(payload["runs"]) == 2
    assert {run["protocol"] for run in payload["runs"]} == {"image", "patient"}


def test_report_numbers_are_the_metrics_of_the_stored_predictions(report):
    out, cache, dataset = report
    markdown = (out / "report.md").read_text()
    stored = [load_result(p) for p in (cache / dataset.id / "results").glob("p2-efficientnet_lite0-*-k5-*.json")]
    results = [
        r
        for r in stored
        if r.variant.head == "mlp1000-750"
        and r.variant.sampler == "none"
        and r.variant.head_params == {}
        and r.variant.protocol.seed == 0
        and r.variant.head_seed is None
    ]  # other tests share this cache; the spread's runs carry a head seed
    assert sorted(r.variant.protocol.group_by for r in results) == ["image", "patient"]
    for result in results:
        metrics = summarize(
            result.y_true, result.proba, result.fold, Task(classes=PAPER_CLASSES, positive="covid"), result.groups
        )
        low, high = metrics["ci95"]["accuracy_3class"]
        cell = f"{metrics['accuracy_3class'] * 100:.1f} [{low * 100:.1f}, {high * 100:.1f}]"
        assert markdown_text(cell) in markdown
    assert "The paper's own figures for" not in markdown  # the subset is 'all': the paper has no row for it
    by_default = ("## Which differences are real: imbalance strategies", "## How much the figures move")
    for heading in ("## Summary", "## Method", "## Confound audit", "## Provenance", *by_default):
        assert heading in markdown
    assert "source-probe AUC" in markdown and "central lung field blacked out" in markdown
    assert "radiographs of other classes from the sources that hold the covid images" in markdown


def test_report_html_parses_and_embeds_pngs_that_open(report):
    out, _, _ = report
    parser = _Collector()
    parser.feed((out / "report.html").read_text())
    assert "table" in parser.tags and len(parser.images) == 3  # two figures per subset, the strategies' forest plot
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)
    for png in (out / "figures").glob("*.png"):
        with Image.open(png) as picture:
            assert picture.size[0] > 100 and picture.getextrema() != ((255, 255), (255, 255), (255, 255), (255, 255))


def test_second_reproduce_reuses_every_result(report, capsys, tmp_path):
    _, cache, dataset = report
    out = tmp_path / "second"
    before = sorted(p.stat().st_mtime_ns for p in (cache / dataset.id / "results").glob("*.json"))
    assert main(_reproduce_args(dataset, cache, out) + ["--no-audit"]) == 0
    after = sorted(p.stat().st_mtime_ns for p in (cache / dataset.id / "results").glob("*.json"))
    assert before == after


def _random_init_needed():
    from featx.backbones.registry import get_spec
    from featx.backbones.weights import imagenet_availability

    available, where = imagenet_availability(get_spec("mobilenet_v2"))
    if available:
        pytest.skip(f"MobileNetV2's ImageNet weights are here ({where}): it does not fall back")


def test_by_default_a_backbone_without_its_imagenet_weights_is_skipped_not_run_on_random_weights(
    feature_data, tmp_path, capsys
):
    _random_init_needed()
    dataset, cache = feature_data
    args = _reproduce_args(dataset, cache, tmp_path / "out")
    args[args.index("efficientnet_lite0")] = "mobilenet_v2 efficientnet_lite0"
    args = " ".join(args).split() + ["--no-audit", "--json"]
    assert main(args) == 0
    payload = json.loads(capsys.readouterr().out)
    assert (
        list(payload["skipped"]) == ["mobilenet_v2"] and "--fallback random-init" in payload["skipped"]["mobilenet_v2"]
    )
    assert {run["variant"]["backbone"] for run in payload["runs"]} == {"efficientnet_lite0"}
    assert not any(run["degenerate"] for run in payload["runs"])
    assert "mobilenet_v2 was skipped: ImageNet weights unavailable here" in (tmp_path / "out" / "report.md").read_text()


def test_the_report_marks_the_rows_of_a_random_init_backbone_whose_features_are_degenerate(
    feature_data, tmp_path, capsys
):
    _random_init_needed()
    dataset, _ = feature_data
    args = _reproduce_args(dataset, tmp_path / "cache", tmp_path / "out")
    args[args.index("efficientnet_lite0")] = "mobilenet_v2"
    args[args.index("64x64")] = "32x32"
    assert main([*args, "--fallback", "random-init", "--no-audit", "--folds", "2", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["runs"]) == 2 and all(run["degenerate"] for run in payload["runs"])
    assert all(run["degenerate_reasons"][0].startswith("features vanish") for run in payload["runs"])
    markdown = (tmp_path / "out" / "report.md").read_text()
    summary = [line for line in markdown.splitlines() if line.startswith("all, mobilenet_v2 (RANDOM-INIT")]
    assert len(summary) == 2 and all("not a result" in line and "accuracy" not in line for line in summary)
    rows = [line for line in markdown.splitlines() if line.startswith("| mobilenet_v2 | random-init |")]
    assert len(rows) == 2 and all("degenerate features (features vanish" in row and "[" not in row for row in rows)
