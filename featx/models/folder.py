"""The model folder: a manifest and one weights file, in formats that load without running code.

Layout of ``--model-dir D`` (format 3)::

    D/featx-model.json            the manifest: what the model is, and which subfolder holds it
    D/.featx-model-<16 hex>/      the weights file the manifest names (one of the files below)
    D/anything else               the user's own files (notes, --explain heatmaps): never touched

The weights file is the head's, written and read by the head's family (see
:mod:`featx.heads.family`; :data:`HEAD_FILES` lists them):

- ``head.npz``: a dense head's kernels and biases, the very arrays that made its cross-validated
  figures, read without pickle;
- ``head.xgb.json``: an xgboost head in xgboost's own JSON format;
- ``head.skops``: a scikit-learn head in skops format, loaded only when every type it names is
  one its registry entry trusts;

or ``model.keras``: a fine-tuned backbone with its head, loaded with ``safe_mode=True``.

Nothing is ever unpickled: a manifest that names any other file is refused.

**Swapped, never emptied.** featx never renames, empties or removes ``D`` itself. A new model is
written into a new hidden subfolder, flushed to disk, and only then does the manifest, replaced
atomically (:func:`featx.fileio.replaced_atomically`), name it; the previous subfolder is removed
after that switch. So at every instant ``D`` holds the old complete model or the new one: a run
killed before the switch leaves the old model (and a stray subfolder, removed by the next
``train``), one killed after it leaves the new model. Only the manifest and the
``.featx-model-*`` subfolders are featx's; a ``featx-model.json`` that featx did not write is
refused rather than replaced.

**Read through a schema.** The manifest is read only by :func:`featx.records.read_record` into
:class:`ModelManifest`, whose annotations declare every field's type and range (an input size
within :data:`featx.limits.MAX_INPUT_SIDE`, distinct class names, head columns among the classes,
the subfolder a plain name of featx's pattern, so nothing outside ``D`` is ever reached). Class
names may hold any text: nothing in this module builds a path from them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal, get_type_hints

import numpy as np
from pydantic import AfterValidator, Discriminator, Field, Tag, with_config
from typing_extensions import NotRequired, TypedDict

from featx.backbones.registry import BACKBONES
from featx.backbones.weights import PRECISIONS
from featx.data.images import DECODERS, DEFAULT_DECODER, MASKS
from featx.evaluation.summary import HEADLINE_KEYS
from featx.evaluation.variant import Variant, VariantRecord
from featx.exceptions import DivergedError, FeatxError, ModelFolderError, RecordError
from featx.features.identity import FeatureSpec, ImageRecord
from featx.features.runtime import KERAS, RUNTIMES
from featx.fileio import check_output_folder, os_errors, replaced_atomically
from featx.heads.registry import HEADS, HeadSpec, get_head
from featx.limits import MAX_INPUT_SIDE, MIN_INPUT_SIDE
from featx.records import STRICT, parse_record, read_bytes_bounded, read_record

MANIFEST = "featx-model.json"
FORMAT_VERSION = 3
"""3: a dense head is saved as its kernels and biases (``head.npz``); 2: as ``head.keras``, in a subfolder the
manifest names; 1: beside the manifest."""
MODEL_FOLDER_PREFIX = ".featx-model-"
MODEL_FOLDER_PATTERN = r"\.featx-model-[0-9a-f]{16}"
"""The name of a subfolder holding a model: featx's own, removed when it is no longer the manifest's."""
FINETUNED_FILE = "model.keras"
HEAD_FILES = frozenset(spec.family.file_name for spec in HEADS.values())
"""The head files a manifest may name (every ``mlpN[-M...]`` is saved as the registered dense heads are)."""
FORMAT_1_FILES = frozenset({FINETUNED_FILE, "head.keras", "head.xgb.json", "head.skops"})
"""The weights files a format-1 manifest named beside itself (removed when a new model replaces it)."""
log = logging.getLogger(__name__)


def _loadable_file(name: str) -> str:
    loadable = {FINETUNED_FILE, *HEAD_FILES}
    if name not in loadable:
        raise ValueError(
            f"names {name!r}; featx loads only {', '.join(sorted(loadable))} and never unpickles a file "
            "(a pickle can run code)"
        )
    return name


Text = Annotated[str, Field(min_length=1)]
Side = Annotated[int, Field(ge=MIN_INPUT_SIDE, le=MAX_INPUT_SIDE)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Figure = Fraction | None
"""A cross-validated figure; None where the task or the data do not define it."""


FIGURE_NAMES = tuple(name for name in HEADLINE_KEYS if name not in ("per_class_recall", "confusion", "ci95"))
"""The cross-validated figures a model folder may record, by their ``fit --json`` names."""


@dataclass(frozen=True, kw_only=True)
class CrossValidationFigures:
    """The cross-validated figures of the variant a model folder holds.

    In the manifest the figures stand flat beside the other fields, as ``fit --json`` prints
    them (see :meth:`to_json`); the record keeps them apart, by name.

    Attributes
    ----------
    figures : dict of str to float or None
        Each headline figure (a name of :data:`FIGURE_NAMES`) as a fraction in [0, 1]; None where the
        task or the data do not define it. A name missing was not recorded (an earlier featx).
    per_class_recall : dict of str to float
    confusion : tuple of tuple of int
    ci95 : dict of str to (float or None, float or None)
        95% bootstrap interval of each figure.
    positive : str
        The class the binary figures are about.
    protocol : str
        How the folds were grouped.
    variant : VariantRecord
        The variant cross-validated (the form result files store).
    result_file : str
        The stored result the figures were computed from.
    """

    __pydantic_config__ = STRICT

    figures: dict[str, Figure]
    per_class_recall: dict[str, Fraction]
    confusion: tuple[tuple[Annotated[int, Field(ge=0)], ...], ...]
    ci95: dict[str, tuple[Figure, Figure]]
    positive: Text
    protocol: Text
    variant: VariantRecord
    result_file: str

    @classmethod
    def from_json(cls, values: dict) -> CrossValidationFigures:
        """The record of the manifest's flat form (checked by :data:`CrossValidationJson`)."""
        rest = {name: value for name, value in values.items() if name not in FIGURE_NAMES}
        return cls(figures={name: values[name] for name in FIGURE_NAMES if name in values}, **rest)

    def to_json(self) -> dict:
        """The manifest's form: the figures flat, then the other fields, the variant as result files store it
        (:meth:`featx.evaluation.variant.Variant.to_dict`: a manifest read and written back is unchanged)."""
        recorded = asdict(self)
        return {**recorded.pop("figures"), **recorded, "variant": Variant.from_record(self.variant).to_dict()}


