"""The runtime that runs a frozen backbone: Keras itself, or OpenVINO on a CPU.

The Keras model (uint8 pixels in, preprocessing as a layer, pooled features out) stays the source
of truth. On a CPU most of a light network's time in Keras/TensorFlow is framework overhead, and
only a runtime made for inference uses the chip's bfloat16 instructions; OpenVINO converts the
Keras model directly (``openvino.convert_model``) and runs it 2-2.6x faster in float32 and about
twice as fast again in bfloat16 where the CPU has AVX512_BF16 or AMX (figures in
``bench/README.md``). On a GPU (Keras on JAX) Keras runs, as before.

Each entry of :data:`RUNTIMES` owns its behaviour: whether it is installed, its version, and how it
loads the backbone of a :class:`~featx.features.identity.FeatureSpec` into a :class:`Runner`. The
runtime is part of a store's key (:class:`~featx.features.identity.StoreKey`); ``auto`` (the
default) is resolved once per process by :func:`resolve_runtime`.

An OpenVINO conversion is made once per backbone, weights (label and sha256), input size,
OpenVINO and Keras version and featx format, and cached with its provenance (a
:class:`ConvertedModel` record) in ``FEATX_HOME/openvino``, beside the converted weights. The
precision is a compile-time property (``INFERENCE_PRECISION_HINT``), so one conversion serves both.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import logging
import warnings
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
from pydantic import Field

from featx import __version__
from featx.backbones.registry import get_preprocessing
from featx.exceptions import FeatxError, FileSystemError, ParameterError, RecordError, UnknownNameError
from featx.records import STRICT, Sha256, Text, read_record

if TYPE_CHECKING:
    from featx.features.identity import ImageRecord

log = logging.getLogger(__name__)

AUTO = "auto"
KERAS = "keras"
CPUINFO = Path("/proc/cpuinfo")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""``/proc/cpuinfo`` flags of the CPU instructions that compute in bfloat16 (either one suffices)."""
BF16_PRECISION = "mixed_bfloat16"
"""The precision (see :data:`featx.backbones.weights.PRECISIONS`) that computes in bfloat16: the Keras
dtype policy under Keras, ``INFERENCE_PRECISION_HINT=bf16`` under OpenVINO."""
CONVERSION_FORMAT = 1


def cpu_flags() -> frozenset:
    """The instruction-set flags :data:`CPUINFO` lists (empty where there is no such file)."""
    try:
        text = Path(CPUINFO).read_text(errors="replace")
    except OSError:
        return frozenset()
    flags = (line.split(":", 1)[-1].split() for line in text.splitlines() if line.startswith("flags"))
    return frozenset(flag for line in flags for flag in line)


def cpu_has_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions (any of :data:`BF16_FLAGS`)."""
    return not cpu_flags().isdisjoint(BF16_FLAGS)


def check_cpu_precision(precision: str) -> None:
    """Refuse bfloat16 on a CPU without bfloat16 instructions, where it would be emulated (slower, not faster).

    Raises
    ------
    ParameterError
        Naming the precision, the missing flags and the precision to use instead.
    """
    if precision == BF16_PRECISION and not cpu_has_bf16():
        raise ParameterError(
            "precision",
            "bf16",
            f"needs a CPU with bfloat16 instructions ({' or '.join(BF16_FLAGS)} in {CPUINFO}), which this one "
            "lacks; use --precision f32 (or a GPU)",
        )


def keras_on_accelerator() -> bool:
    """Whether Keras' backend computes on a GPU (or another accelerator) in this process."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "torch":
        import torch

        return bool(torch.cuda.is_available())
    return False


class Runner:
    """A loaded backbone: :meth:`stage` hands a padded uint8 batch to the device, :meth:`features` runs it.

    Attributes
    ----------
    provenance : dict
        The weights' provenance and the runtime's (``runtime_version``; OpenVINO's ``runtime_cache``,
        the folder of the conversion).
    """

    provenance: dict

    def stage(self, pixels: np.ndarray):
        """The batch where the runtime reads it from (asynchronous where the runtime allows)."""
        return pixels

    def features(self, staged) -> np.ndarray:
        """(batch_size, D) float32 features of a staged batch, owned by the caller."""
        raise NotImplementedError


