"""Every number featx takes has one domain (featx.limits.DOMAINS): the command line refuses a value outside
it where it is parsed (exit 1: read but out of range or not finite; exit 2: not a number of its kind), with
one message naming the flag, before any work; the library refuses it with a ParameterError. Heads' widths
are bounded, training that turns non-finite stops naming the fold and the epoch, and a batch that cannot
fit in memory is refused before the model is built."""

from __future__ import annotations

import argparse
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from featx import limits
from featx.cli.app import build_parser, main
from featx.cli.errors import flag
from featx.exceptions import DivergedError, FeatxError, ParameterError, ResourceError, WeightsError
from featx.features.forward import batch_memory, check_batch_memory
from featx.heads.registry import get_head, make_head
from tests.realdata import LITE0_64

PLACEHOLDERS = {"--model": "efficientnet_lite0", "--model-dir": "model", "--data": "data"}
"""Values of the required options (never used: the command stops at the bad number)."""


def commands(parser=None, prefix=()):
    """(command words, subparser) of every command, nested ones (``data fetch``) included."""
    parser = parser or build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
                    yield from commands(sub, (*prefix, name))
                else:
                    yield (*prefix, name), sub


def required_args(sub) -> list[str]:
    """Placeholder values for the required options and positionals of a command."""
    args = []
    for action in sub._actions:
        if action.option_strings and action.required:
            args += [action.option_strings[-1], PLACEHOLDERS[action.option_strings[-1]]]
        elif not action.option_strings and action.nargs != 0 and action.dest != "help":
            args.append("x.png")
    return args


def readable(text: str, kind: type) -> bool:
    """Whether ``text`` is a number of ``kind`` (a whole number of any length for ``int``)."""
    try:
        kind(text)
    except ValueError:
        return kind is int and text.lstrip("+-").isdigit()
    return True


def refused_values(domain: limits.Domain) -> list[str]:
    """Texts outside ``domain``: just below and above it, non-finite, huge, and not numbers at all."""
    whole = domain.kind is int
    below = [str(domain.minimum)] if domain.open_minimum else []
    below.append(str(domain.minimum - 1) if whole else repr(domain.minimum - 0.5))
    above = str(domain.maximum + 1) if whole else repr(domain.maximum * 2)
    texts = [*below, above, "nan", "inf", "-inf", "1e309", "9" * 5000, "-" + "9" * 40, "abc", "", "0x10", "1,5"]
    return [*texts, "2.5", "1e3"] if whole else texts


def option_cases():
    for words, sub in commands():
        for action in sub._actions:
            domain = getattr(action.type, "domain", None)
            if domain is None:
                continue
            option = action.option_strings[-1]
            for text in refused_values(domain):
                pairs = [[text, "200"], ["200", text]] if action.dest == "input_size" else [[text]]
                for sides in pairs:
                    value = "x".join(sides)
                    name = f"{' '.join(words)} {option} {value[:12]}"
                    yield pytest.param(words, sub, option, value, sides, domain, id=name)


