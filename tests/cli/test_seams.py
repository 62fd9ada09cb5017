"""Where commands meet: an option a command would ignore is refused, and commands share code through
``featx.cli`` modules, never through one another."""

import ast
from pathlib import Path

import pytest

import featx.cli.commands
from featx.cli import main
from featx.exceptions import ParameterError, UnknownNameError
from featx.heads.sampling import SAMPLERS

COMMANDS_DIR = Path(featx.cli.commands.__file__).parent


@pytest.mark.parametrize("sampler", [name for name in SAMPLERS if name != "none"])
def test_train_finetune_refuses_a_sampler_before_any_work(small_data, tmp_path, capsys, sampler):
    argv = ["train", "--finetune", "--model", "efficientnet_lite0", "--sampler", sampler]
    code = main([*argv, "--data", str(small_data), "--cache", str(tmp_path / "cache"), "--model-dir", "m", "-q"])
    err = capsys.readouterr().err
    assert code == 1 and f"--sampler {sampler} applies to heads on cached features" in err
    assert "Traceback" not in err and not (tmp_path / "cache").exists()


def _imported_modules(path: Path) -> set:
    tree = ast.parse(path.read_text())
    found = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    return found | {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}


@pytest.mark.parametrize("module", sorted(p.name for p in COMMANDS_DIR.glob("*.py") if p.name != "__init__.py"))
def test_a_command_imports_no_other_command(module):
    imported = _imported_modules(COMMANDS_DIR / module)
    assert not {name for name in imported if name.startswith("featx.cli.commands")}


def test_the_engine_registry_is_the_cli_s_choices_and_owns_how_each_engine_is_made(capsys):
    from featx.cli.app import build_parser
    from featx.features.engine import ENGINES, LocalEngine, make_engine

    extract = build_parser()._subparsers._group_actions[0].choices["extract"]
    engine_option = next(action for action in extract._actions if action.dest == "engine")
    assert engine_option.choices == list(ENGINES)
    assert all(spec.summary in engine_option.help for spec in ENGINES.values())
    assert isinstance(make_engine("local", workers=0), LocalEngine)
    for setting, value in (("address", "ray://x:10001"), ("gpus_per_worker", 1.0)):
        with pytest.raises(ParameterError, match=f"{setting} .*applies to the ray engine only"):
            make_engine("local", **{setting: value})
    with pytest.raises(UnknownNameError):
        make_engine("spark")
