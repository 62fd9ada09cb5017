"""Every file featx reads back (results, splits, feature-store attributes, pixel-cache manifests,
fine-tuning checkpoints) is read through one declared record: a mutation of a valid file, generated,
is refused with a RecordError or a FileSystemError that names the file (and the field), never with
another exception; and a result holding NaN or infinity is never written."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featx.evaluation.results import (
    RESULT_FORMAT,
    Result,
    ResultProvenance,
    Timings,
    load_result,
    read_checkpoint,
)
from featx.evaluation.splits import SPLIT_FORMAT, Protocol, load_or_make_split, split_path
from featx.evaluation.variant import Variant, VariantRecord
from featx.exceptions import DivergedError, FileSystemError, RecordError, SplitError
from featx.features.identity import FeatureSpec
from featx.features.pixels import PIXEL_FORMAT, PixelCache, PixelKey
from featx.features.store import FORMAT_VERSION, StoreAttributes, open_store
from featx.heads.recipe import HeadRecipe

RANDOM_32 = FeatureSpec(backbone="efficientnet_lite0", weights="none", input_size=(32, 32))
PIXEL_KEY = PixelKey(input_size=(64, 64), mask=None, decoder="jpeg-draft")
SPLIT_PROTOCOL = Protocol(group_by="image", folds=3, seed=0)
UNKNOWN = "unexpected_field"
HUGE_INT, HUGE_FLOAT = 10**30, 1e308


def valid_result(images: int = 9) -> Result:
    """A result of three classes over ``images`` images in three folds, built with its constructor."""
    variant = Variant(
        phase=2,
        features=RANDOM_32.key("dataset0"),
        recipe=HeadRecipe(head="mlp8", epochs=3, learning_rate=0.01),
        protocol=Protocol(group_by="patient", folds=3, seed=0),
    )
    rng = np.random.default_rng(0)
    proba = rng.random((images, 3))
    return Result(
        variant=variant,
        classes=("covid", "pneumonia", "normal"),
        image_ids=tuple(f"image{i}" for i in range(images)),
        groups=np.array([f"patient{i // 2}" for i in range(images)]),
        y_true=np.arange(images) % 3,
        fold=(np.arange(images) + 1) % 3,
        proba=proba / proba.sum(axis=1, keepdims=True),
        timings=Timings(fold_seconds=(0.5, 0.25, 0.125), total_seconds=0.875, gflops=1.5),
        provenance=ResultProvenance(
            featx_version="0.0", split_file="splits/patient-k3-s0.json", stores=("a.h5",), created="2026-01-01"
        ),
    )


@dataclass(frozen=True)
class JsonFormat:
    """A JSON format featx reads back: where a valid file lies in a folder and how featx reads it.

    ``free`` names objects whose keys are data (fold numbers, head settings), not fields;
    ``nullable`` and ``defaulted`` name fields for which null, or leaving them out, is valid.
    """

    name: str
    document: dict
    place: object  # folder -> the file's path
    read: object  # folder -> whatever featx makes of the file there
    version_field: str | None
    free: frozenset = frozenset()
    nullable: frozenset = frozenset()
    defaulted: frozenset = frozenset()


def with_defaults(*records) -> frozenset:
    """The fields of ``records`` that have a default, so that a file may leave them out (made before them)."""
    return frozenset(
        field.name
        for record in records
        for field in fields(record)
        if field.default is not MISSING or field.default_factory is not MISSING
    )


def result_format(folder: Path) -> JsonFormat:
    path = valid_result().save(folder / "result.json").path
    return JsonFormat(
        "result",
        json.loads(path.read_text()),
        lambda root: root / "result.json",
        lambda root: load_result(root / "result.json"),
        "format_version",
        free=frozenset({"head_params"}),
        nullable=frozenset(field.name for field in (*fields(VariantRecord), *fields(Timings)) if field.default is None),
        defaulted=with_defaults(VariantRecord, Timings),  # fields added since: files made before them lack them
    )


def pixel_format(folder: Path) -> JsonFormat:
    PixelCache(folder, PIXEL_KEY)
    manifest = PIXEL_KEY.folder(folder) / "pixels.json"
    return JsonFormat(
        "pixel cache manifest",
        json.loads(manifest.read_text()),
        lambda root: PIXEL_KEY.folder(root) / "pixels.json",
        lambda root: PixelCache(root, PIXEL_KEY),
        "format_version",
        nullable=frozenset({"mask"}),
    )


def checkpoint_format(_folder: Path) -> JsonFormat:
    document = {
        "0": {"proba": [[0.25, 0.75], [1.0, 0.0]], "seconds": 1.5},
        "1": {"proba": [[0.5, 0.5]], "seconds": 2.0},
    }
    return JsonFormat(
        "fine-tuning checkpoint",
        document,
        lambda root: root / "result.partial.json",
        lambda root: read_checkpoint(root / "result.partial.json"),
        None,
        free=frozenset({""}),  # the top level: fold numbers
    )


def split_format(folder: Path, dataset) -> JsonFormat:
    _split, path = load_or_make_split(folder, dataset, SPLIT_PROTOCOL)
    return JsonFormat(
        "split file",
        json.loads(path.read_text()),
        lambda root: split_path(root, dataset, SPLIT_PROTOCOL),
        lambda root: load_or_make_split(root, dataset, SPLIT_PROTOCOL),
        "format_version",
    )


@pytest.fixture(scope="module")
def json_formats(tmp_path_factory):
    """Each JSON format's valid file, made by featx (the split from 36 real radiographs)."""
    folder = tmp_path_factory.mktemp("valid_records")
    formats = [result_format(folder), pixel_format(folder), checkpoint_format(folder)]
    return {fmt.name: fmt for fmt in formats}


