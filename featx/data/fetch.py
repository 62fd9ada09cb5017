"""Assemble a featx data folder from the paper's public sources.

Sources: Cohen et al.'s covid-chestxray-dataset (its ``metadata.csv``: frontal views,
findings, patient ids) and Kermany et al.'s pediatric set (``chest_xray/{train,test}/
{NORMAL,PNEUMONIA}``, file names giving bacterial/viral and the patient).  Archives are
downloaded with HTTP range requests (a dropped connection resumes where it stopped), checked
against the mirror's ``SHA256SUMS`` and unpacked; a folder already in featx's format is
validated and copied.  A finished dataset is never overwritten.

Everything is assembled in ``DEST.partial`` beside ``--dest`` and moved into place once it
validates.  Every path the sources name (archive members, Cohen's ``folder`` and ``filename``,
Kermany's file names) goes through :func:`featx.fileio.confined`, so a hostile mirror cannot
reach outside its unpacked folder or the data folder being assembled.  On failure the partial
folder is removed, except the downloads of an interrupted transfer, which a rerun resumes.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pandas as pd

from featx.data.dataset import MANIFEST, MANIFEST_LIMIT, visible_files
from featx.exceptions import FeatxError, FetchError, RecordError, Terminated
from featx.fileio import check_output_folder, confined, make_folder, os_errors, sha256_file
from featx.records import read_bytes_bounded

COHEN_ARCHIVE = "covid-chestxray-dataset.zip"
KERMANY_ARCHIVE = "ChestXRay2017.zip"
UPSTREAM = {
    COHEN_ARCHIVE: "https://github.com/ieee8023/covid-chestxray-dataset/archive/refs/heads/master.zip",
    KERMANY_ARCHIVE: "https://data.mendeley.com/public-files/datasets/rscbjbr9sj/files/"
    "f12eaf6d-6023-432f-acc9-80c9d7393433/file_downloaded",
}
FRONTAL = {"PA", "AP", "AP Supine"}
COHEN_COLUMNS = ("patientid", "finding", "view", "filename")
RETRIES = 5
CHECKSUMS_LIMIT = 1 << 20
"""A mirror's ``SHA256SUMS`` longer than this is refused."""


class DownloadInterrupted(FetchError):
    """A transfer failed after every retry; the partial download is kept for a rerun to resume."""


def read_checksums(text: str) -> dict:
    """Parse ``SHA256SUMS`` lines (``<hex>  <name>``)."""
    sums = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def download(url: str, target: Path, expected_sha256: str | None, progress: bool = True) -> Path:
    """Download ``url`` to ``target``, resuming a ``.part`` file, and verify its sha256.

    Raises
    ------
    FetchError
        After repeated failures, or on a checksum mismatch (the bad file is deleted).
    """
    from tqdm import tqdm

    partial = target.with_name(target.name + ".part")
    for attempt in range(RETRIES):
        have = partial.stat().st_size if partial.exists() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                if have and response.status != 206:
                    have = 0  # the server ignored the range: start again
                total = have + int(response.headers.get("Content-Length", 0) or 0)
                with (
                    open(partial, "ab" if have else "wb") as handle,
                    tqdm(
                        total=total or None,
                        initial=have,
                        unit="B",
                        unit_scale=True,
                        desc=target.name,
                        disable=not progress,
                        file=sys.stderr,
                    ) as bar,
                ):
                    for chunk in iter(lambda: response.read(1 << 16), b""):
                        handle.write(chunk)
                        bar.update(len(chunk))
            if total and partial.stat().st_size < total:
                raise urllib.error.URLError("connection closed early")
            break
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as error:
            if attempt == RETRIES - 1:
                raise DownloadInterrupted(
                    f"{url}: download failed after {RETRIES} tries ({error}); rerun to resume"
                ) from None
            print(f"{target.name}: {error}; resuming", file=sys.stderr)
            time.sleep(0.2 * (attempt + 1))
    digest = sha256_file(partial)
    if expected_sha256 is not None and digest != expected_sha256:
        partial.unlink()
        raise FetchError(
            f"{target.name}: checksum mismatch (expected {expected_sha256}, got {digest}); the download was deleted"
        )
    if expected_sha256 is None:
        print(f"{target.name}: no published checksum; sha256 {digest} (record it to pin the source)", file=sys.stderr)
    partial.replace(target)
    return target


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _archives(source: str | None, work: Path, progress: bool) -> dict:
    """Local paths of both archives (or unpacked folders) from a mirror URL, a folder, or upstream."""
    if source is not None and not _is_url(source):
        folder = Path(source)
        if not folder.is_dir():
            raise FetchError(f"{folder}: --from must be a folder or an http(s) URL")
        return {name: folder / name for name in (COHEN_ARCHIVE, KERMANY_ARCHIVE)}
    if source is None:
        urls, sums = UPSTREAM, {}
    else:
        base = source.rstrip("/")
        urls = {name: f"{base}/{name}" for name in (COHEN_ARCHIVE, KERMANY_ARCHIVE)}
        try:
            with urllib.request.urlopen(f"{base}/SHA256SUMS", timeout=30) as response:
                text = response.read(CHECKSUMS_LIMIT + 1)
        except (urllib.error.URLError, OSError) as error:
            raise FetchError(f"{base}/SHA256SUMS: cannot be read ({error}); a mirror must publish checksums") from None
        if len(text) > CHECKSUMS_LIMIT:
            raise FetchError(f"{base}/SHA256SUMS: larger than {CHECKSUMS_LIMIT >> 20} MiB; not a checksum list")
        sums = read_checksums(text.decode("utf-8", errors="replace"))
        unlisted = [name for name in urls if not re.fullmatch(r"[0-9a-f]{64}", sums.get(name, ""))]
        if unlisted:
            raise FetchError(f"{base}/SHA256SUMS: no sha256 for {', '.join(unlisted)}; a mirror must publish checksums")
    make_folder(work)
    return {
        name: (work / name if (work / name).exists() else download(url, work / name, sums.get(name), progress))
        for name, url in urls.items()
    }