@pytest.mark.parametrize("words, sub, option, value, sides, domain", list(option_cases()))
def test_every_numeric_option_refuses_values_outside_its_domain_before_any_work(
    words, sub, option, value, sides, domain, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    argv = [*words, *required_args(sub), f"{option}={value}"]  # "=": argparse would take "-inf" for an option
    try:
        status = main(argv)
    except SystemExit as exit:
        status = exit.code
    err = capsys.readouterr().err
    expected = 1 if all(readable(side, domain.kind) for side in sides) else 2
    assert status == expected, err
    assert "Traceback" not in err and option in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1
    if expected == 1:
        assert domain.text() in err
    assert not list(tmp_path.iterdir())  # no store, split, result or folder written


def test_every_domain_is_an_option_and_no_option_reads_a_bare_number():
    flags = {
        action.option_strings[-1]
        for _, sub in commands()
        for action in sub._actions
        if getattr(action.type, "domain", None) is not None
    }
    assert flags == {flag(parameter) for parameter in limits.DOMAINS} - {"--head-width"}
    bare = [
        (words, action.dest)
        for words, sub in commands()
        for action in sub._actions
        if action.type in (int, float) and not action.choices
    ]
    assert not bare


@pytest.mark.parametrize(
    "parameter, value",
    [(p, d.minimum) for p, d in limits.DOMAINS.items() if not d.open_minimum]
    + [(p, d.maximum) for p, d in limits.DOMAINS.items()],
)
def test_the_bounds_themselves_are_accepted(parameter, value):
    assert limits.check(parameter, value) == value
    option = flag(parameter)
    matching = [a for _, sub in commands() for a in sub._actions if option in a.option_strings]
    for action in matching:
        text = f"{value}x{value}" if parameter == "input_size" else repr(value)
        parsed = action.type(text)
        assert parsed == ((value, value) if parameter == "input_size" else value)


@pytest.mark.parametrize("parameter", list(limits.DOMAINS))
@pytest.mark.parametrize("bad", ["below", "above", math.nan, math.inf, -math.inf, True, "12", None, 2**70])
def test_the_library_refuses_values_outside_a_domain(parameter, bad):
    domain = limits.DOMAINS[parameter]
    value = {"below": domain.minimum - (0 if domain.open_minimum else 1), "above": domain.maximum * 2}.get(bad, bad)
    if parameter in ("learning_rate", "gpus_per_worker") and bad == 2**70:
        value = -(2**70)
    with pytest.raises(ParameterError, match=f"^{parameter} must be .*{re.escape(domain.text())}"):
        limits.check(parameter, value)


@pytest.mark.parametrize(
    "params",
    [
        {"learning_rate": math.nan},
        {"learning_rate": math.inf},
        {"epochs": 0},
        {"epochs": 2.5},
        {"batch_size": limits.MAX_BATCH_SIZE + 1},
        {"random_state": limits.MAX_SEED + 1},
    ],
)
def test_heads_and_fine_tuning_recipes_check_the_same_domains(params):
    with pytest.raises(ParameterError):
        make_head("mlp10", **params)
    from featx.evaluation.finetune import FinetuneRecipe

    if "random_state" not in params:
        with pytest.raises(ParameterError):
            FinetuneRecipe(head="softmax", **params)


@pytest.mark.parametrize("name", ["mlp0", "mlp0-0", "mlp10-0", "mlp65537", "mlp99999999999", "mlp1-" + "9" * 5000])
def test_head_widths_outside_the_domain_are_refused(name, tmp_path, capsys, monkeypatch):
    with pytest.raises(ParameterError, match="hidden widths within 1..65536"):
        get_head(name)
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--head", name]) == 1
    err = capsys.readouterr().err
    assert "--head must have hidden widths within 1..65536" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["mlp1", "mlp65536", "mlp10-3"])
def test_head_widths_inside_the_domain_are_accepted(name):
    assert get_head(name).family.hidden == tuple(map(int, name[3:].split("-")))


@pytest.mark.parametrize("name", ["mlp0010", "mlp10-03", "mlp\u0661\u0660", "mlp10\n", "mlp\uff11\uff10"])
def test_a_head_name_has_one_spelling(name):
    """mlp0010 or mlp with Arabic-Indic or full-width digits would be a new variant of mlp10."""
    with pytest.raises(FeatxError):
        get_head(name)


@pytest.fixture()
def feature_copy(feature_data, tmp_path):
    """The shared feature store copied, so that a run can write (or not write) into its own cache."""
    dataset, cache = feature_data
    target = tmp_path / "cache"
    shutil.copytree(cache, target)
    return dataset, target


def files_under(folder: Path) -> set:
    return {path.relative_to(folder) for path in folder.rglob("*") if path.is_file()}


def test_a_diverging_dense_head_stops_naming_fold_and_epoch_and_writes_no_result(feature_copy, capsys):
    dataset, cache = feature_copy
    before = files_under(cache)
    argv = ["fit", "--data", str(dataset.root), "--cache", str(cache), "--model", LITE0_64.backbone]
    argv += ["--input-size", "64x64", "--head", "mlp1000-750", "--lr", "1e30", "--folds", "3", "-q"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "training diverged in fold 0, epoch " in err and "use a lower --lr" in err
    assert "Traceback" not in err
    assert not [path for path in files_under(cache) - before if "results" in path.parts]


def test_the_compiled_trainer_names_the_first_non_finite_epoch(feature_data):
    from featx.features.store import load_features

    dataset, cache = feature_data
    features = load_features(cache, LITE0_64.key(dataset.id), dataset).features
    y = dataset.label_indices()
    head = make_head("mlp1000-750", learning_rate=1e30, epochs=4)
    with pytest.raises(DivergedError) as caught:
        head.trainer(features.shape[1], 3, len(y)).train(features, y, seed=0, fold=2)
    epoch = int(re.fullmatch(r"fold 2, epoch (\d) of 4", caught.value.where).group(1))
    assert 1 <= epoch <= 4 and f"fold 2, epoch {epoch} of 4" in str(caught.value)
    trained = make_head("mlp1000-750", epochs=4).trainer(features.shape[1], 3, len(y)).train(features, y, fold=2)
    assert all(np.isfinite(kernel).all() for kernel in trained.kernels)


def test_fine_tuning_stops_at_the_first_epoch_whose_loss_is_not_finite(feature_data):
    import keras

    from featx.evaluation.finetune import compile_model, fit_model
    from featx.features.store import load_features
    from featx.heads.dense import dense_head

    dataset, cache = feature_data
    features = load_features(cache, LITE0_64.key(dataset.id), dataset).features
    y = dataset.label_indices()
    inputs = keras.Input(shape=(features.shape[1],))
    model = keras.Model(inputs, dense_head(inputs, (1000, 750), 0.5, 3))
    compile_model(model, 1e30)

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, index):
            return features[index * 30 : (index + 1) * 30], y[index * 30 : (index + 1) * 30]

    with pytest.raises(DivergedError, match=r"fold 4, epoch \d of 5"):
        fit_model(model, Batches(), 5, progress=False, fold=4)


