"""A non-editable install gives the whole CLI as the ``featx`` command, from any folder."""

import json
import subprocess
import sysconfig
import venv

from tests.realdata import REPO


def test_a_non_editable_install_gives_the_featx_command(tmp_path):
    target = tmp_path / "venv"
    venv.create(target, with_pip=True)
    purelib = subprocess.run(
        [target / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # the dependencies come from this environment, so only featx itself is built and installed
    (tmp_path / "venv" / purelib.split(str(target) + "/", 1)[1] / "deps.pth").write_text(
        sysconfig.get_paths()["purelib"]
    )
    install = subprocess.run(
        [target / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(REPO)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert install.returncode == 0, install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    featx = target / "bin" / "featx"
    shown = subprocess.run([featx, "--help"], capture_output=True, text=True, cwd=elsewhere)
    assert shown.returncode == 0 and "reproduce" in shown.stdout and "predict" in shown.stdout
    where = subprocess.run(
        [target / "bin" / "python", "-c", "import featx; print(featx.__file__)"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
    ).stdout
    assert str(REPO) not in where  # the installed copy, not the checkout
    models = subprocess.run([featx, "models", "--json"], capture_output=True, text=True, cwd=elsewhere)
    assert models.returncode == 0 and len(json.loads(models.stdout)["backbones"]) >= 8
    assert subprocess.run([featx, "--version"], capture_output=True, text=True).stdout.startswith("featx ")