def _unpack(archive: Path, work: Path) -> Path:
    if archive.is_dir():
        return archive
    if not archive.exists():
        raise FetchError(f"{archive}: not found")
    target = work / archive.stem
    if not target.exists():
        try:
            with zipfile.ZipFile(archive) as bundle:
                for member in bundle.namelist():
                    _confined(target, member, f"{archive}: member")
                bundle.extractall(target)
        except zipfile.BadZipFile as error:
            raise FetchError(f"{archive}: not a zip archive ({error})") from None
    return target


def _confined(root: Path, relative: str, where: str) -> Path:
    """:func:`featx.fileio.confined`, refused as a :class:`FetchError` that says where the path was read."""
    try:
        return confined(root, relative)
    except FetchError:
        raise
    except FeatxError as error:
        raise FetchError(f"{where}: {error}") from None


def cohen_rows(root: Path) -> pd.DataFrame:
    """featx rows from a covid-chestxray-dataset checkout: frontal COVID-19, other pneumonia, No Finding."""
    manifests = [path for path in visible_files(root, {".csv"}) if path.name == MANIFEST]
    if not manifests:
        raise FetchError(f"{root}: no metadata.csv of covid-chestxray-dataset found")
    manifest = min(manifests, key=lambda path: len(path.parts))
    table = _cohen_table(manifest)
    base = manifest.parent
    rows = []
    for line, row in enumerate(table.itertuples(), start=2):
        finding, view = row.finding, row.view
        if view not in FRONTAL:
            continue
        image = _confined(base, f"{getattr(row, 'folder', 'images')}/{row.filename}", f"{manifest} line {line}")
        if not image.is_file():
            continue
        if "COVID-19" in finding:
            label, subtype = "covid", "covid"
        elif finding == "No Finding":
            label, subtype = "normal", "normal"
        elif "Pneumonia" in finding:
            kind = finding.lower()
            label, subtype = (
                "pneumonia",
                "bacterial" if "bacterial" in kind else "viral" if "viral" in kind else "unknown",
            )
        else:
            continue
        rows.append(
            {
                "source_file": str(image),
                "filename": f"images/cohen_{row.filename}",
                "label": label,
                "subtype": subtype,
                "patient_id": f"cohen_{row.patientid}",
                "view": view,
                "source": "ieee8023/covid-chestxray-dataset",
            }
        )
    return pd.DataFrame(rows)


def _cohen_table(manifest: Path) -> pd.DataFrame:
    """Cohen's ``metadata.csv``, a regular CSV file of at most :data:`MANIFEST_LIMIT` bytes with its columns."""
    try:
        data = read_bytes_bounded(manifest, MANIFEST_LIMIT, what="covid-chestxray-dataset metadata")
        table = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    except RecordError as error:
        raise FetchError(str(error)) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise FetchError(f"{manifest}: not a readable CSV file ({error})") from None
    missing = [column for column in COHEN_COLUMNS if column not in table.columns]
    if missing:
        raise FetchError(f"{manifest}: not covid-chestxray-dataset metadata: missing column(s) {', '.join(missing)}")
    return table


