import shutil

import pandas as pd
import pytest

from featx.data.dataset import load_dataset
from featx.data.labels import PAPER_CLASSES
from featx.exceptions import DatasetError, UnknownNameError
from tests.realdata import SHARED_DATA, copy_subset, pick_rows, requires_data

pytestmark = requires_data


@pytest.fixture
def folder(tmp_path):
    """A fresh, editable copy of 9 real radiographs with their manifest."""
    return copy_subset(pick_rows({"covid": 3, "bacterial": 3, "normal": 3}, seed=1), tmp_path / "data")


def _rewrite(folder, edit):
    table = pd.read_csv(folder / "metadata.csv", dtype=str, keep_default_na=False)
    table = edit(table)
    table.to_csv(folder / "metadata.csv", index=False)


def test_real_collection_loads_with_all_columns():
    dataset = load_dataset(SHARED_DATA)
    assert len(dataset) == 2173 and dataset.has_patient_ids
    assert dataset.classes == PAPER_CLASSES
    assert dataset.id == dataset.parent_id


@pytest.mark.parametrize(
    "subset, counts",
    [
        ("dataset1", {"covid": 224, "pneumonia": 700, "normal": 504}),
        ("dataset2", {"covid": 224, "pneumonia": 714, "normal": 504}),
    ],
)
def test_paper_subsets_have_the_papers_counts_and_are_stable(subset, counts):
    first = load_dataset(SHARED_DATA, subset)
    again = load_dataset(SHARED_DATA, subset)
    assert first.table["label"].value_counts().to_dict() == counts
    assert first.id == again.id and list(first.table["image_id"]) == list(again.table["image_id"])
    assert first.id != first.parent_id


def test_subset_that_cannot_be_filled_says_so(folder):
    with pytest.raises(
        DatasetError, match="cannot fill the paper's dataset1.*700 pneumonia/bacterial needed, 3 available"
    ):
        load_dataset(folder, "dataset1")


def test_unknown_subset_lists_the_valid_ones(folder):
    with pytest.raises(UnknownNameError, match="Available: all, dataset1, dataset2"):
        load_dataset(folder, "dataset3")


def test_every_bad_row_is_listed_in_one_message(folder):
    def edit(table):
        table.loc[0, "label"] = ""
        table.loc[1, "filename"] = "images/missing.jpg"
        table.loc[2, "filename"] = "../../etc/passwd"
        return pd.concat([table, table.iloc[[3]]])

    _rewrite(folder, edit)
    with pytest.raises(DatasetError) as caught:
        load_dataset(folder)
    message = str(caught.value)
    assert "4 problem(s)" in message
    assert "line 2: empty label" in message
    assert "line 3: file 'images/missing.jpg' not found" in message
    assert "line 4: path '../../etc/passwd' refused in" in message and "it leads outside the folder" in message
    assert "is listed more than once" in message


def test_same_content_under_two_labels_is_refused(folder):
    table = pd.read_csv(folder / "metadata.csv", dtype=str, keep_default_na=False)
    covid = table[table["label"] == "covid"].iloc[0]
    shutil.copyfile(folder / covid["filename"], folder / "images" / "copy.jpg")
    _rewrite(
        folder,
        lambda t: pd.concat([t, pd.DataFrame([{**covid.to_dict(), "filename": "images/copy.jpg", "label": "normal"}])]),
    )
    with pytest.raises(
        DatasetError, match=r"1 problem\(s\):\n.*same image content appears under two labels: .*copy.jpg: normal"
    ):
        load_dataset(folder)


def test_same_content_under_two_labels_is_reported_with_the_other_bad_rows(folder):
    table = pd.read_csv(folder / "metadata.csv", dtype=str, keep_default_na=False)
    covid = table[table["label"] == "covid"].iloc[0]
    shutil.copyfile(folder / covid["filename"], folder / "images" / "copy.jpg")

    def edit(t):
        t.loc[1, "filename"] = "images/missing.jpg"
        return pd.concat([t, pd.DataFrame([{**covid.to_dict(), "filename": "images/copy.jpg", "label": "normal"}])])

    _rewrite(folder, edit)
    with pytest.raises(DatasetError) as caught:
        load_dataset(folder)
    message = str(caught.value)
    assert "2 problem(s)" in message and "images/missing.jpg' not found" in message
    assert "same image content appears under two labels" in message and "copy.jpg: normal" in message


def test_manifest_that_is_not_a_csv(folder):
    (folder / "metadata.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    with pytest.raises(DatasetError, match="metadata.csv"):
        load_dataset(folder)


def test_manifest_with_semicolons_names_the_delimiter(folder):
    table = pd.read_csv(folder / "metadata.csv", dtype=str)
    table.to_csv(folder / "metadata.csv", sep=";", index=False)
    with pytest.raises(DatasetError, match="another delimiter"):
        load_dataset(folder)


def test_manifest_with_bom_and_uppercase_labels_loads(folder):
    table = pd.read_csv(folder / "metadata.csv", dtype=str)
    table["label"] = table["label"].str.upper()
    (folder / "metadata.csv").write_text(table.to_csv(index=False), encoding="utf-8-sig")
    assert set(load_dataset(folder).table["label"]) == {"covid", "pneumonia", "normal"}


def test_class_folders_without_manifest(tmp_path, folder):
    table = pd.read_csv(folder / "metadata.csv", dtype=str)
    for row in table.itertuples():
        (tmp_path / "byclass" / row.label).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / row.filename, tmp_path / "byclass" / row.label / row.filename.split("/")[-1])
    dataset = load_dataset(tmp_path / "byclass")
    assert len(dataset) == 9 and not dataset.has_patient_ids
    (tmp_path / "byclass" / "normal_empty").mkdir()
    with pytest.raises(DatasetError, match="normal_empty: class folder holds no images"):
        load_dataset(tmp_path / "byclass")


def test_dataset_id_follows_content_and_labels(folder, tmp_path):
    original = load_dataset(folder).id
    _rewrite(folder, lambda t: t.assign(label=t["label"].where(t.index != 0, "normal")))
    assert load_dataset(folder).id != original


def test_classes_come_from_the_labels_in_a_documented_order(folder):
    _rewrite(
        folder, lambda t: t.assign(label=["tb", "healthy", "tb", "healthy", "tb", "healthy", "tb", "healthy", "tb"])
    )
    dataset = load_dataset(folder)
    assert dataset.classes == ("healthy", "tb")  # alphabetical outside the paper's classes
    assert [dataset.classes[i] for i in dataset.label_indices()] == list(dataset.table["label"])
    assert "healthy 4, tb 5" in dataset.describe()


def test_a_label_written_in_two_cases_is_reported(folder):
    _rewrite(folder, lambda t: t.assign(label=t["label"].where(t.index != 0, "Covid")))
    with pytest.raises(DatasetError, match="label 'Covid' / 'covid' written in different cases"):
        load_dataset(folder)


def test_the_papers_subsets_say_when_the_labels_cannot_fill_them(folder):
    _rewrite(folder, lambda t: t.assign(label=["tb" if i % 2 else "healthy" for i in range(len(t))]))
    with pytest.raises(DatasetError, match="The paper's dataset2 needs the labels covid, pneumonia, normal"):
        load_dataset(folder, "dataset2")
