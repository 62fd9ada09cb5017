"""Where commands meet: an option a command would ignore is refused, and commands share code through
``featx.cli`` modules, never through one another."""

import ast
from pathlib import Path

import pytest

import featx.cli.commands
from featx.cli import main
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