def test_a_classical_head_predicting_non_finite_probabilities_stops_the_fold(feature_data):
    from sklearn.linear_model import LogisticRegression

    from featx.features.store import load_features
    from featx.heads.family import out_of_fold_proba

    class Overflowing(LogisticRegression):
        """A real logistic regression whose probabilities are scaled past float64's range."""

        def predict_proba(self, X):
            with np.errstate(over="ignore"):
                return super().predict_proba(X) * 1e308 * 10

    dataset, cache = feature_data
    features = load_features(cache, LITE0_64.key(dataset.id), dataset).features
    y = dataset.label_indices()
    with pytest.raises(FeatxError, match="fold 0: the head predicted non-finite probabilities"):
        out_of_fold_proba(features, y, np.arange(len(y)) % 3, lambda: Overflowing(max_iter=200))


def test_a_batch_that_cannot_fit_in_memory_is_refused_before_the_model_is_built(small_data, tmp_path, capsys):
    side = limits.MAX_INPUT_SIDE
    batch = limits.available_memory() // batch_memory(1, (side, side)) + 1
    assert batch <= limits.MAX_BATCH_SIZE  # within the batch size domain: only memory refuses it
    missing = tmp_path / "missing.weights.h5"  # building the model would fail on it: the refusal comes first
    cache = tmp_path / "cache"
    argv = ["extract", "--model", "efficientnet_lite0", "--weights", str(missing), "--data", str(small_data)]
    argv += ["--cache", str(cache), "--input-size", f"{side}x{side}", "--batch-size", str(batch), "-q"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"a batch of {batch} images at {side}x{side} needs about" in err and "GiB of memory" in err
    assert "use a smaller --batch-size or --input-size" in err and "not found" not in err
    assert not [path for path in files_under(cache) if path.suffix == ".h5"]
    with pytest.raises(ResourceError):
        check_batch_memory(batch, (side, side))
    check_batch_memory(32, (200, 266))  # the paper's request fits


def test_weights_naming_a_folder_are_refused_in_one_message(small_data, tmp_path, capsys):
    folder = tmp_path / "weights"
    folder.mkdir()
    argv = ["extract", "--model", "efficientnet_lite0", "--weights", str(folder), "--data", str(small_data)]
    assert main([*argv, "--cache", str(tmp_path / "cache"), "-q"]) == 1
    err = capsys.readouterr().err
    assert f"weights {folder} is a folder" in err and "Traceback" not in err
    from featx.backbones.weights import fingerprint
    from featx.features.identity import FeatureSpec

    with pytest.raises(WeightsError, match="is a folder"):
        fingerprint(FeatureSpec(backbone="efficientnet_lite0", weights=str(folder)).backbone_spec, str(folder))


def test_a_head_too_large_to_train_is_refused_before_anything_is_compiled():
    from featx.heads.fold_trainer import training_memory

    head = make_head("mlp65536-65536")  # within the width domain, but 4.3e9 weights: four copies do not fit
    assert training_memory([1280, 65536, 65536, 3], 100, 10, 64) > limits.available_memory()
    with pytest.raises(ResourceError, match="training a head with layers 65536-65536 on 100 rows needs about"):
        head.trainer(1280, 3, 100)
    assert make_head("mlp1000-750").trainer(1280, 3, 100).dims == (1280, 1000, 750, 3)


def test_fine_tuning_refuses_a_batch_that_cannot_fit_before_loading_anything(small_dataset, tmp_path):
    from featx.evaluation.finetune import FinetuneRecipe, finetune_variant
    from featx.features.identity import FeatureSpec

    side = limits.MAX_INPUT_SIDE
    features = FeatureSpec(
        backbone="efficientnet_lite0", weights=str(tmp_path / "missing.weights.h5"), input_size=(side, side)
    )
    recipe = FinetuneRecipe(head="softmax", batch_size=limits.MAX_BATCH_SIZE)
    with pytest.raises(ResourceError, match=f"a batch of {limits.MAX_BATCH_SIZE} images at {side}x{side}"):
        finetune_variant(small_dataset, features, recipe, cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists()
