"""What names a feature store: the user's request (:class:`FeatureSpec`) and the key it resolves to;
and how an image file becomes a model's input (:class:`ImageRecord`).

A :class:`FeatureSpec` is what a user asks for (a backbone, its weights argument, an input
size, an optional mask, the precision, the decoder, the runtime). Its :attr:`FeatureSpec.image` is the
:class:`ImageRecord` every phase reads pixels by: phase 1 (the store's pixels), phase 3
(fine-tuning), ``predict`` and ``validate``; a model folder records it, so a model applies
exactly the record it was trained with. A :class:`StoreKey` is what the features
actually depend on: the backbone, the weights' label and sha256, the preprocessing (mask
included), the input size, the decoder that made the pixels, the precision and the runtime the
model ran in, plus the dataset the store was made for. Two stores with equal keys but for the dataset id hold
interchangeable rows, which is how a subset reads the store of its whole folder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from featx.backbones.registry import BACKBONES, PREPROCESSINGS, BackboneSpec, get_preprocessing, get_spec
from featx.backbones.weights import PRECISIONS
from featx.data.images import DECODERS, DEFAULT_DECODER, DEFAULT_SIZE, MASKS
from featx.exceptions import ParameterError, UnknownNameError
from featx.features.runtime import AUTO, KERAS, RUNTIME_CHOICES, RUNTIMES, resolve_runtime
from featx.limits import MAX_INPUT_SIDE, MIN_INPUT_SIDE
from featx.records import STRICT, Text

Side = Annotated[int, Field(ge=MIN_INPUT_SIDE, le=MAX_INPUT_SIDE)]
"""One side of an input size, in pixels."""
MASK_SUFFIX = "+mask-"
"""Joins a store key's preprocessing and its mask: ``tf+mask-lungs``."""


def check_input_size(input_size) -> tuple[int, int]:
    """``input_size`` as a (width, height) tuple of ints, both at least 8.

    Raises
    ------
    ParameterError
    """
    try:
        width, height = (int(side) for side in input_size)
    except (TypeError, ValueError):
        raise ParameterError("input_size", input_size, "must be (width, height)") from None
    if width < 8 or height < 8:
        raise ParameterError("input_size", f"{width}x{height}", "must be at least 8 pixels a side")
    return width, height


@dataclass(frozen=True, kw_only=True)
class ImageRecord:
    """How an image file becomes a model's input: decoded, masked, letterboxed, then scaled.

    The pixels (uint8, what the pixel cache holds) depend on ``input_size``, ``decoder`` and
    ``mask``; the backbone's ``preprocessing`` scales them. Also a record read back from model
    manifests: its declared types are the schema.

    Attributes
    ----------
    input_size : tuple of int
        (width, height) of the letterbox.
    decoder : str
        How files become pixels (see :data:`featx.data.images.DECODERS`).
    mask : str or None
        A region blacked out before letterboxing (see :data:`featx.data.images.MASKS`), or None.
    preprocessing : str
        The backbone's input scaling (see :data:`featx.backbones.registry.PREPROCESSINGS`).

    Raises
    ------
    ParameterError, UnknownNameError
        On construction, naming the field and the value (an unknown preprocessing is never read as another).
    """

    __pydantic_config__ = STRICT

    input_size: tuple[Side, Side]
    decoder: Literal[DECODERS]
    mask: Literal[tuple(MASKS)] | None
    preprocessing: Literal[tuple(PREPROCESSINGS)]

    def __post_init__(self):
        object.__setattr__(self, "input_size", check_input_size(self.input_size))
        if self.decoder not in DECODERS:
            raise UnknownNameError("decoder", self.decoder, DECODERS)
        if self.mask is not None and self.mask not in MASKS:
            raise UnknownNameError("mask", self.mask, MASKS)
        get_preprocessing(self.preprocessing)

    def scale(self, pixels) -> np.ndarray:
        """The model input of letterboxed RGB pixels (N, H, W, 3), scaled on the host: float32."""
        return get_preprocessing(self.preprocessing).host(pixels)