@pytest.fixture(scope="module")
def split_file_format(small_dataset, tmp_path_factory):
    return split_format(tmp_path_factory.mktemp("valid_split"), small_dataset)


def nodes(value, path=()):
    """Every (path, value) inside a JSON document, the document itself first."""
    yield path, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from nodes(item, (*path, key))


def field_of(path) -> str:
    """The name of the field a node belongs to: the last object key on its path."""
    names = [part for part in path if isinstance(part, str)]
    return names[-1] if names else ""


def set_at(document, path, value):
    target = document
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


@dataclass(frozen=True)
class Mutation:
    """A change to a valid file: what it is, the field it touches (or ""), and whether the result can
    still be valid (a huge number where no bound is declared)."""

    kind: str
    field: str = ""
    may_stay_valid: bool = False


def retyped(value):
    """A value of another JSON type than ``value``."""
    if isinstance(value, str):
        return 12345
    if isinstance(value, dict):
        return ["text"]
    if isinstance(value, list):
        return {"a": 1}
    return "text"


def mutations(fmt: JsonFormat) -> list:
    """Every (mutation, apply) for ``fmt``'s document; ``apply(document, text, path)`` writes it."""
    found = []
    for path, value in nodes(fmt.document):
        parent = field_of(path[:-1]) if len(path) > 1 else ""
        in_free = bool(path) and isinstance(path[-1], str) and parent in fmt.free
        under_free_values = "head_params" in path  # settings whose values are free scalars
        name = field_of(path)
        if isinstance(value, dict) and not (path and path[-1] in fmt.free or (not path and "" in fmt.free)):
            found.append((Mutation("unknown field", UNKNOWN), _replace(path, {**value, UNKNOWN: 1})))
        if not path:
            continue
        if isinstance(path[-1], str) and not in_free and name not in fmt.defaulted:
            found.append((Mutation("drop", name), _drop(path)))
        if name not in fmt.nullable and not under_free_values:
            found.append((Mutation("null", name), _replace(path, None)))
        found.append((Mutation("nested wrong type", name), _replace(path, [[1, 2], {"a": None}])))
        if not under_free_values:
            found.append((Mutation("another type", name), _replace(path, retyped(value))))
        if isinstance(value, int | float) and not isinstance(value, bool) and not under_free_values:
            found.append((Mutation("negative", name), _replace(path, -1 if isinstance(value, int) else -0.5)))
            huge = HUGE_INT if isinstance(value, int) else HUGE_FLOAT
            found.append((Mutation("huge", name, may_stay_valid=True), _replace(path, huge)))
        if isinstance(value, int | float) and not isinstance(value, bool):
            for special in (math.nan, math.inf, -math.inf):
                found.append((Mutation("not finite", name), _replace(path, special)))
    if fmt.version_field:
        bump = _replace((fmt.version_field,), fmt.document[fmt.version_field] + 1)
        found.append((Mutation("newer version"), bump))
    return found


