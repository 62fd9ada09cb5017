"""The study commands' wrong answers: reproduce on labels that are not the paper's, the audit's hint on data
without patient ids (and every option a hint names exists), and differences written in their own unit."""

from __future__ import annotations

import ast
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from featx.cli import main
from featx.cli.app import build_parser
from featx.evaluation.metrics import METRICS
from featx.evaluation.task import Task
from featx.study.validate import Validation, compare, external_metrics
from featx.study.validation_report import validation_report
from tests.realdata import SHARED_DATA, pick_rows, requires_data

REPO = Path(__file__).resolve().parents[2]
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _subparser(parser, command: str):
    for word in command.split():
        parser = _commands(parser)[word]
    return parser


def _commands(parser) -> dict:
    return next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices


NAMED_COMMAND = re.compile(r"featx (data fetch|" + "|".join(set(_commands(build_parser())) - {"data"}) + r")\b")


def _options(command: str) -> set:
    return {flag for action in _subparser(build_parser(), command)._actions for flag in action.option_strings}


def _check_hint(text: str, command: str) -> list[str]:
    """The options ``text`` names that the command it speaks of (``featx CMD`` in it, else ``command``) lacks."""
    named = NAMED_COMMAND.search(text)
    options = _options(named.group(1) if named else command)
    return [option for option in OPTION.findall(text) if option not in options]


# The modules whose messages this change owns, and the command whose options a bare ``--x`` in them names.
HINT_MODULES = {
    "featx/study/audit.py": "audit",
    "featx/study/audit_report.py": "audit",
    "featx/study/reproduce.py": "reproduce",
    "featx/study/paper_report.py": "reproduce",
    "featx/study/validation_report.py": "validate",
    "featx/cli/commands/audit.py": "audit",
    "featx/cli/commands/reproduce.py": "reproduce",
    "featx/cli/commands/data.py": "data fetch",
    "featx/data/fetch.py": "data fetch",
    "featx/data/dataset.py": "extract",
}


@pytest.mark.parametrize("module", list(HINT_MODULES))
def test_every_option_a_message_names_exists(module):
    tree = ast.parse((REPO / module).read_text())
    strings = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    wrong = {text[:80]: _check_hint(text, HINT_MODULES[module]) for text in strings if "--" in text}
    assert not {text: bad for text, bad in wrong.items() if bad}


def test_the_hint_check_catches_an_option_the_command_lacks():
    assert _check_hint("or group by image with --group-by image", "audit") == ["--group-by"]
    assert _check_hint("train one with featx train --finetune", "audit") == []


# --- audit on data without patient ids ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def class_folders(tmp_path_factory):
    """Class sub-folders 'opacity' and 'clear' of real radiographs: no patient ids."""
    if not (SHARED_DATA / "metadata.csv").exists():
        pytest.skip("no real data")
    folder = tmp_path_factory.mktemp("no_patients")
    for row in pick_rows({"covid": 6, "bacterial": 6, "normal": 12}, seed=7).itertuples():
        target = folder / ("clear" if row.label == "normal" else "opacity") / row.filename.split("/")[-1]
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(SHARED_DATA / row.filename, target)
    return folder


@requires_data
def test_audit_without_patient_ids_is_refused_before_any_work_with_a_hint_it_can_follow(
    class_folders, tmp_path, capsys
):
    cache = tmp_path / "cache"
    args = ["audit", "--model", "efficientnet_lite0", "--input-size", "64x64", "--data", str(class_folders)]
    assert main([*args, "--cache", str(cache), "-q"]) == 1
    err = capsys.readouterr().err
    assert "24 of 24 images" in err and "patient_id" in err and "Traceback" not in err
    assert OPTION.findall(err) and not _check_hint(err, "audit")
    assert not cache.exists() or not any(cache.rglob("*.h5")), "features were extracted before the refusal"


# --- reproduce on labels that are not the paper's --------------------------------------------------------------------


@pytest.fixture(scope="module")
def opacity_manifest(tmp_path_factory):
    """A metadata.csv of real radiographs labelled 'opacity' / 'clear', with patient ids."""
    if not (SHARED_DATA / "metadata.csv").exists():
        pytest.skip("no real data")
    rows = pick_rows({"covid": 6, "bacterial": 6, "normal": 12}, seed=8)
    folder = tmp_path_factory.mktemp("opacity")
    (folder / "images").mkdir()
    for filename in rows["filename"]:
        shutil.copyfile(SHARED_DATA / filename, folder / filename)
    rows.assign(label=np.where(rows["label"] == "normal", "clear", "opacity")).to_csv(
        folder / "metadata.csv", index=False
    )
    return folder