@dataclass(frozen=True, kw_only=True)
class NotCrossValidated:
    """Why a model folder records no cross-validated figures (a fine-tuned model without a stored result).

    Attributes
    ----------
    note : str
    """

    __pydantic_config__ = STRICT

    note: Text

    def to_json(self) -> dict:
        """The manifest's form."""
        return asdict(self)


_RECORDED_BESIDE = get_type_hints(CrossValidationFigures, include_extras=True)
del _RECORDED_BESIDE["figures"]
CrossValidationJson = with_config(STRICT)(
    TypedDict("CrossValidationJson", {**{name: NotRequired[Figure] for name in FIGURE_NAMES}, **_RECORDED_BESIDE})
)
"""The schema of :class:`CrossValidationFigures` in the manifest: the figures flat beside the other fields
(each optional: an earlier featx may have recorded fewer), nothing else."""


def _cross_validation_kind(value) -> str:
    """Which record a manifest's ``cross_validation`` is: a note, or figures."""
    note = isinstance(value, NotCrossValidated) or (isinstance(value, dict) and "note" in value)
    return "note" if note else "figures"


CrossValidation = Annotated[
    Annotated[CrossValidationJson, AfterValidator(CrossValidationFigures.from_json), Tag("figures")]
    | Annotated[NotCrossValidated, Tag("note")],
    Discriminator(_cross_validation_kind),
]