def _replace(path, value):
    def apply(document):
        if path:
            set_at(document, path, value)
            return document
        return value

    return apply


def _drop(path):
    def apply(document):
        target = document
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]
        return document

    return apply


def check_refusal(error: Exception, path: Path, mutation: Mutation) -> None:
    message = str(error)
    assert isinstance(error, RecordError | FileSystemError), f"{type(error).__name__}: {message}"
    assert str(path) in message, message
    if mutation.field == "format_version":  # a version of another featx is named as such: "format N was written by"
        assert "format_version" in message or " format " in message, message
    elif mutation.field:
        assert mutation.field in message, message
    if mutation.kind == "newer version":
        assert "written by a newer featx" in message, message


def read_mutated(fmt: JsonFormat, mutation: Mutation, apply=None, cut: float = 0.5) -> None:
    """Write ``fmt``'s document changed by ``mutation`` in a fresh folder and read it with featx."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        path = fmt.place(root)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(fmt.document)
        if mutation.kind == "folder":
            path.mkdir()
        elif mutation.kind == "fifo":
            os.mkfifo(path)
        elif mutation.kind == "truncated":
            path.write_text(text[: max(1, min(len(text) - 1, int(len(text) * cut)))])
        else:
            path.write_text(json.dumps(apply(json.loads(text))))
        try:
            fmt.read(root)
        except (RecordError, FileSystemError, SplitError) as error:
            if not (mutation.may_stay_valid and isinstance(error, SplitError)):
                check_refusal(error, path, mutation)
            return
        assert mutation.may_stay_valid, f"{fmt.name}: {mutation} was accepted"


WHOLE_FILE = [Mutation("folder"), Mutation("fifo"), Mutation("truncated")]


def mutation_cases(fmt: JsonFormat):
    """A hypothesis strategy of (mutation, apply, cut) for ``fmt``."""
    per_node = mutations(fmt)
    return st.one_of(
        st.sampled_from(per_node).map(lambda pair: (*pair, 0.5)),
        st.tuples(st.sampled_from(WHOLE_FILE), st.none(), st.floats(0.0, 1.0)),
    )


def run_generated(fmt: JsonFormat, data) -> None:
    mutation, apply, cut = data.draw(mutation_cases(fmt))
    read_mutated(fmt, mutation, apply, cut)


GENERATED = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("name", ["result", "pixel cache manifest", "fine-tuning checkpoint"])
@GENERATED
@given(data=st.data())
def test_a_mutated_json_record_is_refused_naming_the_file_and_the_field(json_formats, name, data):
    run_generated(json_formats[name], data)


@GENERATED
@given(data=st.data())
def test_a_mutated_split_file_is_refused_naming_the_file_and_the_field(split_file_format, data):
    run_generated(split_file_format, data)


@pytest.mark.parametrize("name", ["result", "pixel cache manifest", "fine-tuning checkpoint"])
def test_every_valid_json_record_reads_back(json_formats, name, tmp_path):
    fmt = json_formats[name]
    path = fmt.place(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fmt.document))
    fmt.read(tmp_path)


# --- feature stores: HDF5 attributes, assembled into one record -----------------------------------


@pytest.fixture(scope="module")
def valid_store(small_dataset, tmp_path_factory) -> Path:
    """A store extracted from 36 real radiographs by a random-init EfficientNet-Lite0 at 32x32."""
    from featx.features.extract import extract

    cache = tmp_path_factory.mktemp("store_cache")
    return Path(extract(small_dataset, RANDOM_32, batch_size=12, cache_dir=cache, progress=False).store)


def store_mutations(attrs: dict) -> list:
    """Every (mutation, new attribute value or None to delete) over a store's attributes."""
    found = [(Mutation("unknown field", UNKNOWN), (UNKNOWN, 1)), (Mutation("newer version"), None)]
    for name, value in attrs.items():
        if name not in with_defaults(StoreAttributes):  # fields with defaults are absent from older stores
            found.append((Mutation("drop", name), (name, None)))
        found.append((Mutation("nested wrong type", name), (name, np.array([[1, 2], [3, 4]]))))
        found.append((Mutation("another type", name), (name, 12345 if isinstance(value, str) else "text")))
        if not isinstance(value, str):
            found.append((Mutation("null", name), (name, h5py.Empty("f4"))))
        if isinstance(value, int | float) and not isinstance(value, bool):
            found.append((Mutation("negative", name), (name, -1 if isinstance(value, int) else -0.5)))
            huge = HUGE_INT // 10**12 if isinstance(value, int) else HUGE_FLOAT
            found.append((Mutation("huge", name, may_stay_valid=True), (name, huge)))
            found.append((Mutation("not finite", name), (name, math.nan)))
            found.append((Mutation("not finite", name), (name, -math.inf)))
    return found + [(mutation, None) for mutation in WHOLE_FILE[:2]]