def pixel_model(base, image: ImageRecord):
    """``base`` fed letterboxed RGB uint8 pixels of ``image``'s size, scaled on the device by its preprocessing.

    What computes a store's features (:class:`featx.features.forward.Forward`) and a saved head's
    (``predict``, ``validate``).
    """
    import keras

    width, height = image.input_size
    inputs = keras.Input(shape=(height, width, 3), dtype="uint8", name="pixels")
    scaled = get_preprocessing(image.preprocessing).layer()(inputs)
    return keras.Model(inputs, base(scaled), name=f"{base.name}_features")


def uint8_model(features, precision: str | None):
    """The Keras backbone of ``features`` fed uint8 pixels (see :func:`pixel_model`), pooled features out.

    Parameters
    ----------
    features : FeatureSpec
    precision : str or None
        Keras dtype policy to build in (None: Keras' default, float32).

    Returns
    -------
    model : keras.Model
    provenance : WeightsProvenance
        See :func:`featx.backbones.weights.build_base`.
    """
    from featx.backbones.weights import build_base

    base, provenance = build_base(features.backbone_spec, features.input_size, features.weights, precision)
    return pixel_model(base, features.image), provenance


class KerasRunner(Runner):
    """``predict_on_batch`` of the Keras model; under JAX the next batch is put on the device ahead."""

    def __init__(self, model, provenance: dict):
        import keras

        self.model = model
        self.provenance = provenance
        if keras.backend.backend() == "jax":
            import jax

            self.stage = jax.device_put

    def features(self, staged) -> np.ndarray:
        return np.asarray(self.model.predict_on_batch(staged), dtype=np.float32)


class OpenVINORunner(Runner):
    """One synchronous OpenVINO infer request on a model compiled for this batch shape."""

    def __init__(self, compiled, provenance: dict):
        self.request = compiled.create_infer_request()
        self.provenance = provenance

    def features(self, staged) -> np.ndarray:
        self.request.infer({0: staged})
        return np.array(self.request.get_output_tensor(0).data, dtype=np.float32, copy=True)


@dataclass(frozen=True, kw_only=True)
class KerasRuntime:
    """Keras on its configured backend: today's path, and the one a GPU uses."""

    name = KERAS

    def available(self) -> bool:
        """Always: Keras is a dependency."""
        return True

    def missing(self) -> str:
        """Why this runtime cannot run here: never (empty)."""
        return ""

    def version(self) -> str:
        """Keras' version."""
        return importlib.metadata.version("keras")

    def load(self, features, batch_size: int) -> Runner:
        """The backbone of ``features`` as a :class:`KerasRunner`."""
        if features.precision == BF16_PRECISION and not keras_on_accelerator():
            check_cpu_precision(features.precision)
        model, provenance = uint8_model(features, features.precision)
        return KerasRunner(model, {**provenance.as_attrs(), "runtime_version": self.version()})


@dataclass(frozen=True, kw_only=True)
class ConvertedModel:
    """The provenance of a cached OpenVINO conversion, read back from ``provenance.json`` beside it.

    Attributes
    ----------
    format_version : int
    backbone, weights, weights_sha256
        As in :class:`~featx.features.identity.StoreKey` (the weights' sha256 empty for random-init).
    weights_source : str
    input_size : tuple of int
        (width, height).
    openvino_version, keras_version, featx_version, created : str
    model_sha256 : str
        sha256 of ``model.bin``, checked before the conversion is used.
    """

    __pydantic_config__ = STRICT

    format_version: Annotated[int, Field(ge=1)]
    backbone: Text
    weights: Text
    weights_sha256: Annotated[str, Field(pattern="^([0-9a-f]{64})?$")]
    weights_source: Text
    input_size: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]]
    openvino_version: Text
    keras_version: Text
    featx_version: Text
    created: Text
    model_sha256: Sha256