@dataclass(frozen=True, kw_only=True)
class ModelManifest:
    """What a model folder holds and how it was made; the schema ``featx-model.json`` is read through.

    Attributes
    ----------
    backbone, weights, weights_argument, weights_sha256, weights_source : str
        The backbone and its weights (label, the argument that rebuilds them, their hash, empty
        for random-init, and file).
    input_size : tuple of int
        (width, height), each within ``featx.limits.MIN_INPUT_SIDE``..``MAX_INPUT_SIDE``.
    preprocessing : str
    decoder : str
        How files became the training pixels (see :data:`featx.data.images.DECODERS`).
    mask : str or None
        The region blacked out in the training pixels (see :data:`featx.data.images.MASKS`), or None.
        Manifests written before featx recorded ``decoder`` and ``mask`` lack both; they are read
        as what ``predict`` applied to every model then: the default decoder (``jpeg-draft``) and
        no mask.
    runtime, precision : str
        What computed the features of the store the head was trained on (see
        :data:`featx.features.runtime.RUNTIMES`, :data:`featx.backbones.weights.PRECISIONS`), so that
        ``predict`` and ``validate`` compute them the same way. Manifests written before featx recorded
        them read as ``keras``, ``float32`` (what computed every store then). A fine-tuned model runs in Keras.
    classes : tuple of str
        Distinct class names (any text), in the order of the model's probability columns.
    positive : str
        The class the binary figures (sensitivity, specificity, ...) are about; one of ``classes``.
    head, sampler : str
    finetuned : bool
    model_folder : str
        The subfolder of the model folder holding the weights file (``.featx-model-<16 hex>``).
    model_file : str
        The weights file in ``model_folder``: ``model.keras`` when fine-tuned, else a head file.
    head_classes : tuple of int
        Class index of each output column of the head (a head never trained on a class lacks its
        column); distinct indices into ``classes``.
    trained_on : str
    training_images : tuple of str
        Content hashes of the training images (so that validation can leave them out).
    cross_validation : CrossValidationFigures or NotCrossValidated
        The cross-validated figures of the same variant, or a note saying there are none.
    featx_version : str
    format_version : int
        :data:`FORMAT_VERSION`.
    """

    __pydantic_config__ = STRICT

    backbone: Text
    weights: Text
    weights_argument: Text
    weights_sha256: Annotated[str, Field(pattern=r"^([0-9a-f]{64})?$")]
    weights_source: str
    input_size: tuple[Side, Side]
    preprocessing: Text
    decoder: Literal[DECODERS] = DEFAULT_DECODER
    mask: Literal[tuple(MASKS)] | None = None
    runtime: Literal[tuple(RUNTIMES)] = KERAS
    precision: Literal[PRECISIONS] = "float32"
    classes: Annotated[tuple[Text, ...], Field(min_length=1)]
    positive: Text
    head: Text
    sampler: Text
    finetuned: bool
    model_folder: Annotated[str, Field(pattern=f"^{MODEL_FOLDER_PATTERN}$")]
    model_file: Annotated[str, AfterValidator(_loadable_file)]
    head_classes: Annotated[tuple[Annotated[int, Field(ge=0)], ...], Field(min_length=1)]
    trained_on: str
    training_images: tuple[str, ...]
    cross_validation: CrossValidation
    featx_version: Text
    format_version: Literal[FORMAT_VERSION]

    def __post_init__(self):
        """The checks that involve two fields (each message starts with the field it is about)."""
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes: names repeated in {list(self.classes)}")
        if self.positive not in self.classes:
            raise ValueError(f"positive: {self.positive!r} is not one of classes {list(self.classes)}")
        outside = [index for index in self.head_classes if index >= len(self.classes)]
        if outside or len(set(self.head_classes)) != len(self.head_classes):
            raise ValueError(
                f"head_classes: {list(self.head_classes)} must be distinct indices of the {len(self.classes)} classes"
            )
        spec = BACKBONES.get(self.backbone)
        if spec is None:
            raise ValueError(f"backbone: {self.backbone!r} is not one of {', '.join(BACKBONES)}")
        if self.preprocessing != spec.preprocessing:
            raise ValueError(f"preprocessing: {self.preprocessing!r}, but {self.backbone} takes {spec.preprocessing!r}")
        try:
            head = get_head(self.head)
        except FeatxError as error:
            raise ValueError(f"head: {error}") from None
        if not self.finetuned and head.family.file_name != self.model_file:
            raise ValueError(
                f"head: {self.head} is saved as {head.family.file_name}, but model_file is {self.model_file!r}"
            )
        if (self.model_file == FINETUNED_FILE) != self.finetuned:
            raise ValueError(
                f"model_file: {self.model_file!r} does not match finetuned ({str(self.finetuned).lower()}); "
                f"a fine-tuned model is {FINETUNED_FILE}, a head one of {', '.join(sorted(HEAD_FILES))}"
            )

    @property
    def image(self) -> ImageRecord:
        """How files become this model's input: the record it was trained with, and applies (its features')."""
        return self.features.image

    @property
    def features(self) -> FeatureSpec:
        """The features the head was trained on: backbone, weights, image record, precision and runtime."""
        return FeatureSpec(
            backbone=self.backbone,
            weights=self.weights_argument,
            input_size=self.input_size,
            mask=self.mask,
            precision=self.precision,
            decoder=self.decoder,
            runtime=self.runtime,
        )

    def to_json(self) -> dict:
        """JSON-ready form (the cross-validated figures flat, see :meth:`CrossValidationFigures.to_json`)."""
        return {**asdict(self), "cross_validation": self.cross_validation.to_json()}

    @classmethod
    def read(cls, model_dir) -> ModelManifest:
        """Read ``model_dir``'s manifest through the schema and check the weights file it names.

        Raises
        ------
        ModelFolderError
            When the folder or manifest is missing, the manifest is not valid JSON, breaks the
            schema (the message names the file and each failing field) or is another format
            version's, or the weights file it names is absent.
        """
        model_dir = Path(model_dir)
        path = model_dir / MANIFEST
        if not path.is_file():
            raise ModelFolderError(f"{model_dir}: not a featx model folder (no {MANIFEST}); make one with featx train")
        try:
            manifest = read_record(
                path, cls, what="model manifest", version_field="format_version", version=FORMAT_VERSION
            )
        except RecordError as error:
            found = _recorded(model_dir).get("format_version")
            earlier = type(found) is int and found < FORMAT_VERSION
            hint = " with featx train (dense heads are now saved as the arrays their cross-validation used)"
            raise ModelFolderError(f"{error}{hint if earlier else ''}") from None
        if not manifest.path_in(model_dir).is_file():
            raise ModelFolderError(
                f"{model_dir}: the model file {manifest.model_folder}/{manifest.model_file} is missing"
            )
        return manifest

    def path_in(self, model_dir) -> Path:
        """The weights file inside ``model_dir``."""
        return Path(model_dir) / self.model_folder / self.model_file