def read_mutated_store(store: Path, mutation: Mutation, change) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / store.name
        if mutation.kind == "folder":
            path.mkdir()
        elif mutation.kind == "fifo":
            os.mkfifo(path)
        else:
            shutil.copyfile(store, path)
            with h5py.File(path, "a") as handle:
                if mutation.kind == "newer version":
                    handle.attrs["format_version"] = FORMAT_VERSION + 1
                elif mutation.kind == "drop":
                    del handle.attrs[change[0]]
                else:
                    handle.attrs[change[0]] = change[1]
        try:
            open_store(path, load_features=False)
        except (RecordError, FileSystemError) as error:
            check_refusal(error, path, mutation)
            return
        assert mutation.may_stay_valid, f"store: {mutation} was accepted"


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_mutated_feature_store_is_refused_naming_the_store_and_the_attribute(valid_store, data):
    with h5py.File(valid_store, "r") as handle:
        attrs = {name: handle.attrs[name] for name in handle.attrs}
    attrs = {name: value.item() if isinstance(value, np.generic) else value for name, value in attrs.items()}
    mutation, change = data.draw(st.sampled_from(store_mutations(attrs)))
    read_mutated_store(valid_store, mutation, change)


# --- the listed cases, one by one ----------------------------------------------------------


def write_result_document(tmp_path, change) -> Path:
    document = json.loads(valid_result().save(tmp_path / "valid.json").path.read_text())
    change(document)
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(document))
    return path


LISTED_RESULT_CASES = {
    "y_true out of range": (lambda d: d["y_true"].__setitem__(4, 3), "y_true: 3 (image 4) is out of range for 3"),
    "an extra key": (lambda d: d.__setitem__("note", "hand-edited"), "note: unknown field"),
    "a missing key": (lambda d: d.pop("fold"), "fold: required field missing"),
    "a wrong type": (lambda d: d["variant"].__setitem__("seed", "0"), "variant.seed: Input should be a valid integer"),
    "null where a list is needed": (lambda d: d.__setitem__("proba", None), "proba: Input should be a valid array"),
    "NaN": (lambda d: d["proba"][2].__setitem__(0, math.nan), "proba.2.0: Input should be a finite number"),
    "Infinity": (lambda d: d["timings"].__setitem__("total_seconds", math.inf), "timings.total_seconds: Input"),
    "a probability row too short": (lambda d: d["proba"][1].pop(), "proba: 2 probabilities (image 1) for 3 classes"),
    "probabilities not summing to 1": (lambda d: d["proba"][0].__setitem__(0, 0.99), "proba: the probabilities of"),
    "a fold out of range": (lambda d: d["fold"].__setitem__(0, 3), "fold: 3 (image 0) is out of range for 3 folds"),
    "a negative class": (lambda d: d["y_true"].__setitem__(0, -1), "y_true.0: Input should be greater than"),
    "an image listed twice": (lambda d: d["image_ids"].__setitem__(1, "image0"), "image_ids: an image id is listed"),
}


@pytest.mark.parametrize("case", sorted(LISTED_RESULT_CASES))
def test_the_listed_result_cases_are_refused_naming_the_file_and_field(case, tmp_path):
    change, expected = LISTED_RESULT_CASES[case]
    path = write_result_document(tmp_path, change)
    with pytest.raises(RecordError) as refused:
        load_result(path)
    assert str(refused.value).startswith(f"{path}: not a valid result file: ") and expected in str(refused.value)