def kermany_rows(root: Path) -> pd.DataFrame:
    """featx rows from Kermany's chest_xray folders (``personN_bacteria_M`` / ``personN_virus_M``)."""
    rows = []
    for image in visible_files(root, {".jpeg"}):
        folder = image.parent.name.upper()
        if folder == "NORMAL":
            label, subtype, patient = "normal", "normal", f"kermany_{image.stem}"
        elif folder == "PNEUMONIA":
            match = re.match(r"(person\d+)_(bacteria|virus)", image.name)
            if match is None:
                continue
            label, subtype = "pneumonia", "bacterial" if match.group(2) == "bacteria" else "viral"
            patient = f"kermany_{match.group(1)}"
        else:
            continue
        rows.append(
            {
                "source_file": str(image),
                "filename": f"images/kermany_{image.parent.parent.name}_{image.name}",
                "label": label,
                "subtype": subtype,
                "patient_id": patient,
                "view": "PA",
                "source": "kermany2018/chest_xray",
            }
        )
    if not rows:
        raise FetchError(f"{root}: no Kermany chest_xray images (NORMAL / PNEUMONIA folders) found")
    return pd.DataFrame(rows)


def fetch(dest, source: str | None = None, progress: bool = True) -> dict:
    """Build a featx data folder at ``dest``.

    Parameters
    ----------
    dest : str or Path
    source : str, optional
        A mirror URL or folder holding both archives (a URL also ``SHA256SUMS``), or a folder
        already in featx's format; None downloads from the upstream sources.

    Returns
    -------
    dict
        ``dest``, ``images`` and the counts per label.

    Raises
    ------
    FetchError
        Before any download when ``dest`` already holds a finished dataset or is not empty; when a
        source cannot be used, names a path outside its folder, or a mirror publishes no checksum.
    FileSystemError
        Before any download when ``dest`` (or ``DEST.partial``) is a file or cannot be written.
    """
    from featx.data.dataset import load_dataset

    dest = _check_dest(dest)
    staging = check_output_folder(dest.with_name(dest.name + ".partial"), "--dest")
    try:
        if source is not None and not _is_url(source) and os.path.lexists(Path(source) / MANIFEST):
            dataset = load_dataset(source)
            table = dataset.table.assign(source_file=dataset.table["path"])
            table = table.drop(columns=["path", "image_id", "content_hash", "row"])
        else:
            work = staging / ".downloads"
            archives = _archives(source, work, progress)
            table = pd.concat(
                [
                    cohen_rows(_unpack(archives[COHEN_ARCHIVE], work)),
                    kermany_rows(_unpack(archives[KERMANY_ARCHIVE], work)),
                ],
                ignore_index=True,
            )
        _assemble(table, staging)
        shutil.rmtree(staging / ".downloads", ignore_errors=True)
        try:
            dataset = load_dataset(staging)
        except FeatxError as error:
            raise FetchError(f"{dest}: assembled, but does not validate: {error}") from None
        with os_errors(dest, "move the assembled data folder into place"):
            staging.replace(dest)
    except (DownloadInterrupted, KeyboardInterrupt, Terminated):
        raise  # the partial downloads stay in DEST.partial for a rerun to resume
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"dest": str(dest), "images": len(dataset), "labels": dataset.table["label"].value_counts().to_dict()}


def _check_dest(dest) -> Path:
    """``--dest``, refused before any download when it is a file, holds a dataset, or is not empty."""
    dest = check_output_folder(dest, "--dest")
    if os.path.lexists(dest / MANIFEST):
        raise FetchError(f"{dest}: already holds a finished dataset (metadata.csv); remove it or choose another --dest")
    if dest.is_dir():
        with os_errors(dest, "list --dest"):
            entries = sorted(os.listdir(dest))
        if entries:
            raise FetchError(
                f"{dest}: --dest is not empty (it holds {', '.join(entries[:5])}{', ...' if len(entries) > 5 else ''})"
                "; name a new or empty folder"
            )
    return dest


def _assemble(table: pd.DataFrame, staging: Path) -> None:
    """Copy every row's image to its ``filename`` inside ``staging`` (confined there) and write the manifest."""
    make_folder(staging / "images")
    for row in table.itertuples():
        target = _confined(staging, row.filename, f"{row.source_file}: its name in the data folder")
        make_folder(target.parent)
        with os_errors(target, f"copy {row.source_file} to"):
            shutil.copyfile(row.source_file, target)
    with os_errors(staging / MANIFEST):
        table.drop(columns=["source_file"]).to_csv(staging / MANIFEST, index=False)