@dataclass(frozen=True, kw_only=True)
class FeatureSpec:
    """The features a user asks for.

    Attributes
    ----------
    backbone : str
        Registry name (see :data:`featx.backbones.BACKBONES`).
    weights : str
        ``imagenet``, ``none`` (random initialisation, labelled ``random-init``) or a path to a
        Keras weights file.
    input_size : tuple of int
        (width, height) of the letterboxed input.
    mask : str or None
        A region blacked out before letterboxing (see :data:`featx.data.images.MASKS`).
    precision : str
        Keras dtype policy the model is built with: ``float32`` or ``mixed_bfloat16`` (bfloat16
        arithmetic: under OpenVINO its ``bf16`` inference precision).
    decoder : str
        How images become pixels (see :data:`featx.data.images.DECODERS`).
    runtime : str
        What runs the backbone (see :data:`featx.features.runtime.RUNTIME_CHOICES`); default
        ``auto``: OpenVINO on a CPU where it is installed, Keras on a GPU.
    """

    backbone: str
    weights: str = "imagenet"
    input_size: tuple[int, int] = DEFAULT_SIZE
    mask: str | None = None
    precision: str = "float32"
    decoder: str = DEFAULT_DECODER
    runtime: str = AUTO

    def __post_init__(self):
        get_spec(self.backbone)
        object.__setattr__(self, "input_size", check_input_size(self.input_size))
        object.__setattr__(self, "weights", "none" if self.weights is None else str(self.weights))
        if self.mask is not None and self.mask not in MASKS:
            raise UnknownNameError("mask", self.mask, MASKS)
        if self.precision not in PRECISIONS:
            raise UnknownNameError("precision", self.precision, PRECISIONS)
        if self.decoder not in DECODERS:
            raise UnknownNameError("decoder", self.decoder, DECODERS)
        if self.runtime not in RUNTIME_CHOICES:
            raise UnknownNameError("runtime", self.runtime, RUNTIME_CHOICES)

    @property
    def resolved(self) -> FeatureSpec:
        """These features with ``auto`` resolved to the runtime that runs them here (see :func:`resolve_runtime`)."""
        return replace(self, runtime=resolve_runtime(self.runtime))

    @property
    def backbone_spec(self) -> BackboneSpec:
        """The backbone's registry entry."""
        return get_spec(self.backbone)

    @property
    def image(self) -> ImageRecord:
        """How files become this backbone's input: the input size, decoder, mask and preprocessing."""
        return ImageRecord(
            input_size=self.input_size,
            decoder=self.decoder,
            mask=self.mask,
            preprocessing=self.backbone_spec.preprocessing,
        )

    def key(self, dataset_id: str) -> StoreKey:
        """The store key of these features for dataset ``dataset_id`` (hashes the weights file)."""
        from featx.backbones.weights import fingerprint

        spec = self.backbone_spec
        weights = fingerprint(spec, self.weights)
        return StoreKey(
            dataset_id=dataset_id,
            backbone=spec.name,
            weights=weights.weights,
            weights_sha256=weights.weights_sha256,
            preprocessing=spec.preprocessing + (f"{MASK_SUFFIX}{self.mask}" if self.mask else ""),
            input_size=self.input_size,
            decoder=self.decoder,
            precision=self.precision,
            runtime=resolve_runtime(self.runtime),
        )