def check_finite(model_dir, arrays) -> None:
    """Refuse to save a model whose weights or probabilities (``arrays``) hold NaN or infinity.

    Raises
    ------
    DivergedError
        Saying that ``model_dir`` was not written.
    """
    if not all(np.isfinite(np.asarray(array, dtype=np.float64)).all() for array in arrays):
        raise DivergedError(f"the model for {model_dir}", "non-finite weights or probabilities")


def load_head(path: Path, head: HeadSpec):
    """Load the file of the head ``head`` as its family saved it, without running code from it.

    Returns
    -------
    object
        Pooled features -> probabilities of the classes the head was trained on (``predict_proba``).

    Raises
    ------
    ModelFolderError
        When the file is unreadable, of the wrong kind, or (skops) names a type its head does not trust.
    """
    try:
        return head.family.load(path)
    except ModelFolderError:
        raise
    except Exception as error:  # each format's loader raises its own types for a bad file
        raise ModelFolderError(
            f"{path}: cannot be loaded as a {head.name} head ({type(error).__name__}: {error})"
        ) from None


def load_keras(path: Path):
    """A ``.keras`` model loaded with ``safe_mode=True`` (no code from the file is run)."""
    import keras

    return keras.saving.load_model(path, safe_mode=True, compile=False)


def check_target(model_dir) -> Path:
    """Check, before any work, that a model can be saved in ``model_dir``.

    The folder may be new, hold an earlier featx model (replaced) and any files of the user's
    (kept); it is refused when it is a file, cannot be written, or holds a ``featx-model.json``
    that featx did not write.

    Returns
    -------
    Path

    Raises
    ------
    FileSystemError, ModelFolderError
    """
    model_dir = check_output_folder(model_dir, "--model-dir")
    manifest = model_dir / MANIFEST
    if manifest.is_symlink() or (manifest.exists() and "featx_version" not in _recorded(model_dir)):
        raise ModelFolderError(
            f"{manifest}: exists and is not a manifest featx wrote; move it away or choose another --model-dir"
        )
    return model_dir