@dataclass(frozen=True, kw_only=True)
class OpenVINORuntime:
    """OpenVINO on the CPU: the Keras model converted once (cached), compiled per batch size and precision."""

    name = "openvino"

    def available(self) -> bool:
        """Whether the ``openvino`` package is installed."""
        try:
            importlib.metadata.version("openvino")
        except importlib.metadata.PackageNotFoundError:
            return False
        return True

    def missing(self) -> str:
        """Why this runtime cannot run in this process, in words; empty where it can."""
        import keras

        if not self.available():
            return "openvino is not installed (pip install openvino: 2x or more on a CPU)"
        if keras.backend.backend() != "tensorflow":
            return f"KERAS_BACKEND={keras.backend.backend()} (openvino converts from tensorflow)"
        return ""

    def version(self) -> str:
        """OpenVINO's version.

        Raises
        ------
        FeatxError
            When it is not installed.
        """
        if not self.available():
            raise FeatxError("the openvino runtime is not installed here: pip install openvino (or --runtime keras)")
        return importlib.metadata.version("openvino")

    def folder(self, spec, input_size, weights) -> Path:
        """Where the conversion of ``spec`` at ``input_size`` with ``weights`` (a fingerprint) is cached."""
        import keras

        from featx.backbones.weights import featx_home

        identity = {
            "format_version": CONVERSION_FORMAT,
            "backbone": spec.name,
            "weights": weights.weights,
            "weights_sha256": weights.weights_sha256,
            "input_size": list(input_size),
            "openvino_version": self.version(),
            "keras_version": keras.__version__,
        }
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        width, height = input_size
        return featx_home() / "openvino" / f"{spec.name}-{width}x{height}-{digest}"

    def convert(self, features):
        """The OpenVINO model of ``features``' backbone (converted and cached on first use) and its provenance."""
        import openvino

        from featx.backbones.weights import fingerprint

        spec = features.backbone_spec
        weights = fingerprint(spec, features.weights)
        if weights.weights == "imagenet" and not weights.weights_sha256:  # Keras downloads them on build
            uint8_model(features, None)
            weights = fingerprint(spec, features.weights)
        folder = self.folder(spec, features.input_size, weights)
        if self._cached(folder) is None:
            self._write(folder, features, weights)
        model = openvino.Core().read_model(str(folder / "model.xml"), str(folder / "model.bin"))
        return model, {**weights.as_attrs(), "runtime_cache": str(folder)}

    def _cached(self, folder: Path) -> ConvertedModel | None:
        """The record of a complete, intact conversion in ``folder``, or None (a damaged one is said and redone)."""
        from featx.fileio import sha256_file

        record_path = folder / "provenance.json"
        if not record_path.exists():
            return None
        try:
            record = read_record(record_path, ConvertedModel, what="OpenVINO conversion record")
        except RecordError as error:
            log.warning("%s; converting again", error)
            return None
        intact = (folder / "model.xml").is_file() and (folder / "model.bin").is_file()
        if not intact or sha256_file(folder / "model.bin") != record.model_sha256:
            log.warning("%s: damaged OpenVINO conversion (checksum); converting again", folder)
            return None
        return record

    def _write(self, folder: Path, features, weights) -> ConvertedModel:
        import keras
        import openvino

        from featx.fileio import sha256_file, written_together

        if keras.backend.backend() != "tensorflow":
            raise FeatxError(
                f"the openvino runtime converts Keras models on the TensorFlow backend; KERAS_BACKEND is "
                f"{keras.backend.backend()} here: use --runtime keras, or KERAS_BACKEND=tensorflow"
            )
        model, _ = uint8_model(features, None)
        size = "x".join(map(str, features.input_size))
        log.info("converting %s at %s to OpenVINO (once, cached in %s)", features.backbone, size, folder)
        with warnings.catch_warnings():  # Keras' notice that the traced input is unnamed: conversion is right
            warnings.filterwarnings("ignore", message=r"The structure of `inputs` doesn't match")
            converted = openvino.convert_model(model)
        with written_together(folder) as staging:
            try:
                openvino.save_model(converted, str(staging / "model.xml"), compress_to_fp16=False)
            except RuntimeError as error:  # OpenVINO's C++ streams report a failed write (a full disk) so
                raise FileSystemError(folder, "write the OpenVINO conversion", _write_failure(staging, error)) from None
            record = ConvertedModel(
                format_version=CONVERSION_FORMAT,
                backbone=features.backbone,
                weights=weights.weights,
                weights_sha256=weights.weights_sha256,
                weights_source=weights.weights_source,
                input_size=tuple(features.input_size),
                openvino_version=self.version(),
                keras_version=keras.__version__,
                featx_version=__version__,
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                model_sha256=sha256_file(staging / "model.bin"),
            )
            text = json.dumps({**asdict(record), "input_size": list(record.input_size)}, indent=1)
            (staging / "provenance.json").write_text(text, encoding="utf-8")  # moved in last: names sort
        return record

    def load(self, features, batch_size: int) -> Runner:
        """The backbone of ``features`` compiled for the CPU at a fixed batch shape, as an :class:`OpenVINORunner`.

        Raises
        ------
        FeatxError
            When OpenVINO is not installed, or Keras runs on another backend than TensorFlow.
        ParameterError
            For bfloat16 on a CPU without bfloat16 instructions.
        """
        version = self.version()  # first: a missing OpenVINO is said in words, not as an ImportError
        check_cpu_precision(features.precision)
        import openvino

        model, provenance = self.convert(features)
        width, height = features.input_size
        model.reshape({0: [batch_size, height, width, 3]})
        properties = {
            "INFERENCE_PRECISION_HINT": "bf16" if features.precision == BF16_PRECISION else "f32",
            "PERFORMANCE_HINT": "LATENCY",
        }
        compiled = openvino.Core().compile_model(model, "CPU", properties)
        return OpenVINORunner(compiled, {**provenance, "runtime_version": version})


