"""Report pieces on hand-made inputs: the document renderer, comparison tables, the paper's own figures."""

import math
from html.parser import HTMLParser

from PIL import Image

from featx.evaluation.metrics import METRICS, PERCENT, PLAIN
from featx.evaluation.task import Task
from featx.study.compare import markdown_table
from featx.study.document import Document
from featx.study.formatting import percent
from featx.study.paper_report import PAPER, paper_table


def test_percent_formats_fractions_and_says_na_for_undefined():
    assert percent(0.12345) == "12.3" and percent(None) == "n/a" and percent(math.nan) == "n/a"
    assert PERCENT.with_interval(0.9, [0.85, 0.95], suffix=False) == "90.0 [85.0, 95.0]"
    assert PERCENT.with_interval(0.9, [0.85, 0.95], precise=True) == "90.00% [85.0, 95.0]"
    assert PLAIN.with_interval(0.9, [0.85, 0.95]) == "0.900 [0.850, 0.950]"
    assert PERCENT.with_interval(math.nan, [None, math.nan]) == "n/a% [n/a, n/a]"


def test_document_renders_markdown_and_escaped_self_contained_html(tmp_path):
    figure = tmp_path / "figures" / "f.png"
    figure.parent.mkdir()
    Image.new("RGB", (4, 3), (255, 0, 0)).save(figure)
    doc = Document("A <title>")
    doc.heading("Results")
    doc.paragraph("x < y & z")
    doc.bullets(["one", "two"])
    doc.table(["a", "b"], [[1, 2.5]])
    doc.image(figure, "caption")
    markdown, html = doc.write(tmp_path)
    assert markdown.read_text().splitlines() == [
        "# A &lt;title&gt;",
        "",
        "## Results",
        "",
        "x &lt; y &amp; z",
        "",
        "- one",
        "- two",
        "",
        "| a | b |",
        "|---|---|",
        "| 1 | 2.5 |",
        "",
        "![caption](figures/f.png)",
    ]
    text = html.read_text()
    assert "x &lt; y &amp; z" in text and "<title>A &lt;title&gt;</title>" in text

    class Images(HTMLParser):
        sources = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.sources.append(dict(attrs)["src"])

    parser = Images()
    parser.feed(text)
    assert len(parser.sources) == 1 and parser.sources[0].startswith("data:image/png;base64,")


def test_comparison_table_shows_intervals_and_na():
    row = {
        "phase": 2,
        "backbone": "efficientnet_lite0",
        "weights": "imagenet",
        "head": "logreg",
        "sampler": "none",
        "protocol": "patient",
        "input": "64x64",
        "fit_seconds": 1.25,
        "positive": "covid",
        "ece_positive": 0.0423,
        "auc_positive": 0.9,
        "auc_positive_low": 0.8,
        "auc_positive_high": 0.95,
    }
    values = {"accuracy": 0.9, "accuracy_2class": 0.95, "sensitivity": 0.8, "specificity": math.nan}
    for key in set(METRICS) - {"auc_positive"}:
        value = values.get(key, 0.5)
        row.update({key: value, f"{key}_low": value - 0.05, f"{key}_high": value + 0.05})
    lines = markdown_table([row], Task(classes=("covid", "pneumonia", "normal"), positive="covid")).splitlines()
    assert lines[0].startswith(
        "| phase | backbone | weights | head | sampler | protocol | input | 3-class acc | 2-class acc | covid sens "
        "| covid spec | AUC covid"
    )
    assert lines[0].endswith("| ECE covid | fit s |")
    assert lines[2].startswith(
        "| 2 | efficientnet_lite0 | imagenet | logreg | none | patient | 64x64 | 90.0 [85.0, 95.0] | "
        "95.0 [90.0, 100.0] | 80.0 [75.0, 85.0] | n/a [n/a, n/a] | 0.900 [0.800, 0.950] | "
    )
    assert lines[2].endswith(" | 0.042 | 1.2 |")


def test_paper_table_lists_the_papers_own_rows():
    assert paper_table("dataset2") == [["mobilenet_v2", 96.78, 94.72, 98.66, 96.46]]
    assert [row[0] for row in paper_table("dataset1")] == [b for (s, b) in PAPER if s == "dataset1"]
    assert paper_table("all") == []


def test_comparison_table_names_the_positive_class():
    row = {key: 0.5 for key in METRICS}
    row.update({f"{key}_{end}": 0.5 for key in list(row) for end in ("low", "high")})
    row.update(
        phase=2,
        backbone="b",
        weights="w",
        head="h",
        sampler="s",
        protocol="p",
        input="8x8",
        fit_seconds=1.0,
        ece_positive=0.1,
        positive="opacity",
    )
    header = markdown_table([row], Task(classes=("clear", "opacity"), positive="opacity")).splitlines()[0]
    assert "| acc (2 classes) | 2-class acc | opacity sens | opacity spec | AUC opacity |" in header
    assert header.endswith("| ECE opacity | fit s |")
