"""Find the images of a dataset, validate them, and draw the paper's Dataset_1 / Dataset_2."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from featx.data.labels import PAPER_CLASSES, class_order
from featx.exceptions import DatasetError, FeatxError, UnknownNameError
from featx.fileio import confined, os_errors, sha256_file
from featx.records import read_bytes_bounded

MANIFEST = "metadata.csv"
MANIFEST_LIMIT = 64 << 20
"""A ``metadata.csv`` larger than this (some 500,000 rows) is refused before it is read."""
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom"}
SUBSET_SEED = 2020
SUBSETS = {
    "all": None,
    "dataset1": {"covid": {"covid": 224}, "pneumonia": {"bacterial": 700}, "normal": {"normal": 504}},
    "dataset2": {
        "covid": {"covid": 224},
        "pneumonia": {"bacterial": 400, "viral": 314},
        "normal": {"normal": 504},
    },
}
PAPER_SUBSETS = tuple(name for name, draw in SUBSETS.items() if draw is not None)
OPTIONAL_COLUMNS = ("subtype", "patient_id", "source", "view")
DATA_ENV = "FEATX_DATA"
FETCHED_DATA = "data/cxr"


def default_data_dir() -> Path:
    """``$FEATX_DATA``, else ``data/cxr`` (where ``featx data fetch`` puts the paper's data)."""
    return Path(os.environ.get(DATA_ENV) or FETCHED_DATA)


@dataclass(frozen=True, kw_only=True)
class Dataset:
    """A validated set of labelled images.

    Attributes
    ----------
    root : Path
        The data folder.
    subset : str
        ``all``, ``dataset1`` or ``dataset2``.
    table : pandas.DataFrame
        One row per image, sorted by ``image_id``: ``image_id`` (path relative to root),
        ``path``, ``label``, ``subtype``, ``patient_id`` (empty when unknown), ``source``,
        ``view``, ``content_hash``, plus any other manifest columns.
    id : str
        Stable id derived from image ids, labels and content hashes.
    parent_id : str
        The id of the whole folder this subset was drawn from (equal to ``id`` for ``all``).
    """

    root: Path
    subset: str
    table: pd.DataFrame
    id: str
    parent_id: str

    def __len__(self) -> int:
        return len(self.table)

    @property
    def has_patient_ids(self) -> bool:
        """Whether every image names its patient."""
        return bool((self.table["patient_id"].astype(str).str.len() > 0).all())

    @property
    def classes(self) -> tuple[str, ...]:
        """The labels present, in the documented order: the paper's (covid, pneumonia, normal) when the
        labels are among its classes, otherwise alphabetical."""
        return class_order(label for label in self.table["label"] if label)

    def label_indices(self) -> np.ndarray:
        """Labels as indices into :attr:`classes`."""
        return self.table["label"].map(self.classes.index).to_numpy()

    def describe(self) -> str:
        """One line: name, size and class counts."""
        counts = self.table["label"].value_counts()
        parts = ", ".join(f"{name} {int(counts.get(name, 0))}" for name in self.classes)
        return f"{self.root} [{self.subset}]: {len(self)} images ({parts}), id {self.id}"


def load_dataset(root, subset: str = "all", *, min_classes: int = 2) -> Dataset:
    """Read and validate a data folder, then draw the requested subset.

    Parameters
    ----------
    root : str or Path
        A folder holding ``metadata.csv`` (columns ``filename``, ``label``; optional
        ``subtype``, ``patient_id``, ``source``, ``view``) or one sub-folder per class.
    subset : str
        ``all``, ``dataset1`` or ``dataset2`` (the paper's sets, drawn with a fixed seed).
    min_classes : int
        How many classes must be present (1 for an external folder that holds only some).

    Returns
    -------
    Dataset

    Raises
    ------
    DatasetError
        Listing every offending row when labels are unknown, files are missing or escape the
        folder, rows repeat, the same content has two labels, or the manifest is not a CSV.
    """
    if subset not in SUBSETS:
        raise UnknownNameError("subset", subset, SUBSETS)
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: data folder not found")
    manifest = root / MANIFEST
    listed = os.path.lexists(manifest)
    table = _read_manifest(manifest) if listed else _scan_class_folders(root)
    table = _validate_rows(root, table, str(manifest) if listed else str(root), min_classes)
    parent_id = _dataset_id(table)
    if subset != "all":
        table = _draw_subset(table, subset)
    return Dataset(
        root=root, subset=subset, table=table.reset_index(drop=True), id=_dataset_id(table), parent_id=parent_id
    )


UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")
"""Control characters, refused in every cell of ``metadata.csv``: a NUL cannot be stored, a line
break or a tab in a label would split the tables and CSV headers it appears in."""


def _read_manifest(manifest: Path) -> pd.DataFrame:
    """The rows of ``metadata.csv``, read by the one validating reader of data manifests.

    The file must be a regular file of at most :data:`MANIFEST_LIMIT` bytes of UTF-8 text (a byte
    order mark is allowed), comma-separated, with one header line naming each column once. Blank
    lines, unnamed columns (a spreadsheet's index) and empty trailing fields (a trailing comma on
    every row) are ignored; a row with a value beyond the header's columns, or with fewer fields
    than the header, is refused naming its line.

    Raises
    ------
    DatasetError
        Naming the file and the problem: the line of a row that cannot be read, every row that does
        not fit the header (at once), a column missing or named twice, not UTF-8, empty, too large.
    RecordError
        When ``metadata.csv`` is not a regular file (a folder, a pipe, a device).
    """
    text = _manifest_text(manifest)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records, start = [], 1  # (the line a row starts on, its fields)
    try:
        while (fields := next(reader, None)) is not None:
            if any(field.strip() for field in fields):
                records.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as error:
        raise DatasetError(f"{manifest} line {start}: not a readable CSV row ({error})") from None
    if not records:
        raise DatasetError(f"{manifest}: holds no header line; it needs a header such as 'filename,label'")
    header = records[0][1]
    names = [name.strip() for name in header]
    while names and not names[-1]:
        names.pop()
    _check_header(manifest, names, ",".join(header))
    rows, lines, problems = [], [], []
    for line, fields in records[1:]:
        extra = fields[len(names) :]
        if any(field.strip() for field in extra):
            problems.append(
                f"line {line}: {len(fields)} fields, more than the header's {len(names)} "
                "(quote a value that holds a comma)"
            )
        elif len(fields) < len(names):
            problems.append(f"line {line}: {len(fields)} fields, fewer than the header's {len(names)}")
        else:
            rows.append(fields[: len(names)])
            lines.append(f"{manifest.name} line {line}")
    if problems:
        raise DatasetError(f"{manifest}: {len(problems)} row(s) do not fit the header:\n  " + "\n  ".join(problems))
    if not rows:
        raise DatasetError(f"{manifest}: a header but no rows; list one image per line (filename,label)")
    named = [index for index, name in enumerate(names) if name]
    table = pd.DataFrame(
        [[row[index] for index in named] for row in rows], columns=[names[i] for i in named], dtype=str
    )
    table["row"] = lines
    return table


def _manifest_text(manifest: Path) -> str:
    """The text of ``metadata.csv``: a regular UTF-8 file of at most :data:`MANIFEST_LIMIT` bytes."""
    with os_errors(manifest, "read the data manifest"):
        size = os.stat(manifest).st_size
    if size > MANIFEST_LIMIT:
        raise DatasetError(
            f"{manifest}: {size >> 20} MiB, larger than a data manifest can be ({MANIFEST_LIMIT >> 20} MiB)"
        )
    data = read_bytes_bounded(manifest, MANIFEST_LIMIT, what=f"data manifest ({MANIFEST})")
    if not data.strip():
        raise DatasetError(f"{manifest}: is empty; it needs a header line 'filename,label' and one row per image")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DatasetError(
            f"{manifest} line {line}: not UTF-8 text (byte 0x{data[error.start]:02x}); save the file as UTF-8"
        ) from None


def _check_header(manifest: Path, names: list, header: str) -> None:
    """Refuse a header without ``filename`` and ``label`` (naming the delimiter when it is not a comma)
    or with a column named twice."""
    if "filename" not in names:
        for delimiter, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
            if "filename" in [column.strip() for column in header.split(delimiter)]:
                raise DatasetError(
                    f"{manifest}: the header is separated by {name}; featx expects a comma-separated "
                    f"file (another delimiter was used). Header: {header.strip()[:120]!r}"
                )
    missing = [column for column in ("filename", "label") if column not in names]
    if missing:
        found = ", ".join(repr(c) for c in names if c) or "none"
        raise DatasetError(f"{manifest}: not a featx manifest: missing column(s) {', '.join(missing)} (found {found})")
    repeated = sorted({name for name in names if name and names.count(name) > 1})
    if repeated:
        raise DatasetError(
            f"{manifest}: column(s) {', '.join(repr(name) for name in repeated)} named more than once in the "
            "header; keep one of each"
        )


def visible_entries(folder: Path) -> list[Path]:
    """The entries of ``folder``, sorted, leaving out hidden ones (``.DS_Store``, macOS ``._x.jpg``,
    ``.cache/``): the one listing of a data folder."""
    with os_errors(folder, "list the folder"):
        return sorted(entry for entry in Path(folder).iterdir() if not entry.name.startswith("."))


def visible_files(folder: Path, suffixes=IMAGE_SUFFIXES) -> list[Path]:
    """The files under ``folder`` whose suffix (any case) is one of ``suffixes``, found through
    :func:`visible_entries` (hidden entries and what they hold are left out; linked folders are not
    entered)."""
    files = []
    for entry in visible_entries(folder):
        if entry.is_dir() and not entry.is_symlink():
            files += visible_files(entry, suffixes)
        elif entry.suffix.lower() in suffixes and entry.is_file():
            files.append(entry)
    return files


def _scan_class_folders(root: Path) -> pd.DataFrame:
    folders = [entry for entry in visible_entries(root) if entry.is_dir()]
    if not folders:
        raise DatasetError(f"{root}: neither a {MANIFEST} nor class sub-folders (one per label)")
    rows = []
    for folder in folders:
        files = visible_files(folder)
        if not files:
            raise DatasetError(f"{folder}: class folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        for file in files:
            relative = file.relative_to(root).as_posix()
            rows.append({"filename": relative, "label": folder.name, "row": relative})
    return pd.DataFrame(rows)


def _validate_rows(root: Path, table: pd.DataFrame, where: str, min_classes: int) -> pd.DataFrame:
    table = table.copy()
    for column in OPTIONAL_COLUMNS:
        if column not in table.columns:
            table[column] = ""
    table["filename"] = table["filename"].str.strip()
    table["label"] = table["label"].str.strip()
    table["subtype"] = table["subtype"].str.strip().str.lower()
    if table.empty:
        raise DatasetError(f"{where}: no images listed")
    problems = []
    paths, readable = [], []
    controls = {
        column: table[column].astype(str).str.contains(UNPRINTABLE).to_numpy() for column in table if column != "row"
    }
    for position, row in enumerate(table.itertuples()):
        if not row.label:
            problems.append(f"{row.row}: empty label")
        unprintable = [column for column, found in controls.items() if found[position]]
        if unprintable:
            problems.append(
                f"{row.row}: refused, a control character (NUL, line break, tab, ...) in {', '.join(unprintable)}"
            )
            paths.append(None)
            readable.append(False)
            continue
        path, problem = _resolve_file(root, row.filename)
        paths.append(path)
        readable.append(problem is None)
        if problem is not None:
            problems.append(f"{row.row}: {problem}")
    problems += _case_variants(table["label"])
    table["label"] = table["label"].str.lower()
    duplicated = table["filename"].duplicated(keep=False) & (table["filename"] != "")
    for filename, group in table[duplicated].groupby("filename"):
        problems.append(f"{', '.join(group['row'])}: {filename!r} is listed more than once")
    table["path"] = [str(path) for path in paths]
    readable = np.array(readable)
    table["content_hash"] = ""
    table.loc[readable, "content_hash"] = _hash_files(table.loc[readable, "path"])
    problems += _conflicting_content(table[readable])
    if problems:
        raise DatasetError(f"{where}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    table["image_id"] = table["filename"]
    present = class_order(table["label"])
    if len(present) < min_classes:
        raise DatasetError(f"{where}: only class(es) {', '.join(present)} present; at least {min_classes} are needed")
    return table.sort_values("image_id", kind="stable")


def _case_variants(labels: pd.Series) -> list[str]:
    """One problem per label written in two or more cases (``Covid`` beside ``covid``): probably a typo.

    A label written in one case only (``COVID`` throughout) is read in lower case.
    """
    spellings = labels[labels != ""].groupby(labels.str.lower()).unique()
    return [
        f"label {' / '.join(repr(s) for s in sorted(forms))} written in different cases; use one spelling"
        for forms in spellings
        if len(forms) > 1
    ]


def _resolve_file(root: Path, filename: str):
    """The path of a manifest's filename inside ``root`` (see :func:`featx.fileio.confined`) and what
    is wrong with it (None when it is a file inside root)."""
    if not filename:
        return "", "empty filename"
    try:
        path = confined(root, filename)
    except FeatxError as error:
        return "", str(error)
    if path.is_dir():
        return path, f"{filename!r} is a folder, not an image file"
    if path.exists() and not path.is_file():
        return path, f"{filename!r} is not a regular file (a device or a pipe)"
    if not path.is_file():
        return path, f"file {filename!r} not found"
    return path, None


def _hash_files(paths) -> list[str]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(sha256_file, paths))


def _conflicting_content(table: pd.DataFrame) -> list[str]:
    """One problem line per image content that appears under two labels."""
    labels_per_hash = table.groupby("content_hash")["label"].nunique()
    problems = []
    for content_hash in labels_per_hash[labels_per_hash > 1].index:
        rows = table[table["content_hash"] == content_hash]
        listed = ", ".join(f"{r.row} ({r.filename}: {r.label})" for r in rows.itertuples())
        problems.append(f"the same image content appears under two labels: {listed}")
    return problems


def _draw_subset(table: pd.DataFrame, subset: str) -> pd.DataFrame:
    labels = class_order(table["label"])
    if set(labels) != set(PAPER_CLASSES):
        raise DatasetError(
            f"The paper's {subset} needs the labels {', '.join(PAPER_CLASSES)} (with a 'subtype' "
            f"column); this data has {', '.join(labels)}. Use the subset all for another task."
        )
    rng = np.random.default_rng(SUBSET_SEED)
    chosen, shortfalls = [], []
    for label, subtypes in SUBSETS[subset].items():
        for subtype, wanted in subtypes.items():
            pool = table[(table["label"] == label) & (table["subtype"] == subtype)]
            if len(pool) < wanted:
                shortfalls.append(f"{wanted} {label}/{subtype} needed, {len(pool)} available")
                continue
            chosen.append(pool.iloc[np.sort(rng.choice(len(pool), size=wanted, replace=False))])
    if shortfalls:
        raise DatasetError(
            f"The data cannot fill the paper's {subset} (needs a 'subtype' column): " + "; ".join(shortfalls)
        )
    return pd.concat(chosen).sort_values("image_id", kind="stable")


def _dataset_id(table: pd.DataFrame) -> str:
    digest = hashlib.sha256()
    for row in table[["image_id", "label", "content_hash"]].itertuples(index=False):
        digest.update("\t".join(row).encode() + b"\n")
    return digest.hexdigest()[:16]


def dataset_from_paths(paths) -> Dataset:
    """An unlabelled dataset of image files (for :class:`featx.pipeline.CNNFeatures`, ``predict``).

    Parameters
    ----------
    paths : sequence of str or Path

    Returns
    -------
    Dataset
        ``image_id`` is the absolute path; ``label`` is empty.

    Raises
    ------
    DatasetError
        Listing every path that is not a file.
    """
    resolved = [Path(p).absolute() for p in paths]
    missing = [str(p) for p in resolved if not p.is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} image file(s) not found:\n  " + "\n  ".join(missing))
    table = pd.DataFrame({"image_id": [str(p) for p in resolved], "path": [str(p) for p in resolved]})
    for column in ("label",) + OPTIONAL_COLUMNS:
        table[column] = ""
    table["content_hash"] = _hash_files(table["path"])
    root = Path(os.path.commonpath([str(p.parent) for p in resolved])) if resolved else Path(".")
    dataset_id = _dataset_id(table)
    return Dataset(root=root, subset="paths", table=table, id=dataset_id, parent_id=dataset_id)