def _write_failure(folder: Path, error: RuntimeError) -> str:
    """Why OpenVINO could not write into ``folder``, in words (its own message names a C++ stream)."""
    import shutil

    if shutil.disk_usage(folder).free < 2**20:
        return "no space left on device"
    return f"OpenVINO could not write it ({error})"


RUNTIMES = {runtime.name: runtime for runtime in (KerasRuntime(), OpenVINORuntime())}
"""Registry of runtimes, by the name a store key records."""
RUNTIME_CHOICES = (AUTO, *RUNTIMES)
"""What ``--runtime`` accepts: ``auto`` resolves per device (see :func:`resolve_runtime`)."""


@functools.cache
def resolve_runtime(runtime: str = AUTO) -> str:
    """The runtime a request runs in: ``auto`` is Keras on a GPU, else OpenVINO where it can run, else Keras.

    Resolved once per process; falling back to Keras is said in one line.

    Raises
    ------
    UnknownNameError
        For a name outside :data:`RUNTIME_CHOICES`.
    """
    if runtime not in RUNTIME_CHOICES:
        raise UnknownNameError("runtime", runtime, RUNTIME_CHOICES)
    if runtime != AUTO:
        return runtime
    if keras_on_accelerator():
        return KERAS
    missing = RUNTIMES["openvino"].missing()
    if missing:
        log.warning("%s: the backbone runs in Keras", missing)
        return KERAS
    return "openvino"


def runnable_here(features):
    """``features`` (a resolved :class:`~featx.features.identity.FeatureSpec`) as they can run in this process.

    Their own runtime and precision where they can; else Keras (a runtime missing here, e.g. OpenVINO
    on a GPU machine under JAX) and float32 (bfloat16 on a CPU without its instructions), each change
    said in one line: the features then differ from the recorded ones within the runtime's tolerance.
    """
    missing = RUNTIMES[features.runtime].missing()
    if missing:
        log.warning("%s: computing %s features in Keras instead of %s", missing, features.backbone, features.runtime)
        features = replace(features, runtime=KERAS)
    on_cpu = features.runtime != KERAS or not keras_on_accelerator()
    if features.precision == BF16_PRECISION and on_cpu and not cpu_has_bf16():
        log.warning("this CPU has no bfloat16 instructions: computing %s features in float32", features.backbone)
        features = replace(features, precision="float32")
    return features
