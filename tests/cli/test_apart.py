"""Outputs never overlap inputs: for every command, every output option (its type says so) against
every input option (``featx.cli.options.INPUTS``), an output inside an input and an input inside an
output are refused before any work, exit 1, naming both options."""

from __future__ import annotations

import pytest

from featx.cli.app import main
from featx.cli.options import INPUTS
from tests.cli.test_domains import commands, required_args


def pairs():
    """(command words, output flag, input flag, input positional or not) for every command."""
    for words, sub in commands():
        outputs = [action for action in sub._actions if hasattr(action.type, "output_flag")]
        inputs = [
            action for action in sub._actions if action.dest in INPUTS and not hasattr(action.type, "output_flag")
        ]
        for output in outputs:
            for source in inputs:
                yield pytest.param(words, output, source, id=f"{' '.join(words)} {output.dest} vs {source.dest}")


def argv_with(words, sub_required, output, source, out_path, in_path):
    """The command line: the two options under test, then the command's other required values."""
    argv = [*words]
    placed = set()
    for flag, path in ((output, out_path), (source, in_path)):
        if flag.option_strings:
            argv += [flag.option_strings[-1], str(path)]
            placed.add(flag.option_strings[-1])
    rest = []
    skip = False
    for token in sub_required:
        if skip:
            skip = False
            continue
        if token in placed:
            skip = True
            continue
        if token == "x.png" and not source.option_strings:
            rest.append(str(in_path))
            continue
        rest.append(token)
    return argv + rest


@pytest.mark.parametrize(("words", "output", "source"), list(pairs()))
@pytest.mark.parametrize("nesting", ["output inside input", "input inside output"])
def test_an_output_overlapping_an_input_is_refused_before_any_work(words, output, source, nesting, tmp_path, capsys):
    sub = next(parser for found, parser in commands() if found == words)
    outer, inner = tmp_path / "outer", tmp_path / "outer" / "inner"
    out_path, in_path = (inner, outer) if nesting == "output inside input" else (outer, inner)
    argv = argv_with(words, required_args(sub), output, source, out_path, in_path)
    assert main(argv) == 1, argv
    err = capsys.readouterr().err
    assert "overlaps" in err and output.type.output_flag in err and "Traceback" not in err, err
    assert sorted(tmp_path.iterdir()) == [], "nothing made before the refusal"


def test_every_command_with_an_output_and_an_input_is_covered():
    covered = {" ".join(param.values[0]) for param in pairs()}
    assert {"predict", "validate", "train", "extract", "data fetch", "reproduce"} <= covered
