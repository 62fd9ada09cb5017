"""`data fetch` against a loopback mirror built from real radiographs, and against ../shared/data/cxr."""

import hashlib
import http.server
import io
import threading
import zipfile

import pandas as pd
import pytest

from featx import cli
from featx.data.dataset import load_dataset
from featx.data.fetch import COHEN_ARCHIVE, KERMANY_ARCHIVE, fetch
from featx.exceptions import FetchError
from tests.realdata import SHARED_DATA, requires_data, shared_metadata

pytestmark = requires_data


def _cohen_zip(rows) -> bytes:
    buffer = io.BytesIO()
    manifest = pd.DataFrame(
        {
            "patientid": rows["patient_id"],
            "finding": rows["label"].map(
                {"covid": "Pneumonia/Viral/COVID-19", "pneumonia": "Pneumonia/Bacterial", "normal": "No Finding"}
            ),
            "view": "PA",
            "folder": "images",
            "filename": [f.split("/")[-1] for f in rows["filename"]],
        }
    )
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("covid-chestxray-dataset-master/metadata.csv", manifest.to_csv(index=False))
        for filename in rows["filename"]:
            bundle.write(SHARED_DATA / filename, f"covid-chestxray-dataset-master/images/{filename.split('/')[-1]}")
    return buffer.getvalue()


def _kermany_zip(normals, pneumonias) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for i, filename in enumerate(normals):
            bundle.write(SHARED_DATA / filename, f"chest_xray/train/NORMAL/IM-{i:04d}-0001.jpeg")
        for i, filename in enumerate(pneumonias):
            kind = "bacteria" if i % 2 else "virus"
            bundle.write(SHARED_DATA / filename, f"chest_xray/test/PNEUMONIA/person{i // 2}_{kind}_{i}.jpeg")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def mirror():
    """A loopback HTTP mirror whose first answer for each archive drops the connection half-way."""
    table = shared_metadata()
    cohen = table[table["filename"].str.contains("cohen_")].groupby("label").head(4)
    kermany = table[table["filename"].str.contains("kermany_")]
    files = {
        COHEN_ARCHIVE: _cohen_zip(cohen),
        KERMANY_ARCHIVE: _kermany_zip(
            list(kermany[kermany.label == "normal"].filename[:6]),
            list(kermany[kermany.label == "pneumonia"].filename[:6]),
        ),
    }
    sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in files.items())
    state = {"sums": sums, "dropped": set(), "requests": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            name = self.path.strip("/").split("/")[-1]
            state["requests"].append((name, self.headers.get("Range")))
            data = state["sums"].encode() if name == "SHA256SUMS" else files.get(name)
            if data is None:
                self.send_error(404)
                return
            start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            if name != "SHA256SUMS" and name not in state["dropped"]:
                state["dropped"].add(name)
                self.wfile.write(data[start : start + len(data) // 2])
                self.wfile.flush()
                self.connection.shutdown(2)  # drop the connection mid-file
                return
            self.wfile.write(data[start:])

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()


def test_fetch_resumes_a_dropped_download_and_assembles_a_dataset(mirror, tmp_path):
    url, state = mirror
    summary = fetch(tmp_path / "cxr", url, progress=False)
    dataset = load_dataset(tmp_path / "cxr")
    assert summary["images"] == len(dataset) == 24
    assert set(dataset.table["label"]) == {"covid", "pneumonia", "normal"}
    assert set(dataset.table["subtype"]) >= {"covid", "bacterial", "viral", "normal"}
    assert any(rng for name, rng in state["requests"] if name == KERMANY_ARCHIVE), "no resumed range request"
    with pytest.raises(FetchError, match="already holds a finished dataset"):
        fetch(tmp_path / "cxr", url, progress=False)


def test_checksum_mismatch_is_refused(mirror, tmp_path):
    url, state = mirror
    good = state["sums"]
    state["sums"] = good.replace(good[:8], "00000000", 1)
    try:
        with pytest.raises(FetchError, match="checksum mismatch"):
            fetch(tmp_path / "cxr", url, progress=False)
    finally:
        state["sums"] = good
    assert not (tmp_path / "cxr" / "metadata.csv").exists()


def test_fetch_from_a_featx_folder_and_the_cli(tmp_path, small_data, capsys):
    assert cli.main(["data", "fetch", "--from", str(small_data), "--dest", str(tmp_path / "copy"), "--json"]) == 0
    assert load_dataset(tmp_path / "copy").id == load_dataset(small_data).id
    assert cli.main(["data", "fetch", "--from", str(small_data), "--dest", str(tmp_path / "copy")]) == 1
    assert "already holds a finished dataset" in capsys.readouterr().err