@pytest.mark.parametrize("version, word", [(RESULT_FORMAT + 1, "newer"), (RESULT_FORMAT - 1, "earlier")])
def test_a_result_of_another_format_names_the_featx_that_wrote_it(tmp_path, version, word):
    path = write_result_document(tmp_path, lambda d: d.__setitem__("format_version", version))
    with pytest.raises(RecordError, match=f"result file format {version} was written by an? {word} featx"):
        load_result(path)


def test_a_result_round_trips_through_its_record(tmp_path):
    result = valid_result()
    stored = load_result(result.save(tmp_path / "r.json").path)
    assert stored.variant == result.variant and stored.timings == result.timings
    assert stored.provenance == result.provenance and stored.classes == result.classes
    np.testing.assert_array_equal(stored.proba, result.proba)
    np.testing.assert_array_equal(stored.y_true, result.y_true)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_diverged_result_is_never_written(tmp_path, bad):
    result = valid_result()
    path = result.save(tmp_path / "result.json").path
    before = path.read_bytes()
    proba = result.proba.copy()
    proba[[2, 5], 1] = bad
    with pytest.raises(DivergedError) as refused:
        replace(result, proba=proba).save(path)
    message = str(refused.value)
    assert message.startswith(f"training diverged in {result.variant.name()} (result {path}): non-finite ")
    assert "probabilities for 2 of 9 images (first: image2)" in message
    assert result.variant.name() in message and "proba[2][1], proba[5][1]" in message
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["result.json"]


def test_a_result_with_infinite_timings_is_never_written(tmp_path):
    result = replace(valid_result(), timings=Timings(fold_seconds=(1.0, math.inf, 1.0), total_seconds=2.0))
    with pytest.raises(DivergedError, match=r"in p2-.*: non-finite timings \(timings.fold_seconds\[1\]\)"):
        result.save(tmp_path / "result.json")
    assert not os.listdir(tmp_path)


def test_a_store_attribute_of_the_wrong_type_is_refused_naming_it(valid_store, tmp_path):
    path = tmp_path / "edited.h5"
    shutil.copyfile(valid_store, path)
    with h5py.File(path, "a") as handle:
        handle.attrs["batch_size"] = "twelve"
        handle.attrs["images_per_s"] = math.nan
    with pytest.raises(RecordError) as refused:
        open_store(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: not a valid feature store's attributes: ")
    assert (
        "batch_size: Input should be a valid integer" in message and "images_per_s: Input should be a finite" in message
    )


def test_a_store_of_a_newer_format_names_it(valid_store, tmp_path):
    path = tmp_path / "newer.h5"
    shutil.copyfile(valid_store, path)
    with h5py.File(path, "a") as handle:
        handle.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(RecordError, match=f"{path}: feature store's attributes format 3 was written by a newer featx"):
        open_store(path)


def test_a_pipe_where_a_store_should_be_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "pipe.h5"
    os.mkfifo(path)
    with pytest.raises(RecordError, match=f"{path}: the feature store is not a regular file"):
        open_store(path)


def test_a_pixel_manifest_of_a_newer_format_names_it(json_formats, tmp_path):
    fmt = json_formats["pixel cache manifest"]
    path = fmt.place(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**fmt.document, "format_version": PIXEL_FORMAT + 1}))
    with pytest.raises(RecordError, match="pixel cache manifest format 2 was written by a newer featx"):
        PixelCache(tmp_path, PIXEL_KEY)


def test_a_split_listing_an_image_twice_or_made_for_another_protocol_is_refused(split_file_format, tmp_path):
    document = split_file_format.document
    path = split_file_format.place(tmp_path)
    path.parent.mkdir(parents=True)
    twice = [document["test_folds"][0] + document["test_folds"][1][:1], *document["test_folds"][1:]]
    path.write_text(json.dumps({**document, "test_folds": twice}))
    with pytest.raises(RecordError, match=f"{path}: not a valid split file: test_folds: an image is in two folds"):
        split_file_format.read(tmp_path)
    path.write_text(json.dumps({**document, "seed": 5}))
    with pytest.raises(SplitError, match=f"{path}: saved split was not made for .* under this protocol"):
        split_file_format.read(tmp_path)
    path.write_text(json.dumps({**document, "format_version": SPLIT_FORMAT + 1}))
    with pytest.raises(RecordError, match="split file format 2 was written by a newer featx"):
        split_file_format.read(tmp_path)
