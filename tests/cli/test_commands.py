"""The command line as a user meets it: three doors, --json everywhere, exit codes, help, defaults."""

import json
import subprocess
import sys

import pytest

from featx import __version__
from featx.cli import main
from featx.cli.commands import COMMANDS
from tests.realdata import REPO, run_featx


def test_three_doors_run_the_same_cli(tmp_path):
    module = run_featx("--version", cwd=tmp_path)
    shim = subprocess.run(
        [sys.executable, str(REPO / "cli.py"), "--version"], capture_output=True, text=True, cwd=tmp_path
    )
    assert module.returncode == shim.returncode == 0
    assert module.stdout.strip() == shim.stdout.strip() == f"featx {__version__}"


def test_help_lists_every_command_and_the_exit_codes_without_importing_tensorflow():
    probe = (
        "import sys; from featx.cli import build_parser; text = build_parser().format_help(); "
        "print('tensorflow' in sys.modules or 'keras' in sys.modules); print(text)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    imported, text = result.stdout.split("\n", 1)
    assert imported == "False"
    for command in COMMANDS:
        assert command.__name__.rsplit(".", 1)[-1] in text
    for code in ("0", "1", "2", "3", "130"):
        assert f"  {code}  " in text


COMMAND_LINES = [
    ["data", "fetch"] if name == "data" else [name]
    for name in (command.__name__.rsplit(".", 1)[-1] for command in COMMANDS)
]


@pytest.mark.parametrize("command", COMMAND_LINES, ids=" ".join)
def test_each_command_has_a_summary_defaults_and_examples(command, capsys):
    with pytest.raises(SystemExit) as caught:
        main([*command, "--help"])
    assert caught.value.code == 0
    text = capsys.readouterr().out
    assert "examples:\n  featx " + " ".join(command) in text and "--json" in text
    if command[0] != "models":
        assert "(default: " in text


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["extract", "--batch-size", "abc", "--model", "efficientnet_lite0"])
    assert caught.value.code == 2
    with pytest.raises(SystemExit) as caught:
        main(["no-such-command"])
    assert caught.value.code == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["extract", "--model", "efficientnet_lite0", "--batch-size", "0"],
            "--batch-size must be a whole number within 1..65536, got '0'",
        ),
        (
            ["extract", "--model", "efficientnet_lite0", "--batch-size", "-1"],
            "--batch-size must be a whole number within 1..65536, got '-1'",
        ),
        (
            ["extract", "--model", "efficientnet_lite0", "--input-size", "4x4"],
            "--input-size must be WIDTHxHEIGHT, each side within 8..4096, got '4x4'",
        ),
        (["fit", "--folds", "1"], "--folds must be a whole number within 2..1000, got '1'"),
        (["fit", "--epochs", "0"], "--epochs must be a whole number within 1..100000, got '0'"),
        (["fit", "--lr", "0"], "--lr must be a finite number above 0 and at most 3.40282e+38, got '0'"),
        (["fit", "--seed", "-2"], "--seed must be a whole number within 0..4294967295, got '-2'"),
        (
            ["predict", "--model-dir", "m", "x.png", "--batch-size", "0"],
            "--batch-size must be a whole number within 1..65536, got '0'",
        ),
        (["reproduce", "--folds", "1"], "--folds must be a whole number within 2..1000, got '1'"),
    ],
)
def test_out_of_range_values_are_refused_where_parsed(args, message, tmp_path, capsys):
    assert main([*args, "--cache", str(tmp_path)] if args[0] != "predict" else args) == 1
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_missing_default_data_folder_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.delenv("FEATX_DATA", raising=False)
    result = run_featx("fit", "--head", "logreg", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "data folder data/cxr not found" in result.stderr
    assert "--data DIR" in result.stderr and "featx data fetch" in result.stderr


def test_featx_data_sets_the_default_data_folder(small_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FEATX_DATA", str(small_data))
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "-q"]) == 1
    assert f"No stored results for {small_data} [all]" in capsys.readouterr().err


def test_models_json_says_where_imagenet_weights_come_from(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty Keras folder: no downloaded weights
    assert main(["models", "--json"]) == 0
    entries = {entry["name"]: entry for entry in json.loads(capsys.readouterr().out)["backbones"]}
    assert entries["efficientnet_lite0"]["imagenet_available"] is True
    assert entries["xception"]["imagenet_available"] is False
    assert "xception_weights_tf_dim_ordering_tf_kernels_notop.h5" in entries["xception"]["imagenet_source"]
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "xception_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"x")
    assert main(["models", "--json"]) == 0
    entries = {entry["name"]: entry for entry in json.loads(capsys.readouterr().out)["backbones"]}
    assert entries["xception"]["imagenet_available"] is True
