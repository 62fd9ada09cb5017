"""The user's own lines on real radiographs: fit with no --model over every store, --json everywhere,
predict's edges."""

import json
import shutil

import pytest

from featx.cli import main
from featx.models.folder import MANIFEST, ModelManifest
from tests.realdata import run_featx, train_lite0

SMALL = ["--input-size", "64x64"]


@pytest.fixture(scope="module")
def two_stores(small_data, tmp_path_factory):
    """Lite0 (ImageNet) and MobileNetV2 (random-init) stores of the same 36 radiographs."""
    cache = tmp_path_factory.mktemp("two_stores")
    for model, weights in (("efficientnet_lite0", "imagenet"), ("mobilenet_v2", "none")):
        assert (
            main(
                [
                    "extract",
                    "--model",
                    model,
                    "--weights",
                    weights,
                    *SMALL,
                    "--data",
                    str(small_data),
                    "--cache",
                    str(cache),
                    "-q",
                ]
            )
            == 0
        )
    return small_data, cache


def test_fit_without_model_fits_every_extracted_store_and_compares_them(two_stores, capsys):
    data, cache = two_stores
    assert main(["fit", "--head", "logreg", "--folds", "3", "--data", str(data), "--cache", str(cache), "-q"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_lite0 (imagenet) + logreg" in out and "mobilenet_v2 (random-init) + logreg" in out
    assert "RANDOM-INIT" in out
    table = [line for line in out.splitlines() if line.startswith("| 2 |")]
    assert len(table) == 2
    assert (
        main(
            [
                "fit",
                "--head",
                "logreg",
                "--folds",
                "3",
                "--model",
                "mobilenet_v2",
                "--data",
                str(data),
                "--cache",
                str(cache),
                "--json",
                "-q",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["variant"]["backbone"] == "mobilenet_v2" and summary["reused"] is True


def test_fit_paper_head_resolves_per_backbone(two_stores, capsys):
    data, cache = two_stores
    assert (
        main(["fit", "--folds", "3", "--epochs", "1", "--data", str(data), "--cache", str(cache), "--json", "-q"]) == 0
    )
    variants = json.loads(capsys.readouterr().out)["variants"]
    assert [v["variant"]["head"] for v in variants] == ["mlp1000-750", "mlp1000-750"]


def test_fit_with_no_store_names_the_extract_command(small_data, tmp_path, capsys):
    assert main(["fit", "--head", "logreg", "--data", str(small_data), "--cache", str(tmp_path), "-q"]) == 1
    err = capsys.readouterr().err
    assert "No feature store" in err and f"featx extract --model efficientnet_lite0 --data {small_data}" in err
    assert (
        main(
            [
                "fit",
                "--model",
                "vgg19",
                "--weights",
                "none",
                "--head",
                "logreg",
                "--data",
                str(small_data),
                "--cache",
                str(tmp_path),
                "-q",
            ]
        )
        == 1
    )
    assert "featx extract --model vgg19 --weights none" in capsys.readouterr().err


def test_compare_json_holds_rows_only_on_stdout(two_stores, capsys):
    data, cache = two_stores
    main(["fit", "--head", "logreg", "--folds", "3", "--data", str(data), "--cache", str(cache), "-q"])
    capsys.readouterr()
    assert main(["compare", "--data", str(data), "--cache", str(cache), "--json"]) == 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert {row["backbone"] for row in payload["rows"]} == {"efficientnet_lite0", "mobilenet_v2"}
    assert "| phase |" in captured.err


@pytest.fixture(scope="module")
def model_folder(two_stores, tmp_path_factory):
    data, cache = two_stores
    folder = tmp_path_factory.mktemp("models") / "logreg"
    assert train_lite0(data, cache, folder, "--head", "logreg", "--folds", "3") == 0
    return folder


def test_predict_json_and_partial_success(model_folder, small_data, tmp_path, capsys):
    good = sorted((small_data / "images").glob("*.jpg"))[:2]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    assert main(["predict", "--model-dir", str(model_folder), *map(str, good), "--json", "-q"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["files"] == 2 and payload["failed"] == 0 and set(payload["rows"][0]) >= {"p_covid", "predicted"}
    assert main(["predict", "--model-dir", str(model_folder), str(good[0]), str(broken), "--json", "-q"]) == 3
    assert json.loads(capsys.readouterr().out)["failed"] == 1


def _predict(*args, cwd):
    result = run_featx("predict", *args, cwd=cwd)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_predict_edges_give_their_message_and_exit_1(model_folder, small_data, tmp_path):
    image = str(sorted((small_data / "images").glob("*.jpg"))[0])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = {}
    for name, damage in {
        "damaged": lambda f: (f / MANIFEST).write_text("{oops"),
        "lacks-key": lambda f: (f / MANIFEST).write_text(
            json.dumps({k: v for k, v in json.loads((f / MANIFEST).read_text()).items() if k != "input_size"})
        ),
        "no-head": lambda f: ModelManifest.read(f).path_in(f).unlink(),
    }.items():
        folder = tmp_path / name
        shutil.copytree(model_folder, folder)
        damage(folder)
        cases[name] = _predict("--model-dir", str(folder), image, cwd=tmp_path)
    assert "damaged JSON" in cases["damaged"].stderr
    assert "input_size: required field missing" in cases["lacks-key"].stderr
    assert "/head.skops is missing" in cases["no-head"].stderr
    all_failed = _predict("--model-dir", str(model_folder), str(broken), cwd=tmp_path)
    assert "none of the 1 files could be predicted" in all_failed.stderr
    no_images = _predict("--model-dir", str(model_folder), str(empty), cwd=tmp_path)
    assert "no image files" in no_images.stderr and no_images.stdout == ""
    for result in (*cases.values(), all_failed, no_images):
        assert result.returncode == 1


def test_explain_works_for_a_classical_head_from_the_command_line(model_folder, small_data, tmp_path):
    image = str(sorted((small_data / "images").glob("*.jpg"))[0])
    result = _predict("--model-dir", str(model_folder), image, "--explain", str(tmp_path / "cams"), cwd=tmp_path)
    assert result.returncode == 0
    assert [p.name.split("-")[-2] for p in (tmp_path / "cams").glob("*.png")] == ["cam"]