def _recorded(model_dir: Path) -> dict:
    """The raw fields of the manifest in ``model_dir``: empty when there is none or it is not a JSON
    object in a regular file (every manifest featx wrote has ``featx_version``)."""
    try:
        values = json.loads(read_bytes_bounded(model_dir / MANIFEST, what="model manifest"))
    except (FeatxError, ValueError, RecursionError):
        return {}
    return values if isinstance(values, dict) else {}


def _stale_model_files(model_dir: Path, keep: str, legacy_file) -> list[Path]:
    """featx's files of earlier models in ``model_dir``: every ``.featx-model-*`` subfolder but ``keep``,
    and ``legacy_file``, the weights file a format-1 manifest named beside it (None if none)."""
    stale = [
        path
        for path in model_dir.iterdir()
        if path.name != keep
        and re.fullmatch(MODEL_FOLDER_PATTERN, path.name)
        and path.is_dir()
        and not path.is_symlink()
    ]
    if legacy_file in FORMAT_1_FILES and (model_dir / legacy_file).is_file():
        stale.append(model_dir / legacy_file)
    return stale


def _flush_to_disk(folder: Path) -> None:
    """fsync every file in ``folder`` and the folder itself (so that the manifest never names lost data)."""
    for path in [*sorted(folder.rglob("*")), folder]:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def write_folder(model_dir, manifest_for, write_model) -> ModelManifest:
    """Save a model into ``model_dir`` so that the folder holds the old model or the new one at every
    instant, and nothing but featx's own files is ever removed (see the module's docstring).

    Each step is logged at debug level as ``model folder: step N`` when it is reached (the points
    fault tests kill at):

    1. the weights are being written into a new subfolder ``.featx-model-<16 hex>``;
    2. they are written and flushed to disk;
    3. the manifest naming them has replaced the old one atomically;
    4. earlier models' subfolders (the previous one, strays of interrupted runs) are removed.

    Parameters
    ----------
    model_dir : str or Path
    manifest_for : callable
        ``manifest_for(model_folder, model_file)`` -> :class:`ModelManifest`.
    write_model : callable
        ``write_model(folder)`` writes the weights file into ``folder`` and returns its name.

    Raises
    ------
    ModelFolderError, FileSystemError
        When ``model_dir`` is refused (see :func:`check_target`) or cannot be written; it is then
        left as it was.
    """
    model_dir = check_target(model_dir)
    previous = _recorded(model_dir)
    legacy_file = previous.get("model_file") if previous.get("format_version") == 1 else None
    building = model_dir / f"{MODEL_FOLDER_PREFIX}{uuid.uuid4().hex[:16]}"
    try:
        with os_errors(building, "write the model"):
            building.mkdir(parents=True)
            log.debug("model folder: step 1, writing the new model into %s", building)
            model_file = write_model(building)
            _flush_to_disk(building)
        log.debug("model folder: step 2, new model written")
        manifest = manifest_for(building.name, model_file)
        text = json.dumps(manifest.to_json(), indent=1, allow_nan=False)
        parse_record(text, ModelManifest, path=model_dir / MANIFEST, what="model manifest")
        with replaced_atomically(model_dir / MANIFEST) as temporary:
            temporary.write_text(text, encoding="utf-8")
        log.debug("model folder: step 3, manifest switched to %s", building.name)
    finally:  # whatever stopped the run, the new subfolder goes unless the manifest already names it
        if _recorded(model_dir).get("model_folder") != building.name:
            shutil.rmtree(building, ignore_errors=True)
    for stale in _stale_model_files(model_dir, building.name, legacy_file):
        with contextlib.suppress(OSError):  # the new model is in place; what is left is removed next time
            if stale.is_dir():
                shutil.rmtree(stale)
            else:
                stale.unlink()
    log.debug("model folder: step 4, previous model removed")
    return manifest