def _reproduce(folder: Path, cache: Path, out: Path, *extra) -> list[str]:
    return [
        *"reproduce --models efficientnet_lite0 --input-size 64x64 --folds 3 -q --json".split(),
        *["--data", str(folder), "--cache", str(cache), "--out", str(out), *extra],
    ]


@requires_data
@pytest.mark.parametrize("layout", ["manifest with patient ids", "class folders"])
def test_reproduce_runs_on_any_labels_and_says_what_it_left_out(
    layout, opacity_manifest, class_folders, tmp_path, capsys
):
    folder = opacity_manifest if layout.startswith("manifest") else class_folders
    assert main(_reproduce(folder, tmp_path / "cache", tmp_path / "out", "--subsets", "all")) == 0
    payload = json.loads(capsys.readouterr().out)
    markdown = Path(payload["report_md"]).read_text()
    assert "The paper's figures are left out" in markdown and "clear, opacity" in markdown
    protocols = sorted(run["protocol"] for run in payload["runs"])
    if layout.startswith("manifest"):
        assert protocols == ["image", "patient"] and payload["notes"] == [] and payload["audit"] is not None
        assert "## Confound audit" in markdown
    else:
        assert protocols == ["image"] and payload["audit"] is None
        assert any("only the image-level protocol ran" in note.lower() for note in payload["notes"])
        assert any("confound audit was left out" in note for note in payload["notes"])
        assert all(note in markdown for note in payload["notes"])
    for run in payload["runs"]:  # each figure in the report is the run's own
        low, high = run["ci95"]["accuracy"]
        assert f"{run['accuracy'] * 100:.1f} [{low * 100:.1f}, {high * 100:.1f}]" in markdown
        assert run.get("accuracy_3class") is None


@requires_data
def test_reproduce_of_the_paper_subsets_on_other_labels_is_refused_before_any_fit(opacity_manifest, tmp_path, capsys):
    cache = tmp_path / "cache"
    assert main(_reproduce(opacity_manifest, cache, tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert "dataset1 needs the labels covid, pneumonia, normal" in err and "Traceback" not in err
    assert not cache.exists() or not any(cache.rglob("*.h5")), "features were extracted before the refusal"
    assert not (tmp_path / "out").exists()


# --- differences in their own unit -----------------------------------------------------------------------------------


def _table_row(markdown: str, first_cell: str) -> list[str]:
    for line in markdown.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r}")


@pytest.mark.parametrize("seed", range(4))
def test_validation_differences_are_in_points_and_auc_units(seed, tmp_path):
    rng = np.random.default_rng(seed)
    task = Task(classes=("covid", "normal"), positive="covid")
    y = np.repeat([0, 1], 40)
    signal = np.where(y == 0, 1.0, 0.0)

    def proba(noise):
        p = np.clip(signal + rng.normal(0, noise, len(y)), 0.01, 0.99)
        return np.column_stack([p, 1 - p])

    groups = np.array([f"p{i}" for i in range(len(y))])
    external_proba = proba(rng.uniform(0.2, 0.5))
    external = external_metrics(y, external_proba, groups, task)
    cv = external_metrics(y, proba(rng.uniform(0.6, 1.2)), groups, task)
    comparison = compare(external, cv)
    predictions = pd.DataFrame(
        {
            "image_id": groups,
            "label": np.array(task.classes)[y],
            "p_covid": external_proba[:, 0],
            "p_normal": external_proba[:, 1],
            "predicted": np.array(task.classes)[external_proba.argmax(axis=1)],
        }
    )
    validation = Validation(
        model_dir="model",
        task=task,
        data="external",
        images=len(y),
        skipped=[],
        excluded_overlap=[],
        external=external,
        cv=cv,
        comparison=comparison,
        predictions=predictions,
    )
    markdown = validation_report(validation, tmp_path)[0].read_text()
    names = {name: metric.label_for(task) for name, metric in METRICS.items()}
    auc = comparison["auc_positive"]["difference"]
    assert _table_row(markdown, names["auc_positive"])[3] == f"{auc:+.3f}"
    for name in ("accuracy", "sensitivity", "specificity"):
        assert _table_row(markdown, names[name])[3] == f"{comparison[name]['difference'] * 100:+.1f} points"
    auc_sentence = next(line for line in markdown.splitlines() if line.startswith("ROC AUC (covid vs rest):"))
    assert f"{abs(auc):.3f} {'lower' if auc < 0 else 'higher'}" in auc_sentence and "points" not in auc_sentence