@dataclass(frozen=True, kw_only=True)
class StoreKey:
    """The identity of a feature store; every field is recorded in the store and checked on open.

    It is also a record read back from files (a store's attributes, a result's variant): its
    declared types and ranges are the schema.

    Attributes
    ----------
    dataset_id : str
    backbone : str
    weights : str
        Label: ``imagenet``, ``random-init`` or ``file:NAME``.
    weights_sha256 : str
        Empty for random-init (and for Keras ImageNet weights not downloaded yet).
    preprocessing : str
        The backbone's input scaling, with ``+mask-NAME`` when a region was blacked out.
    input_size : tuple of int
        (width, height).
    decoder : str
        The decoder that made the pixels (see :data:`featx.data.images.DECODERS`).
    precision : str
        The Keras dtype policy the model ran in (a ``mixed_bfloat16`` store never serves a
        ``float32`` request).
    runtime : str
        What ran the backbone (see :data:`featx.features.runtime.RUNTIMES`). Default ``keras``:
        stores and results made before runtimes were recorded ran in Keras, and a ``keras`` key
        hashes as theirs did (:meth:`digest` leaves it out), so they keep their names.
    """

    __pydantic_config__ = STRICT

    dataset_id: Text
    backbone: Literal[tuple(BACKBONES)]
    weights: Annotated[str, Field(pattern="^(imagenet|random-init|file:.+)$")]
    weights_sha256: Annotated[str, Field(pattern="^([0-9a-f]{64})?$")]
    preprocessing: Text
    input_size: tuple[Side, Side]
    decoder: Literal[DECODERS]
    precision: Literal[PRECISIONS]
    runtime: Literal[tuple(RUNTIMES)] = KERAS

    def as_attrs(self) -> dict:
        """The key as HDF5/JSON attributes (``input_size`` a list)."""
        return {**asdict(self), "input_size": list(self.input_size)}

    @property
    def image(self) -> ImageRecord:
        """How the pixels of these features were made and scaled (the mask read off ``preprocessing``)."""
        return ImageRecord(
            input_size=self.input_size,
            decoder=self.decoder,
            mask=self.mask,
            preprocessing=self.preprocessing.partition(MASK_SUFFIX)[0],
        )

    def for_dataset(self, dataset_id: str) -> StoreKey:
        """The same features for another dataset."""
        return StoreKey(**{**asdict(self), "dataset_id": dataset_id})

    def digest(self) -> str:
        """Short hash of every field (``runtime`` only when it is not ``keras``, as before it was recorded)."""
        attrs = self.as_attrs()
        if self.runtime == KERAS:
            del attrs["runtime"]
        text = json.dumps(attrs, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def prefix(self) -> str:
        """File-name prefix shared by every store of these features: ``backbone-weights-WxH``."""
        weights = self.weights.replace(":", "-").replace("/", "_")
        return f"{self.backbone}-{weights}-{self.input_size[0]}x{self.input_size[1]}"

    def path(self, cache_dir) -> Path:
        """Where the complete store lives: ``cache_dir/dataset_id/prefix-digest.h5``."""
        return Path(cache_dir) / self.dataset_id / f"{self.prefix}-{self.digest()}.h5"

    def differences(self, attrs: dict) -> list[str]:
        """Each field on which a store's attributes differ from this key, as readable text."""
        expected = self.as_attrs()
        found = {key: attrs.get(key) for key in expected}
        found["runtime"] = attrs.get("runtime", KERAS)
        if isinstance(found["input_size"], (list, tuple)) or hasattr(found["input_size"], "tolist"):
            found["input_size"] = [int(side) for side in found["input_size"]]
        return [
            f"{key}: store has {found[key]!r}, request has {expected[key]!r}"
            for key in expected
            if found[key] != expected[key]
        ]

    @property
    def mask(self) -> str | None:
        """The region blacked out before letterboxing, read from ``preprocessing`` (None: none)."""
        return self.preprocessing.partition(MASK_SUFFIX)[2] or None

    def feature_spec(self, weights_source: str = "") -> FeatureSpec:
        """The request whose key this is, every field kept (mask, decoder, precision, runtime).

        Parameters
        ----------
        weights_source : str
            The weights file of ``file:`` weights (default: none, for ImageNet and random-init).

        Raises
        ------
        ParameterError
            When the key's weights are a file and no ``weights_source`` is given.
        """
        if self.weights.startswith("file:") and not weights_source:
            raise ParameterError("weights", self.weights, "needs the weights file it was made from (weights_source)")
        return FeatureSpec(
            backbone=self.backbone,
            weights=self.weights_argument(weights_source),
            input_size=self.input_size,
            mask=self.mask,
            precision=self.precision,
            decoder=self.decoder,
            runtime=self.runtime,
        )

    def weights_argument(self, weights_source: str) -> str:
        """The ``weights`` argument that gives this key's weights (``weights_source`` for files)."""
        if self.weights == "random-init":
            return "none"
        if self.weights == "imagenet":
            return "imagenet"
        return weights_source
